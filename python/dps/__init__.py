"""dps: Dynamics-Predictive Sampling for active prompt selection in RL finetuning."""

from dps._core import __version__
from dps.policies import (
    BOTS,
    DPS,
    GRESO,
    DynamicSampling,
    GroupOutcomes,
    HistoryResampling,
    LaggedSteps,
    MoPPS,
    Policy,
    RateDPS,
    StepResult,
    Uniform,
    roll_out_step,
    run_step,
)

__all__ = [
    "__version__",
    "BOTS",
    "DPS",
    "GRESO",
    "DynamicSampling",
    "GroupOutcomes",
    "HistoryResampling",
    "LaggedSteps",
    "MoPPS",
    "Policy",
    "RateDPS",
    "StepResult",
    "Uniform",
    "roll_out_step",
    "run_step",
]
