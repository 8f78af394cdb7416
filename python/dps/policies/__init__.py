"""Selection policies: the `Policy` interface, the built-in Rust-backed policies, the gate."""

from dps.policies.base import Policy, StepResult, run_step
from dps.policies.builtin import (
    BOTS,
    DPS,
    GRESO,
    PRIORS,
    HistoryResampling,
    MoPPS,
    Uniform,
    prediction_scores,
    zero_variance_mask,
)
from dps.policies.gate import DynamicSampling
from dps.policies.registry import make_policy

__all__ = [
    "BOTS",
    "DPS",
    "GRESO",
    "PRIORS",
    "DynamicSampling",
    "HistoryResampling",
    "MoPPS",
    "Policy",
    "StepResult",
    "Uniform",
    "run_step",
    "make_policy",
    "prediction_scores",
    "zero_variance_mask",
]
