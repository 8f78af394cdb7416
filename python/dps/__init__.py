"""dps: Dynamics-Predictive Sampling for active prompt selection in RL finetuning."""

from dps.policies import (
    BOTS,
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
    "BOTS",
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
