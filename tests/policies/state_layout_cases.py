"""The built-ins' saved states as main wrote them before the policy state moved into the core's
records (tests/policies/state_layout/*.npz, written once by `make_state_layout.py` at 06e053c).

Each case builds a policy, runs a fixed sequence of steps against a seeded world and saves its
state at three points: fresh, after the steps, and mid-step (after a select). The test
(`test_state_layout.py`) runs the same sequence with the code of today and requires the same
keys, dtypes, shapes and values, and that each saved file loads and continues.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from dps import BOTS, DPS, GRESO, DynamicSampling, HistoryResampling, MoPPS, Policy, Uniform, run_step

N, B, K, STEPS = 40, 8, 4, 7
FOLDER = Path(__file__).parent / "state_layout"

CASES: dict[str, Callable[[], Policy]] = {
    "dps": lambda: DPS(N, seed=1),
    "dps-options": lambda: DPS(
        N, decay=0.5, prior_alpha="progress", prior_state=[0.2, 0.5, 0.3], entropy_weight=0.25, seed=2
    ),
    "dps-pool": lambda: DPS(N, candidate_ratio=2.0, seed=1),
    "uniform": lambda: Uniform(N, seed=1),
    "history": lambda: HistoryResampling(N, seed=1),
    "mopps": lambda: MoPPS(N, seed=1),
    "mopps-band-pool": lambda: MoPPS(N, decay=0.5, threshold=(0.3, 0.7), candidate_ratio=2.0, seed=3),
    "mopps-whole": lambda: MoPPS(N, candidate_ratio=None, seed=1),
    "greso": lambda: GRESO(N, seed=1),
    "greso-batch": lambda: GRESO(N, rounds="batch", adapt_from_epoch=0, max_rounds=3, seed=1),
    "bots": lambda: BOTS(N, seed=1),
    "bots-anchors-pool": lambda: BOTS(
        N,
        forgetting=0.2,
        implicit_weight=0.3,
        anchors=np.random.default_rng(1).uniform(size=(N, 2)),
        candidate_ratio=2.5,
        seed=1,
    ),
    "bots-mean": lambda: BOTS(N, thompson=False, anchors="population", pseudo_count=16, seed=1),
    "ds": lambda: DynamicSampling(num_prompts=N, seed=1),
    "ds-dps": lambda: DynamicSampling(DPS(N, seed=1), lo=0.1, hi=0.9, max_rounds=3),
}


def world(seed: int = 0) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    p = np.random.default_rng(seed).uniform(size=N)

    def rollout(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([seed, *ids.tolist()])
        return rng.binomial(K, p[ids]).astype(np.int64), np.full(len(ids), K, np.int64)

    return rollout


def moments(policy: Policy) -> Iterator[str]:
    """Drive `policy` through the fixed sequence, yielding at each saved moment."""
    yield "fresh"
    rollout = world()
    for _ in range(STEPS):
        run_step(policy, B, rollout)
    yield "end"
    policy.select(3)
    yield "mid"


def path(case: str, moment: str) -> Path:
    return FOLDER / f"{case}.{moment}.npz"
