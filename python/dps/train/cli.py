"""``dps train``: GRPO finetuning with a selection policy choosing each step's prompts."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

DPS_DEFAULTS = {"decay": 0.5}  # the released Countdown / arithmetic-like setting


def register(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="GRPO-finetune a model with a prompt-selection policy",
        description="Train with GRPO. Give a TOML config, or a --preset (tiny-cpu runs at once on a CPU).",
    )
    p.add_argument("config", nargs="?", help="a TOML config file (see configs/)")
    p.add_argument("--preset", help="start from a built-in preset: tiny-cpu, tiny-vllm, smollm2-gpu, paper-countdown, "
                                    "paper-math (the paper's recipe, for a real model on GPUs), paper-countdown-cpu, "
                                    "paper-math-cpu (the same algorithm settings on the tiny CPU model)")
    p.add_argument("--policy", help="dps, uniform, ds, hr, mopps, greso, dps+ds, or module:Class")
    p.add_argument("--steps", type=int, help="training steps")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--out", help="run folder (logs, checkpoints); an existing run there is resumed")
    p.add_argument("--engine", choices=["hf", "vllm"], help="rollout engine")
    p.add_argument("--model", help="a local Hugging Face model folder (instead of the config's)")
    p.add_argument("--gguf-file", help="a GGUF file inside --model")
    p.add_argument("--warmup-cache", help="folder to cache the supervised warm-up in (shared by runs)")
    p.add_argument("--loss-agg", choices=["token-mean", "token-mean-informative", "seq-mean-token-mean"])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set grpo.lr=1e-4 (value parsed as TOML)")
    p.add_argument("--check", action="store_true", help="validate the config, task and policy, then stop")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=handle)


def _set(d: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    for k in parts[:-1]:
        d = d.setdefault(k, {})
        if not isinstance(d, dict):
            raise ValueError(f"--set {key}: {k} is not a table")
    d[parts[-1]] = value


def _parse_value(text: str) -> Any:
    import tomllib

    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare string


def build_config(args: argparse.Namespace):
    from dps.train.config import config_from_dict, merge, read_config_file
    from dps.train.presets import NEEDS_MODEL, preset

    data: dict[str, Any] = {}
    if args.preset:
        data = preset(args.preset)
    if args.config:  # its relative paths are relative to the file, as in a replay scenario
        data = merge(data, read_config_file(args.config))
    if not args.config and not args.preset:
        raise ValueError("give a config file or --preset (e.g. dps train --preset tiny-cpu --out runs/tiny)")
    if args.policy:
        data.setdefault("policy", {})["name"] = args.policy
        pol = args.policy.lower()
        if pol in ("dps", "dps+ds") and args.preset:
            opts = data["policy"].setdefault("options", {})
            for k, v in DPS_DEFAULTS.items():
                opts.setdefault(k, v)
        elif args.preset:
            data["policy"]["options"] = {}
    if args.preset and data.get("policy", {}).get("name", "dps") == "dps":
        opts = data.setdefault("policy", {}).setdefault("options", {})
        for k, v in DPS_DEFAULTS.items():
            opts.setdefault(k, v)
    for key, val in ((("steps",), args.steps), (("seed",), args.seed), (("out",), args.out),
                     (("rollout", "engine"), args.engine), (("model", "path"), args.model),
                     (("model", "gguf_file"), args.gguf_file), (("warmup", "cache_dir"), args.warmup_cache),
                     (("grpo", "loss_agg"), args.loss_agg)):
        if val is not None:
            _set(data, ".".join(key), val)
    if args.no_progress:
        _set(data, "log.progress", False)
    for item in args.set:
        if "=" not in item:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        _set(data, k.strip(), _parse_value(v.strip()))
    if args.preset in NEEDS_MODEL and not data.get("model", {}).get("path"):
        raise ValueError(f"preset {args.preset} needs --model DIR (a Hugging Face model folder; "
                         "scripts/gpu_train.sh makes the SmolLM2 one)")
    where = args.config or f"preset {args.preset}"
    try:
        return config_from_dict(data)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from e


def handle(args: argparse.Namespace) -> int:
    cfg = build_config(args)
    if not cfg.out:
        raise ValueError("no run folder: pass --out DIR (or set out = ... in the config)")
    from dps.train.trainer import Trainer  # imports torch lazily, after the config is known good

    trainer = Trainer(cfg, cfg.out)
    trainer.prepare()
    if args.check:
        print(f"ok: task {cfg.task.name} ({len(trainer.train_ex)} train / {len(trainer.test_ex)} test prompts), "
              f"policy {cfg.policy.name}, engine {cfg.rollout.engine}")
        return 0
    summary = trainer.run()
    json.dump(summary, sys.stdout, indent=1)
    print()
    return 0
