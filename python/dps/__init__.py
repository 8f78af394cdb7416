"""dps: Dynamics-Predictive Sampling for active prompt selection in RL finetuning."""

from dps.policies import Policy, StepResult, run_step

__all__ = ["Policy", "StepResult", "run_step"]
__version__ = "0.1.0"
