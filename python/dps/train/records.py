"""The run folder's records: atomic files, the metrics and eval logs, the summary, replay.toml.

Every file is rewritten whole through a temporary file and a rename, so a run killed at any
moment leaves either the old or the new file, never a torn one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dps.logs import RolloutLogWriter


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_bytes(path, "".join(json.dumps(json_safe(r)) + "\n" for r in rows).encode())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a torn last line (cannot happen with atomic writes, but be safe)
    return out


def json_safe(d: dict[str, Any]) -> dict[str, Any]:
    """numpy scalars as Python numbers, non-finite floats as null."""
    out = {}
    for k, v in d.items():
        if isinstance(v, (np.floating, float)):
            v = float(v)
            out[k] = v if np.isfinite(v) else None
        elif isinstance(v, (np.integer,)):
            out[k] = int(v)
        else:
            out[k] = v
    return out


def mean_of(rows: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(vals)) if vals else None


@dataclass
class Group:
    """One prompt's rolled-out responses, their correctness and rewards."""

    prompt_id: int
    responses: list[list[int]]
    correct: np.ndarray
    rewards: np.ndarray


def add_groups(log: RolloutLogWriter, step: int, groups: list[Group]) -> None:
    log.add(
        step,
        [g.prompt_id for g in groups],
        np.array([int(g.correct.sum()) for g in groups], np.int64),
        np.array([len(g.correct) for g in groups], np.int64),
        [list(g.rewards) for g in groups],
    )


class RunRecords:
    """The logs of a run folder: rollouts.parquet, dense.parquet, metrics.jsonl, eval.jsonl.

    `open(start)` reads what a resumed run already wrote, cut back to step `start`, so a run
    killed at any moment and resumed holds every step exactly once.
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self.rollouts = RolloutLogWriter(out / "rollouts.parquet")
        self.dense = RolloutLogWriter(out / "dense.parquet")
        self.metrics: list[dict[str, Any]] = []
        self.evals: list[dict[str, Any]] = []

    def open(self, start: int) -> None:
        self.rollouts.load(start)
        self.dense.load(start + 1 if start else 0)  # a fresh run sweeps step 0 itself
        self.metrics = [m for m in read_jsonl(self.out / "metrics.jsonl") if m.get("step", -1) < start]
        self.evals = [m for m in read_jsonl(self.out / "eval.jsonl") if m.get("step", -1) <= start]

    def add_sweep(self, step: int, groups: list[Group]) -> None:
        add_groups(self.dense, step, groups)
        self.dense.write()

    def add_step(self, step: int, row: dict[str, Any], groups: list[Group]) -> None:
        self.metrics.append(json_safe(row))
        add_groups(self.rollouts, step, groups)

    def write(self) -> None:
        self.rollouts.write()
        write_jsonl(self.out / "metrics.jsonl", self.metrics)
        self.write_evals()

    def write_evals(self) -> None:
        write_jsonl(self.out / "eval.jsonl", self.evals)

    def summary(self, policy: str, seed: int) -> dict[str, Any]:
        metrics, evals = self.metrics, self.evals

        def mean(key: str) -> float | None:
            return mean_of(metrics, key)

        return {
            "policy": policy,
            "seed": seed,
            "steps": len(metrics),
            "rollouts_total": int(sum(m["rollouts"] for m in metrics)),
            "effective_ratio": mean("effective_ratio"),
            "rollouts_per_trained_group": mean("rollouts_per_trained_group"),
            "reward_first10": mean_of(metrics[:10], "reward_mean"),
            "reward_last10": mean_of(metrics[-10:], "reward_mean"),
            "test_accuracy_start": evals[0]["test_accuracy"] if evals else None,
            "test_accuracy_end": evals[-1]["test_accuracy"] if evals else None,
            "time_generate": mean("time_generate"),
            "time_update": mean("time_update"),
            "time_select": mean("time_select"),
            "time_sync": mean("time_sync"),
            "gen_tokens_per_s": mean("gen_tokens_per_s"),
        }


def replay_scenario(
    run_name: str, log: str, num_prompts: int, batch_size: int, steps: int, ds_max_rounds: int, dps_decay: float
) -> str:
    """``replay.toml``: a scenario that replays US, DS and DPS against a run's log."""
    return (
        f'name = "train-{run_name}"\n'
        f'description = "Replay against the rollout log of the dps train run in this folder"\n\n'
        f'[world]\nlog = "{log}"\n'
        # the log's ids are dataset indices: keep them, and the prompts it never rolled out
        f'prompt_ids = "index"\nnum_prompts = {num_prompts}\n\n'
        f"[run]\nbatch_size = {batch_size}\nsteps = {max(steps, 1)}\nseeds = [0, 1, 2]\n\n"
        '[[policies]]\nname = "US"\ntype = "uniform"\n\n'
        '[[policies]]\nname = "DS"\ntype = "dynamic_sampling"\n'
        f"max_rounds = {ds_max_rounds}\n\n"
        f'[[policies]]\nname = "DPS"\ntype = "dps"\ndecay = {dps_decay}\n'
    )
