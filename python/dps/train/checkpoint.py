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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dps.outcomes import GroupOutcomes
from dps.policies.base import Policy, load_state, save_state
from dps.train.records import atomic_write_bytes

#: The groups rolled out and not yet observed (a run with `policy.lag` > 0), oldest step first.
IN_FLIGHT_FILE = "in_flight.npz"
_GROUP_FIELDS = ("prompt_ids", "n_rollouts", "n_correct", "reward_mean", "reward_std")


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded safely (corrupt, or holding pickled code)."""


def latest_checkpoint(root: Path) -> Path | None:
    p = root / "latest"
    if not p.exists():
        return None
    d = root / p.read_text().strip()
    return d if (d / "trainer.json").exists() else None


def save_checkpoint(
    root: Path,
    next_step: int,
    model: Any,
    learner: Any,
    policy: Policy,
    counters: dict[str, int],
    keep: int,
    in_flight: Sequence[GroupOutcomes] = (),
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
    save_state(tmp / IN_FLIGHT_FILE, "GroupOutcomes", _steps_state(in_flight))
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


def load_in_flight(d: Path) -> list[GroupOutcomes]:
    """The groups a checkpoint holds rolled out and not yet observed (none for a lockstep run,
    or a checkpoint written before runs had a lag)."""
    if not (d / IN_FLIGHT_FILE).exists():
        return []
    state = load_state(d / IN_FLIGHT_FILE, "GroupOutcomes")
    steps = []
    for i in range(int(state["steps"])):
        fields: dict[str, Any] = {name: state.get(f"{i}.{name}") for name in _GROUP_FIELDS}
        rule = state[f"{i}.rule"]
        steps.append(GroupOutcomes(**fields, spread_tol=float(rule[0]), success_at=float(rule[1])))
    return steps


def _steps_state(steps: Sequence[GroupOutcomes]) -> dict[str, Any]:
    state: dict[str, Any] = {"steps": len(steps)}
    for i, groups in enumerate(steps):
        for name in _GROUP_FIELDS:
            if getattr(groups, name) is not None:
                state[f"{i}.{name}"] = getattr(groups, name)
        state[f"{i}.rule"] = np.array([groups.spread_tol, groups.success_at], np.float64)
    return state


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
