"""`python -m dps.integrations.verl [hydra overrides]`: verl's PPO entry point with the dps trainer.

The config is verl's `ppo_trainer` with ``trainer.v1.trainer_mode=dps`` and a ``dps`` section
(`config/dps_trainer.yaml`); every verl override works as with `python -m verl.trainer.main_ppo`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig


@hydra.main(config_path="config", config_name="dps_trainer", version_base=None)
def main(config: DictConfig) -> None:
    from verl.trainer.main_ppo import run_ppo
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config
    from verl.utils.device import auto_set_device

    from dps.integrations.verl.runner import DPSTaskRunner
    from dps.integrations.verl.trainer import dps_options

    dps_options(config)  # unknown keys in the dps section fail here, before Ray starts
    auto_set_device(config)
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    run_ppo(config, task_runner_class=DPSTaskRunner)


if __name__ == "__main__":
    main()
