"""verl's V1 task runner, in a module that registers the ``dps`` and ``dps_async`` trainer modes when Ray loads it.

verl looks the trainer up by name (`get_trainer_cls(config.trainer.v1.trainer_mode)`) inside
its `TaskRunnerV1` Ray actor, a process of its own; the registration must happen there.
"""

from __future__ import annotations

from typing import Any

import ray
from verl.trainer.main_ppo import TaskRunnerV1

import dps.integrations.verl.trainer  # noqa: F401  (registers trainer modes "dps", "dps_async" in every process that loads this module)

_TaskRunnerBase: Any = TaskRunnerV1.__ray_metadata__.modified_class.__ray_actor_class__


class _DPSTaskRunner(_TaskRunnerBase):
    """TaskRunnerV1, defined here so that the actor's process imports the dps trainer."""


DPSTaskRunner = ray.remote(_DPSTaskRunner)
