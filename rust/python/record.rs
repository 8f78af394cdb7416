//! Records (rust/record.rs) to and from Python: a record's values become a dict of Python
//! objects (arrays as numpy arrays of the field's dtype and shape) and back. The only place
//! options and states are converted.

use numpy::{IntoPyArray, PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::record::{self as rec, Array, ArrayData, Dim, Field, Kind, Value, Values};

/// The values as a dict, in field order.
pub fn values_to_dict(py: Python<'_>, values: Values) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    for (name, value) in values.0 {
        d.set_item(name, to_python(py, value)?)?;
    }
    Ok(d)
}

/// A dict's entries as values (each converted by its Python type; the record checks the fields).
pub fn dict_to_values(d: &Bound<'_, PyDict>) -> PyResult<Values> {
    let mut values = Values::default();
    for (key, item) in d.iter() {
        let name: String = key
            .extract()
            .map_err(|_| PyTypeError::new_err(format!("a key of {key:?} is not a string")))?;
        let value =
            from_python(&item).map_err(|e| PyTypeError::new_err(format!("{name:?}: {e}")))?;
        values.push(name, value);
    }
    Ok(values)
}

/// The record held by a dict (`what` names it in errors: "config", "state").
pub fn from_dict<R: rec::Record>(d: &Bound<'_, PyDict>, prompts: usize, what: &str) -> PyResult<R> {
    Ok(rec::from_values(dict_to_values(d)?, prompts, what)?)
}

/// The fields as (name, type, shape) triples: shape None for a scalar, a tuple for an array with
/// the number of prompts in place and None for an axis of any length.
pub fn fields_list<'py>(
    py: Python<'py>,
    fields: Vec<Field>,
    prompts: usize,
) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for Field { name, kind } in fields {
        let entry = match kind {
            Kind::Scalar(t) => (name, t, py.None()).into_pyobject(py)?,
            Kind::Array(dtype, dims) => {
                let shape: Vec<Option<usize>> = dims
                    .iter()
                    .map(|d| match d {
                        Dim::Prompts => Some(prompts),
                        Dim::Fixed(k) => Some(*k),
                        Dim::Any => None,
                    })
                    .collect();
                let shape = PyTuple::new(py, shape)?;
                (name, dtype.name(), shape).into_pyobject(py)?
            }
        };
        list.append(entry)?;
    }
    Ok(list)
}

fn to_python(py: Python<'_>, value: Value) -> PyResult<Bound<'_, PyAny>> {
    Ok(match value {
        Value::None => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, b).to_owned().into_any(),
        Value::Int(i) => i.into_pyobject(py)?.into_any(),
        Value::Float(x) => PyFloat::new(py, x).into_any(),
        Value::Text(s) => PyString::new(py, &s).into_any(),
        Value::List(items) => {
            let items: Vec<_> = items
                .into_iter()
                .map(|v| to_python(py, v))
                .collect::<PyResult<_>>()?;
            PyList::new(py, items)?.into_any()
        }
        Value::Tuple(items) => {
            let items: Vec<_> = items
                .into_iter()
                .map(|v| to_python(py, v))
                .collect::<PyResult<_>>()?;
            PyTuple::new(py, items)?.into_any()
        }
        Value::Array(Array { shape, data }) => match data {
            ArrayData::F32(v) => shaped(py, v, &shape)?,
            ArrayData::F64(v) => shaped(py, v, &shape)?,
            ArrayData::I64(v) => shaped(py, v, &shape)?,
            ArrayData::U8(v) => shaped(py, v, &shape)?,
            ArrayData::U16(v) => shaped(py, v, &shape)?,
        },
    })
}

fn shaped<'py, T: numpy::Element>(
    py: Python<'py>,
    values: Vec<T>,
    shape: &[usize],
) -> PyResult<Bound<'py, PyAny>> {
    let flat = values.into_pyarray(py);
    if shape.len() == 1 {
        return Ok(flat.into_any());
    }
    Ok(flat.reshape(shape.to_vec())?.into_any())
}

fn from_python(item: &Bound<'_, PyAny>) -> PyResult<Value> {
    if item.is_none() {
        return Ok(Value::None);
    }
    if let Ok(b) = item.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if item.is_instance_of::<PyInt>() {
        return Ok(Value::Int(item.extract()?));
    }
    if let Ok(x) = item.cast::<PyFloat>() {
        return Ok(Value::Float(x.value()));
    }
    if let Ok(s) = item.cast::<PyString>() {
        return Ok(Value::Text(s.to_str()?.to_owned()));
    }
    if let Ok(list) = item.cast::<PyList>() {
        return Ok(Value::List(
            list.iter()
                .map(|v| from_python(&v))
                .collect::<PyResult<_>>()?,
        ));
    }
    if let Ok(tuple) = item.cast::<PyTuple>() {
        return Ok(Value::Tuple(
            tuple
                .iter()
                .map(|v| from_python(&v))
                .collect::<PyResult<_>>()?,
        ));
    }
    if let Some(array) = array_from(item)? {
        return Ok(Value::Array(array));
    }
    // numpy's scalars: integers by __index__, the rest by __float__.
    if let Ok(i) = item.extract::<i128>() {
        return Ok(Value::Int(i));
    }
    if let Ok(x) = item.extract::<f64>() {
        return Ok(Value::Float(x));
    }
    Err(PyTypeError::new_err(format!(
        "a {} cannot cross into the core",
        item.get_type().name()?
    )))
}

/// A numpy array of a dtype records hold, copied; None for anything else.
fn array_from(item: &Bound<'_, PyAny>) -> PyResult<Option<Array>> {
    fn take<T: numpy::Element + Copy>(
        a: &Bound<'_, PyArrayDyn<T>>,
    ) -> PyResult<(Vec<usize>, Vec<T>)> {
        let ro = a.readonly();
        let data = match ro.as_slice() {
            Ok(s) => s.to_vec(),
            Err(_) => ro.as_array().iter().copied().collect(),
        };
        Ok((a.shape().to_vec(), data))
    }
    macro_rules! try_dtype {
        ($($t:ty => $variant:ident),*) => {$(
            if let Ok(a) = item.cast::<PyArrayDyn<$t>>() {
                let (shape, data) = take(a)?;
                return Ok(Some(Array { shape, data: ArrayData::$variant(data) }));
            }
        )*};
    }
    try_dtype!(f32 => F32, f64 => F64, i64 => I64, u8 => U8, u16 => U16);
    Ok(None)
}
