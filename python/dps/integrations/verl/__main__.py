"""`python -m dps.integrations.verl [hydra overrides]`: verl's PPO entry point with the dps trainer.

The config is verl's `ppo_trainer` with ``trainer.v1.trainer_mode=dps`` (verl's sync trainer) or
``dps_async`` (verl's ``colocate_async``: generation one batch ahead of the update) and a ``dps``
section (`config/dps_trainer.yaml`); every verl override works as with `python -m verl.trainer.main_ppo`.
With ``trainer.device=cpu`` it runs on CPUs (``actor_rollout_ref.rollout.name=hf``; see
`dps.integrations.verl.cpu` and `cpu_env`).
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import hydra
from omegaconf import DictConfig


@hydra.main(config_path="config", config_name="dps_trainer", version_base=None)
def main(config: DictConfig) -> None:
    from dps.integrations.verl import cpu_env

    if cpu_env.needed(config):  # before verl is imported: it picks its platform on import
        cpu_env.apply(config)
        import dps.integrations.verl.cpu  # noqa: F401  (registers the platform here too: Hydra may have imported verl)

    from verl.trainer.main_ppo import run_ppo
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config
    from verl.utils.device import auto_set_device

    from dps.integrations.verl.runner import DPSTaskRunner
    from dps.integrations.verl.trainer import ASYNC_TRAINER_MODE, TRAINER_MODE, dps_options

    timeout_s = placement_timeout(dps_options(config))  # unknown keys in the dps section fail here, before Ray starts
    mode = config.trainer.v1.trainer_mode
    if mode not in (TRAINER_MODE, ASYNC_TRAINER_MODE) or not config.trainer.use_v1:
        raise SystemExit(
            f"python -m dps.integrations.verl runs verl's V1 trainer in mode {TRAINER_MODE!r} or "
            f"{ASYNC_TRAINER_MODE!r} (trainer.use_v1=true, trainer.v1.trainer_mode={TRAINER_MODE}); got "
            f"use_v1={config.trainer.use_v1}, trainer_mode={mode!r}, where the dps section would be ignored"
        )
    auto_set_device(config)
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    run_placed(run_ppo, config, DPSTaskRunner, timeout_s)


def placement_timeout(options: dict[str, Any]) -> float | None:
    value = options["placement_timeout_s"]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"dps.placement_timeout_s must be a number of seconds above 0 or null, got {value!r}")
    return float(value)


def run_placed(run_ppo: Any, config: DictConfig, task_runner: Any, timeout_s: float | None) -> None:
    """verl's `run_ppo` with the task runner placed and watched (`cluster.PlacedTaskRunner`); a
    cluster without room ends the run with one line and exit status 2."""
    from ray.exceptions import RayActorError

    from dps.integrations.verl.cluster import PlacedTaskRunner
    from dps.integrations.verl.placement import PlacementError

    runner = PlacedTaskRunner(task_runner, config, timeout_s)
    try:
        run_ppo(config, task_runner_class=runner)
    except PlacementError as e:
        refuse(str(e))
    except RayActorError:
        if runner.failure is None:
            raise
        refuse(runner.failure)
    finally:
        runner.stop()


def refuse(message: str) -> NoReturn:
    print(f"dps verl: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


if __name__ == "__main__":
    main()
