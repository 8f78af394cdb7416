"""The tiny trainer config the train tests share, a TOML writer for it, and `dps` as a subprocess."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from paths import ROOT

TINY = {
    "seed": 0,
    "steps": 4,
    "model": {"tiny": {"hidden_size": 32, "layers": 1, "heads": 2, "kv_heads": 1, "intermediate_size": 64}},
    "task": {
        "name": "arithmetic",
        "options": {"n_train": 24, "n_test": 12, "n_warmup": 40, "levels": [[2, 1], [3, 1]]},
    },
    "policy": {"name": "uniform", "batch_size": 4},
    "rollout": {"k": 4, "max_new_tokens": 3, "gen_batch_size": 32},
    "grpo": {"lr": 1e-3, "micro_batch_size": 8},
    "warmup": {"steps": 3, "batch_size": 8},
    "log": {"eval_every": 2, "checkpoint_every": 2, "progress": False},
}

# The same loop with a tiny Qwen2-VL on `figures` (one vision block, 28 x 28 images: 4 image tokens).
TINY_VLM = {
    **TINY,
    "model": {
        "tiny": {
            **TINY["model"]["tiny"],
            "vlm": True,
            "vision": {"depth": 1, "width": 32, "heads": 2, "patch_size": 7, "image_size": 28},
        }
    },
    "task": {
        "name": "figures",
        "options": {
            "n_train": 24,
            "n_test": 8,
            "n_warmup": 40,
            "levels": ["sides:3-4", "sides:3-6"],
            "answer_format": "plain",
        },
    },
}


def toml_text(d: dict, prefix: str = "") -> str:
    """A minimal TOML writer for the test configs (tables, scalars, lists)."""
    lines, tables = [], []
    for k, v in d.items():
        if isinstance(v, dict):
            tables.append((k, v))
        else:
            lines.append(f"{k} = {json.dumps(v)}")
    out = "\n".join(lines) + "\n"
    for k, v in tables:
        name = f"{prefix}{k}"
        out += f"\n[{name}]\n" + toml_text(v, name + ".")
    return out


def write_config(path: Path, d: dict) -> Path:
    path.write_text(toml_text(d))
    return path


def run_dps(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dps.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, **kw
    )


def train_args(**given: object) -> argparse.Namespace:
    """`dps train`'s parsed options, as `build_config` takes them: `given` over the defaults."""
    base: dict[str, object] = dict(
        config=None,
        preset=None,
        policy=None,
        steps=None,
        seed=None,
        out="x",
        engine=None,
        model=None,
        gguf_file=None,
        warmup_cache=None,
        loss_agg=None,
        set=[],
        no_progress=False,
    )
    base.update(given)
    return argparse.Namespace(**base)
