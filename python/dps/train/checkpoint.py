"""Checkpoints of a training run: model, optimizer, policy, counters and random states.

A checkpoint is a folder ``ckpt/step-NNNNNNN`` written under a temporary name and renamed into
place; ``ckpt/latest`` names the newest one. Tensors load with ``weights_only=True``: a
checkpoint folder holds data, and a pickled object in it is refused, never run.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from dps.policies.base import Policy
from dps.train.records import atomic_write_bytes


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded safely (corrupt, or holding pickled code)."""


def latest_checkpoint(root: Path) -> Path | None:
    p = root / "latest"
    if not p.exists():
        return None
    d = root / p.read_text().strip()
    return d if (d / "trainer.json").exists() else None


def save_checkpoint(
    root: Path, next_step: int, model: Any, learner: Any, policy: Policy, counters: dict[str, int], keep: int
) -> None:
    import torch

    root.mkdir(exist_ok=True)
    name = f"step-{next_step:07d}"
    tmp = root / f"{name}.tmp{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    torch.save(model.state_dict(), tmp / "model.pt")
    torch.save(learner.state_dict(), tmp / "learner.pt")
    torch.save({"torch": torch.get_rng_state()}, tmp / "rng.pt")
    policy.save(tmp / "policy.npz")
    state = {
        "next_step": next_step,
        "counters": counters,
        "python_random": _py_rng_state(),
        "numpy_random": _np_rng_state(),
    }
    (tmp / "trainer.json").write_text(json.dumps(state))
    final = root / name
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    atomic_write_bytes(root / "latest", name.encode())
    _prune(root, keep)


def load_checkpoint(d: Path, model: Any, learner: Any, policy: Policy, device: Any) -> tuple[int, dict[str, int]]:
    """Restore everything a checkpoint holds; returns (next step, counters)."""
    import torch

    state = json.loads((d / "trainer.json").read_text())
    model.load_state_dict(_load_tensors(d / "model.pt", device))
    learner.load_state_dict(_load_tensors(d / "learner.pt", device))
    policy.load(d / "policy.npz")
    torch.set_rng_state(_load_tensors(d / "rng.pt", "cpu")["torch"])
    name, keys, pos, has_gauss, gauss = state["numpy_random"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, pgauss = state["python_random"]
    random.setstate((version, tuple(internal), pgauss))
    return int(state["next_step"]), state["counters"]


def _load_tensors(path: Path, device: Any) -> Any:
    import pickle

    import torch

    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused: it holds objects other than tensors and plain data (a pickled object would run "
            f"code on load); only load checkpoints you made ({str(e).splitlines()[0]})"
        ) from None


def _prune(root: Path, keep: int) -> None:
    done = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and ".tmp" not in p.name)
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob("*.tmp*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)


def _py_rng_state() -> list[Any]:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _np_rng_state() -> list[Any]:
    state: Any = np.random.get_state(legacy=True)
    name, keys, pos, has_gauss, gauss = state
    return [name, keys.tolist(), int(pos), int(has_gauss), float(gauss)]
