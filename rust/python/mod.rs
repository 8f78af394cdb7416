//! Python bindings (`dps._core`), one file per class: numpy arrays in and out, the GIL released
//! in batch work. Argument types and dtypes are checked by the Python layer
//! (python/dps/policies/builtin.py); values are checked here, by the core.
//!
//! Every policy class derives from `Selector` (selector.rs), which holds the policy behind the
//! core's `AnySelector` and gives select, observe, config, state and load_state to all of them;
//! a class adds its constructor and its own queries. Options and states cross as records
//! (rust/record.rs) converted in one place (record.rs here).

mod bots;
mod convert;
mod dps;
mod errors;
mod functions;
mod greso;
mod history;
mod logrows;
mod mopps;
mod ratedps;
mod record;
mod selector;
mod uniform;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<selector::PySelector>()?;
    m.add_class::<dps::PyDps>()?;
    m.add_class::<uniform::PyUniform>()?;
    m.add_class::<history::PyHistory>()?;
    m.add_class::<mopps::PyMopps>()?;
    m.add_class::<greso::PyGreso>()?;
    m.add_class::<bots::PyBots>()?;
    m.add_class::<ratedps::PyRateDps>()?;
    m.add_class::<logrows::PyLogRows>()?;
    m.add_function(wrap_pyfunction!(functions::admit_mask, m)?)?;
    m.add_function(wrap_pyfunction!(functions::top_k, m)?)?;
    m.add_function(wrap_pyfunction!(functions::hashed_uniforms, m)?)?;
    m.add_function(wrap_pyfunction!(functions::draw_correct, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
