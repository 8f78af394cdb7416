//! Dynamics-Predictive Sampling core: per-prompt HMM filtering and prompt selection.
//!
//! Pure Rust; the Python bindings live in [`python`] behind the `python` cargo feature.

pub mod beta;
pub mod bots;
pub mod dps;
pub mod error;
pub mod gate;
pub mod greso;
pub mod history;
pub mod logworld;
pub mod mopps;
pub mod observe;
pub mod pending;
pub mod pool;
pub mod ratedps;
pub mod record;
pub mod rng;
pub mod sampler;
pub mod scoring;
pub mod selector;
pub mod topk;
pub mod uniform;

#[cfg(feature = "python")]
mod python;

pub use error::{Error, Result};
pub use observe::{Group, Observations};
