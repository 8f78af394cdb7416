"""dps in verl 0.9.1's V1 trainer: see `trainer` (the trainer), `buffer` (the replay buffer),
`driver` (the policy's step, free of verl) and `__main__` (the Hydra entry point).

`from dps.integrations.verl import DPSTrainer` imports verl; `driver` alone does not.
"""

from typing import Any

__all__ = ["DPSTrainer", "DPSReplayBuffer", "StepDriver"]


def __getattr__(name: str) -> Any:
    if name == "DPSTrainer":
        from dps.integrations.verl.trainer import DPSTrainer

        return DPSTrainer
    if name == "DPSReplayBuffer":
        from dps.integrations.verl.buffer import DPSReplayBuffer

        return DPSReplayBuffer
    if name == "StepDriver":
        from dps.integrations.verl.driver import StepDriver

        return StepDriver
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
