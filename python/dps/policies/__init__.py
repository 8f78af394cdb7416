"""Selection policies: the `Policy` interface, the built-in Rust-backed policies, the gate."""

from dps.outcomes import GroupOutcomes
from dps.policies.base import LaggedSteps, Policy, StepResult, roll_out_step, run_step
from dps.policies.builtin import (
    BOTS,
    DPS,
    GRESO,
    PRIORS,
    HistoryResampling,
    MoPPS,
    RateDPS,
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
    "GroupOutcomes",
    "HistoryResampling",
    "LaggedSteps",
    "MoPPS",
    "RateDPS",
    "Policy",
    "StepResult",
    "Uniform",
    "roll_out_step",
    "run_step",
    "make_policy",
    "prediction_scores",
    "zero_variance_mask",
]
