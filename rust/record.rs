//! Records: the structs that cross a boundary (a policy's options, its saved state), each
//! written once with its fields' names, types and array shapes, and converted to and from
//! [`Value`]s in one place. The Python bindings turn values into Python objects (arrays into
//! numpy arrays of the field's dtype and shape) and back; nothing else lists the fields.
//!
//! ```
//! dps_core::record! {
//!     /// What a tiny policy saves.
//!     pub struct Tiny {
//!         pub step: u64,
//!         /// Per prompt, then three values each.
//!         pub weights: Vec<f32> [N, 3],
//!         pub pending: Vec<i64> [*],
//!     }
//! }
//! use dps_core::record::{to_values, from_values};
//! let t = Tiny { step: 2, weights: vec![0.5; 6], pending: vec![] };
//! let values = to_values(t, 2);
//! let back: Tiny = from_values(values, 2, "state").unwrap();
//! assert_eq!(back.step, 2);
//! ```
//!
//! A field is a scalar (`u64`, `f64`, `bool`, `String`, options and fixed lists of them), an array
//! (`Vec<T>` of a numpy dtype, with its shape after it: `N` is the number of prompts, a number a
//! fixed length, `*` any length), or another record flattened under a key prefix
//! (`pub pool: OrderState as "pool_"`).

use std::fmt;

use crate::error::{Error, Result};

/// One axis of an array field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dim {
    /// The number of prompts.
    Prompts,
    Fixed(usize),
    Any,
}

/// The element types arrays are stored in, named as numpy names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    F64,
    I64,
    U8,
    U16,
}

impl DType {
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::I64 => "int64",
            DType::U8 => "uint8",
            DType::U16 => "uint16",
        }
    }
}

/// What a field holds: a scalar (its Python type, as an annotation) or an array.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Scalar(String),
    Array(DType, Vec<Dim>),
}

/// A field's full name (after any prefix) and kind.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    pub name: String,
    pub kind: Kind,
}

/// An array's values, flat in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub enum ArrayData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I64(Vec<i64>),
    U8(Vec<u8>),
    U16(Vec<u16>),
}

impl ArrayData {
    pub fn dtype(&self) -> DType {
        match self {
            ArrayData::F32(_) => DType::F32,
            ArrayData::F64(_) => DType::F64,
            ArrayData::I64(_) => DType::I64,
            ArrayData::U8(_) => DType::U8,
            ArrayData::U16(_) => DType::U16,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            ArrayData::F32(v) => v.len(),
            ArrayData::F64(v) => v.len(),
            ArrayData::I64(v) => v.len(),
            ArrayData::U8(v) => v.len(),
            ArrayData::U16(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: ArrayData,
}

/// A field's value, as it crosses the boundary.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Text(String),
    Array(Array),
}

impl Value {
    /// The Python type this value arrives as, for messages.
    pub fn type_name(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) => "int".into(),
            Value::Float(_) => "float".into(),
            Value::List(_) => "list".into(),
            Value::Tuple(_) => "tuple".into(),
            Value::Text(_) => "str".into(),
            Value::Array(a) => format!("a {} array", a.data.dtype().name()),
        }
    }
}

/// Why a value does not fit a field.
pub enum Mismatch {
    /// The wrong type.
    Type,
    /// The right type, outside what the field can hold.
    Range,
}

/// A scalar field: its Python type and its conversions.
pub trait Scalar: Sized {
    fn type_name() -> String;
    fn into_value(self) -> Value;
    fn from_value(value: Value) -> std::result::Result<Self, Mismatch>;
}

impl Scalar for u64 {
    fn type_name() -> String {
        "int".into()
    }
    fn into_value(self) -> Value {
        Value::Int(self as i128)
    }
    fn from_value(value: Value) -> std::result::Result<Self, Mismatch> {
        match value {
            Value::Int(i) => u64::try_from(i).map_err(|_| Mismatch::Range),
            _ => Err(Mismatch::Type),
        }
    }
}

impl Scalar for f64 {
    fn type_name() -> String {
        "float".into()
    }
    fn into_value(self) -> Value {
        Value::Float(self)
    }
    fn from_value(value: Value) -> std::result::Result<Self, Mismatch> {
        match value {
            Value::Float(x) => Ok(x),
            Value::Int(i) => Ok(i as f64),
            _ => Err(Mismatch::Type),
        }
    }
}

impl Scalar for String {
    fn type_name() -> String {
        "str".into()
    }
    fn into_value(self) -> Value {
        Value::Text(self)
    }
    fn from_value(value: Value) -> std::result::Result<Self, Mismatch> {
        match value {
            Value::Text(t) => Ok(t),
            _ => Err(Mismatch::Type),
        }
    }
}

impl Scalar for bool {
    fn type_name() -> String {
        "bool".into()
    }
    fn into_value(self) -> Value {
        Value::Bool(self)
    }
    fn from_value(value: Value) -> std::result::Result<Self, Mismatch> {
        match value {
            Value::Bool(b) => Ok(b),
            _ => Err(Mismatch::Type),
        }
    }
}

impl<T: Scalar> Scalar for Option<T> {
    fn type_name() -> String {
        format!("{} | None", T::type_name())
    }
    fn into_value(self) -> Value {
        self.map_or(Value::None, T::into_value)
    }
    fn from_value(value: Value) -> std::result::Result<Self, Mismatch> {
        match value {
            Value::None => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// A fixed-length list (a Python list).
impl<T: Scalar, const K: usize> Scalar for [T; K] {
    fn type_name() -> String {
        format!("list[{}]", T::type_name())
    }
    fn into_value(self) -> Value {
        Value::List(self.into_iter().map(T::into_value).collect())
    }
    fn from_value(value: Value) -> std::result::Result<Self, Mismatch> {
        let (Value::List(items) | Value::Tuple(items)) = value else {
            return Err(Mismatch::Type);
        };
        if items.len() != K {
            return Err(Mismatch::Range);
        }
        let items: Vec<T> = items
            .into_iter()
            .map(T::from_value)
            .collect::<std::result::Result<_, _>>()?;
        items.try_into().map_err(|_| Mismatch::Range)
    }
}

/// A list of any length (a Python list).
impl<T: Scalar> Scalar for Vec<T> {
    fn type_name() -> String {
        format!("list[{}]", T::type_name())
    }
    fn into_value(self) -> Value {
        Value::List(self.into_iter().map(T::into_value).collect())
    }
    fn from_value(value: Value) -> std::result::Result<Self, Mismatch> {
        let (Value::List(items) | Value::Tuple(items)) = value else {
            return Err(Mismatch::Type);
        };
        items.into_iter().map(T::from_value).collect()
    }
}

/// A pair (a Python tuple).
impl<T: Scalar> Scalar for (T, T) {
    fn type_name() -> String {
        let t = T::type_name();
        format!("tuple[{t}, {t}]")
    }
    fn into_value(self) -> Value {
        Value::Tuple(vec![self.0.into_value(), self.1.into_value()])
    }
    fn from_value(value: Value) -> std::result::Result<Self, Mismatch> {
        let (Value::List(items) | Value::Tuple(items)) = value else {
            return Err(Mismatch::Type);
        };
        let [a, b]: [Value; 2] = items.try_into().map_err(|_| Mismatch::Range)?;
        Ok((T::from_value(a)?, T::from_value(b)?))
    }
}

/// The element types of array fields.
pub trait Element: Sized {
    const DTYPE: DType;
    fn wrap(values: Vec<Self>) -> ArrayData;
    fn unwrap(data: ArrayData) -> Option<Vec<Self>>;
}

macro_rules! element {
    ($($t:ty => $variant:ident),*) => {$(
        impl Element for $t {
            const DTYPE: DType = DType::$variant;
            fn wrap(values: Vec<Self>) -> ArrayData {
                ArrayData::$variant(values)
            }
            fn unwrap(data: ArrayData) -> Option<Vec<Self>> {
                match data {
                    ArrayData::$variant(v) => Some(v),
                    _ => None,
                }
            }
        }
    )*};
}
element!(f32 => F32, f64 => F64, i64 => I64, u8 => U8, u16 => U16);

/// An array field's Rust type: a flat `Vec` of its elements.
pub trait ArrayField {
    type Elem: Element;
    fn into_data(self) -> (usize, ArrayData);
}

impl<T: Element> ArrayField for Vec<T> {
    type Elem = T;
    fn into_data(self) -> (usize, ArrayData) {
        (self.len(), T::wrap(self))
    }
}

/// A record's fields, written once (see the module docs and [`record!`](crate::record!)).
pub trait Record: Sized {
    /// The fields in order, named after `prefix`.
    fn fields_into(prefix: &str, out: &mut Vec<Field>);
    /// The values in field order, named after `prefix`.
    fn write(self, prefix: &str, prompts: usize, out: &mut Values);
    /// The record from `input`'s values (each taken out of it), named after `prefix`.
    fn read(prefix: &str, input: &mut Reader) -> Result<Self>;
}

/// Named values in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Values(pub Vec<(String, Value)>);

impl Values {
    pub fn push(&mut self, name: String, value: Value) {
        self.0.push((name, value));
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(n, _)| n.as_str())
    }

    /// Without the value named `name` (a state written in part).
    pub fn without(mut self, name: &str) -> Values {
        self.0.retain(|(n, _)| n != name);
        self
    }
}

/// Reads a record's fields out of named values, naming `what` ("state", "config") in errors.
pub struct Reader<'a> {
    what: &'a str,
    prompts: usize,
    values: Vec<(String, Option<Value>)>,
}

impl Reader<'_> {
    fn take(&mut self, name: &str) -> Result<Value> {
        self.values
            .iter_mut()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.take())
            .ok_or_else(|| Error::Invalid(format!("{} has no '{name}'", self.what)))
    }

    fn type_error(&self, name: &str, expected: &str, got: &Value) -> Error {
        Error::Type(format!(
            "{}['{name}'] must be {expected}, got {}",
            self.what,
            got.type_name()
        ))
    }

    /// A scalar field.
    pub fn scalar<T: Scalar>(&mut self, name: &str) -> Result<T> {
        let value = self.take(name)?;
        let shown = value.clone();
        T::from_value(value).map_err(|m| match m {
            Mismatch::Type => self.type_error(name, &T::type_name(), &shown),
            Mismatch::Range => Error::Invalid(format!(
                "{}['{name}'] = {} does not fit {}",
                self.what,
                show(&shown),
                T::type_name()
            )),
        })
    }

    /// An array field of shape `dims`.
    pub fn array<T: Element>(&mut self, name: &str, dims: &[Dim]) -> Result<Vec<T>> {
        let value = self.take(name)?;
        let Value::Array(array) = value else {
            return Err(self.type_error(name, &format!("a {} array", T::DTYPE.name()), &value));
        };
        let fits = array.shape.len() == dims.len()
            && array.shape.iter().zip(dims).all(|(&s, d)| match d {
                Dim::Prompts => s == self.prompts,
                Dim::Fixed(k) => s == *k,
                Dim::Any => true,
            });
        if !fits || array.shape.iter().product::<usize>() != array.data.len() {
            return Err(Error::Invalid(format!(
                "{}['{name}'] has shape {}, expected {}",
                self.what,
                shape_text(array.shape.iter().map(|s| s.to_string())),
                shape_text(dims.iter().map(|d| dim_text(*d, self.prompts))),
            )));
        }
        let dtype = array.data.dtype();
        T::unwrap(array.data).ok_or_else(|| {
            Error::Type(format!(
                "{}['{name}'] has dtype {}, expected {}",
                self.what,
                dtype.name(),
                T::DTYPE.name()
            ))
        })
    }
}

/// A scalar value as Python would print it (arrays by their dtype).
fn show(value: &Value) -> String {
    let items = |v: &[Value]| v.iter().map(show).collect::<Vec<_>>().join(", ");
    match value {
        Value::None => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::Int(i) => i.to_string(),
        Value::Float(x) => format!("{x:?}"),
        Value::Text(t) => format!("'{t}'"),
        Value::List(v) => format!("[{}]", items(v)),
        Value::Tuple(v) => format!("({})", items(v)),
        Value::Array(_) => value.type_name(),
    }
}

fn dim_text(dim: Dim, prompts: usize) -> String {
    match dim {
        Dim::Prompts => prompts.to_string(),
        Dim::Fixed(k) => k.to_string(),
        Dim::Any => "*".into(),
    }
}

/// A shape as Python prints a tuple: (3,), (40, 3).
fn shape_text(dims: impl Iterator<Item = String>) -> String {
    let dims: Vec<String> = dims.collect();
    match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    }
}

/// The shape of an array field holding `len` values.
pub fn shape_of(dims: &[Dim], prompts: usize, len: usize) -> Vec<usize> {
    let known: usize = dims
        .iter()
        .map(|d| match d {
            Dim::Prompts => prompts,
            Dim::Fixed(k) => *k,
            Dim::Any => 1,
        })
        .product();
    dims.iter()
        .map(|d| match d {
            Dim::Prompts => prompts,
            Dim::Fixed(k) => *k,
            Dim::Any => len.checked_div(known).unwrap_or(0),
        })
        .collect()
}

/// Names as Python prints a list of strings: ['a', 'b'].
fn names_text(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    format!("[{}]", quoted.join(", "))
}

/// The fields of `R`, in order.
pub fn fields<R: Record>() -> Vec<Field> {
    let mut out = Vec::new();
    R::fields_into("", &mut out);
    out
}

/// `record` as named values; arrays shaped for `prompts` prompts.
pub fn to_values<R: Record>(record: R, prompts: usize) -> Values {
    let mut out = Values::default();
    record.write("", prompts, &mut out);
    out
}

/// The record held by `values`, which must name each of its fields once and nothing else;
/// `what` ("state", "config") names them in errors.
pub fn from_values<R: Record>(values: Values, prompts: usize, what: &str) -> Result<R> {
    let names: Vec<String> = fields::<R>().into_iter().map(|f| f.name).collect();
    let mut missing: Vec<&str> = names
        .iter()
        .filter(|n| !values.names().any(|m| m == n.as_str()))
        .map(String::as_str)
        .collect();
    let mut unexpected: Vec<&str> = values
        .names()
        .filter(|m| !names.iter().any(|n| n == m))
        .collect();
    if !missing.is_empty() || !unexpected.is_empty() {
        missing.sort_unstable();
        unexpected.sort_unstable();
        return Err(Error::Invalid(format!(
            "{what} does not fit: missing {}, unexpected {}",
            names_text(&missing),
            names_text(&unexpected)
        )));
    }
    let mut reader = Reader {
        what,
        prompts,
        values: values.0.into_iter().map(|(n, v)| (n, Some(v))).collect(),
    };
    R::read("", &mut reader)
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Scalar(t) => f.write_str(t),
            Kind::Array(dtype, dims) => write!(
                f,
                "{} {}",
                dtype.name(),
                shape_text(dims.iter().map(|d| match d {
                    Dim::Prompts => "N".to_string(),
                    d => dim_text(*d, 0),
                }))
            ),
        }
    }
}

/// Defines a struct and its [`Record`] impl (see the module docs).
#[macro_export]
macro_rules! record {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[$field_meta:meta])*
                $field_vis:vis $field:ident : $ty:ty $([$($dim:tt),*])? $(as $prefix:literal)?
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $($(#[$field_meta])* $field_vis $field: $ty,)*
        }

        impl $crate::record::Record for $name {
            fn fields_into(prefix: &str, out: &mut Vec<$crate::record::Field>) {
                $($crate::record_field!(fields out prefix $field $ty $([$($dim),*])? $(as $prefix)?);)*
            }

            #[allow(unused_variables)] // records without arrays do not need `prompts`
            fn write(self, prefix: &str, prompts: usize, out: &mut $crate::record::Values) {
                let $name { $($field),* } = self;
                $($crate::record_field!(write out prefix prompts $field $ty $([$($dim),*])? $(as $prefix)?);)*
            }

            fn read(prefix: &str, input: &mut $crate::record::Reader) -> $crate::error::Result<Self> {
                Ok($name {
                    $($field: $crate::record_field!(read input prefix $field $ty $([$($dim),*])? $(as $prefix)?),)*
                })
            }
        }
    };
}

/// One field's part of [`record!`]: a scalar, an array (`[dims]`) or a nested record (`as "prefix"`).
#[doc(hidden)]
#[macro_export]
macro_rules! record_field {
    (fields $out:ident $prefix:ident $field:ident $ty:ty) => {
        $out.push($crate::record::Field {
            name: format!("{}{}", $prefix, stringify!($field)),
            kind: $crate::record::Kind::Scalar(<$ty as $crate::record::Scalar>::type_name()),
        })
    };
    (fields $out:ident $prefix:ident $field:ident $ty:ty [$($dim:tt),*]) => {
        $out.push($crate::record::Field {
            name: format!("{}{}", $prefix, stringify!($field)),
            kind: $crate::record::Kind::Array(
                <<$ty as $crate::record::ArrayField>::Elem as $crate::record::Element>::DTYPE,
                vec![$($crate::record_dim!($dim)),*],
            ),
        })
    };
    (fields $out:ident $prefix:ident $field:ident $ty:ty as $nested:literal) => {
        <$ty as $crate::record::Record>::fields_into(&format!("{}{}", $prefix, $nested), $out)
    };
    (write $out:ident $prefix:ident $prompts:ident $field:ident $ty:ty) => {
        $out.push(
            format!("{}{}", $prefix, stringify!($field)),
            <$ty as $crate::record::Scalar>::into_value($field),
        )
    };
    (write $out:ident $prefix:ident $prompts:ident $field:ident $ty:ty [$($dim:tt),*]) => {{
        let (len, data) = <$ty as $crate::record::ArrayField>::into_data($field);
        let shape = $crate::record::shape_of(&[$($crate::record_dim!($dim)),*], $prompts, len);
        $out.push(
            format!("{}{}", $prefix, stringify!($field)),
            $crate::record::Value::Array($crate::record::Array { shape, data }),
        )
    }};
    (write $out:ident $prefix:ident $prompts:ident $field:ident $ty:ty as $nested:literal) => {
        $crate::record::Record::write($field, &format!("{}{}", $prefix, $nested), $prompts, $out)
    };
    (read $input:ident $prefix:ident $field:ident $ty:ty) => {
        $input.scalar::<$ty>(&format!("{}{}", $prefix, stringify!($field)))?
    };
    (read $input:ident $prefix:ident $field:ident $ty:ty [$($dim:tt),*]) => {
        $input.array::<<$ty as $crate::record::ArrayField>::Elem>(
            &format!("{}{}", $prefix, stringify!($field)),
            &[$($crate::record_dim!($dim)),*],
        )?
    };
    (read $input:ident $prefix:ident $field:ident $ty:ty as $nested:literal) => {
        <$ty as $crate::record::Record>::read(&format!("{}{}", $prefix, $nested), $input)?
    };
}

/// An array axis of [`record!`]: `N` (the number of prompts), a length, or `*` (any).
#[doc(hidden)]
#[macro_export]
macro_rules! record_dim {
    (N) => {
        $crate::record::Dim::Prompts
    };
    (*) => {
        $crate::record::Dim::Any
    };
    ($k:literal) => {
        $crate::record::Dim::Fixed($k)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::record! {
        #[derive(Clone, Debug, PartialEq)]
        struct Inner {
            epoch: u64,
            order: Vec<i64> [*],
        }
    }

    crate::record! {
        #[derive(Clone, Debug, PartialEq)]
        struct Outer {
            step: u64,
            rate: f64,
            maybe: Option<f64>,
            matrix: [[f64; 2]; 2],
            band: Option<(f64, f64)>,
            alpha: Vec<f32> [N, 2],
            flags: Vec<u8> [N],
            inner: Inner as "pool_",
        }
    }

    fn outer() -> Outer {
        Outer {
            step: 3,
            rate: 0.5,
            maybe: None,
            matrix: [[1.0, 2.0], [3.0, 4.0]],
            band: Some((0.1, 0.9)),
            alpha: vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
            flags: vec![0, 1, 1],
            inner: Inner {
                epoch: 1,
                order: vec![2, 0, 1],
            },
        }
    }

    #[test]
    fn fields_are_named_in_order_with_nested_prefixes() {
        let names: Vec<String> = fields::<Outer>().into_iter().map(|f| f.name).collect();
        let want = [
            "step",
            "rate",
            "maybe",
            "matrix",
            "band",
            "alpha",
            "flags",
            "pool_epoch",
            "pool_order",
        ];
        assert_eq!(names, want);
        let kinds: Vec<String> = fields::<Outer>()
            .into_iter()
            .map(|f| f.kind.to_string())
            .collect();
        assert_eq!(kinds[2], "float | None");
        assert_eq!(kinds[3], "list[list[float]]");
        assert_eq!(kinds[4], "tuple[float, float] | None");
        assert_eq!(kinds[5], "float32 (N, 2)");
        assert_eq!(kinds[8], "int64 (*,)");
    }

    #[test]
    fn values_round_trip_with_shapes() {
        let values = to_values(outer(), 3);
        let Value::Array(alpha) = &values.0[5].1 else {
            panic!("alpha is an array")
        };
        assert_eq!(alpha.shape, [3, 2]);
        let Value::Array(order) = &values.0[8].1 else {
            panic!("order is an array")
        };
        assert_eq!(order.shape, [3]);
        assert_eq!(
            values.0[4].1,
            Value::Tuple(vec![Value::Float(0.1), Value::Float(0.9)])
        );
        assert_eq!(from_values::<Outer>(values, 3, "state").unwrap(), outer());
    }

    #[test]
    fn a_value_that_does_not_fit_is_an_error_naming_the_field() {
        let err = |values: Values| {
            from_values::<Outer>(values, 3, "state")
                .unwrap_err()
                .to_string()
        };
        let good = to_values(outer(), 3);
        let mut v = good.clone();
        v.0.pop();
        v.push("extra".into(), Value::None);
        assert_eq!(
            err(v),
            "state does not fit: missing ['pool_order'], unexpected ['extra']"
        );
        let mut v = good.clone();
        v.0[1].1 = Value::Text("fast".into());
        let e = from_values::<Outer>(v, 3, "state").unwrap_err();
        assert!(matches!(e, Error::Type(_)), "{e}");
        assert_eq!(e.to_string(), "state['rate'] must be float, got str");
        let mut v = good.clone();
        v.0[0].1 = Value::Int(-1);
        assert!(matches!(
            from_values::<Outer>(v, 3, "state"),
            Err(Error::Invalid(_))
        ));
        // An array for another number of prompts, and one of another dtype.
        let e = from_values::<Outer>(to_values(outer(), 3), 4, "state").unwrap_err();
        assert_eq!(
            e.to_string(),
            "state['alpha'] has shape (3, 2), expected (4, 2)"
        );
        let mut v = good;
        v.0[6].1 = Value::Array(Array {
            shape: vec![3],
            data: ArrayData::U16(vec![0, 1, 1]),
        });
        let e = from_values::<Outer>(v, 3, "state").unwrap_err();
        assert!(matches!(e, Error::Type(_)));
        assert_eq!(
            e.to_string(),
            "state['flags'] has dtype uint16, expected uint8"
        );
    }
}
