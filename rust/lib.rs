//! Dynamics-Predictive Sampling core: per-prompt HMM filtering and prompt selection.
