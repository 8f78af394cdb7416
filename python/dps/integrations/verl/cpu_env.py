"""What `python -m dps.integrations.verl trainer.device=cpu ...` sets up before verl is imported
(this module imports nothing from verl): the environment that loads `dps.integrations.verl.cpu`
in every process, and the config defaults a CPU run needs."""

from __future__ import annotations

import importlib.util
import os
from typing import Any

PLUGIN = "dps.integrations.verl.cpu"
DATASET_CLASS = "ImageDataset"  # in PLUGIN
#: VERL_ENGINE_DEVICE: verl registers its FSDP engine for cuda and npu only
#: (verl/workers/engine/fsdp/transformer_impl.py:1143); this verl override picks that engine,
#: whose tensors then follow the platform (the CPU).
CPU_ENV = {"VERL_PLATFORM": "cpu", "VERL_USE_EXTERNAL_MODULES": PLUGIN, "VERL_ENGINE_DEVICE": "cuda"}


def environment(cpu: bool = True) -> dict[str, str]:
    """CPU_ENV (without `cpu`: only the plugin, for the hf rollout on GPUs), keeping external
    modules the user already asked verl to load."""
    env = dict(CPU_ENV) if cpu else {}
    others = [m for m in os.environ.get("VERL_USE_EXTERNAL_MODULES", "").split(",") if m and m != PLUGIN]
    env["VERL_USE_EXTERNAL_MODULES"] = ",".join([PLUGIN, *others])
    env["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS", "1")
    return env


def needed(config: Any) -> bool:
    """A CPU run, or the hf rollout (on any device): both need the plugin in every process."""
    from omegaconf import OmegaConf

    rollout = OmegaConf.select(config, "actor_rollout_ref.rollout.name", default=None)  # may be unset (???)
    return config.trainer.device == "cpu" or rollout == "hf"


def apply(config: Any) -> None:
    """Set this process's environment and complete `config` (an OmegaConf DictConfig): every Ray
    worker gets the environment. For a CPU run, also: a local Ray cluster offers one worker slot
    (a ``GPU`` resource, see `dps.integrations.verl.cpu`) per worker, attention is torch's SDPA
    (flash-attention needs CUDA), and without torchvision the dataset class is `ImageDataset`
    (image prompts read without qwen_vl_utils), unless the run names its own."""
    from omegaconf import open_dict

    cpu = config.trainer.device == "cpu"
    env = environment(cpu)
    os.environ.update(env)
    with open_dict(config):
        ray_init = config.ray_kwargs.ray_init
        if ray_init.get("runtime_env") is None:
            ray_init.runtime_env = {}
        env_vars = dict(ray_init.runtime_env.get("env_vars") or {})
        ray_init.runtime_env.env_vars = {**env, **{k: str(v) for k, v in env_vars.items()}}
        if not cpu:
            return
        local = ray_init.get("address") in (None, "", "local")  # else: a running cluster, with its own slots
        if local and ray_init.get("num_gpus") is None:
            ray_init.num_gpus = int(config.trainer.n_gpus_per_node) * int(config.trainer.nnodes)
        override = config.actor_rollout_ref.model.override_config
        if "attn_implementation" not in override:
            override.attn_implementation = "sdpa"
        custom = config.data.get("custom_cls", None)
        if (custom is None or custom.get("path", None) is None) and importlib.util.find_spec("torchvision") is None:
            config.data.custom_cls = {"path": f"pkg://{PLUGIN}", "name": DATASET_CLASS}
