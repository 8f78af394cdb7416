"""dps: Dynamics-Predictive Sampling for active prompt selection in RL finetuning."""

from dps.policies import (
    DPS,
    GRESO,
    DynamicSampling,
    HistoryResampling,
    MoPPS,
    Policy,
    StepResult,
    Uniform,
    run_step,
)

__all__ = [
    "DPS",
    "GRESO",
    "DynamicSampling",
    "HistoryResampling",
    "MoPPS",
    "Policy",
    "StepResult",
    "Uniform",
    "run_step",
]
__version__ = "0.1.0"
