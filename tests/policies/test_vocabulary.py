"""The domain's words written once: partially solved, the effective ratio, policies by name, the round cap."""

from __future__ import annotations

import re

import numpy as np
import pytest

from dps.outcomes import effective_ratio, group_states, partial_share, partially_solved
from dps.policies import DynamicSampling, run_step
from dps.policies.builtin import DEFAULT_MAX_ROUNDS, GRESO
from dps.policies.registry import capped_rounds, make_policy
from paths import ROOT


def test_partially_solved_is_some_but_not_all_correct() -> None:
    c, n = np.array([0, 1, 7, 8, 3, 4]), np.array([8, 8, 8, 8, 4, 4])
    assert partially_solved(c, n).tolist() == [False, True, True, False, True, False]
    assert group_states(c, n).tolist() == [0, 1, 1, 2, 1, 2]
    assert partial_share(c, n) == 0.5
    assert np.isnan(partial_share([], []))


def test_effective_ratio_is_the_partial_share_of_trained_groups() -> None:
    assert effective_ratio(3, 4) == 0.75
    assert effective_ratio(0, 0) == 0.0  # nothing trained

    policy = DynamicSampling(num_prompts=20, seed=0, max_rounds=1)
    outcomes = {i: (i % 3) * 4 for i in range(20)}  # 0, 4 or 8 correct of 8: a third partial
    res = run_step(policy, 6, lambda ids: (np.array([outcomes[i] for i in ids]), np.full(len(ids), 8)))
    trained = res.trained
    expected = partially_solved(res.n_correct[trained], res.n_rollouts[trained]).mean() if len(trained) else 0.0
    assert res.effective_ratio == expected


def test_the_predicate_is_written_once_in_the_package() -> None:
    pattern = re.compile(r"> 0\) & \(.* < ")
    found = [
        f"{f.relative_to(ROOT)}:{i}"
        for f in sorted((ROOT / "python" / "dps").rglob("*.py"))
        for i, line in enumerate(f.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert len(found) == 1 and found[0].startswith("python/dps/outcomes.py:"), found


def test_gate_round_cap_errors_name_max_rounds() -> None:
    with pytest.raises(ValueError, match="max_rounds") as bad:
        DynamicSampling(num_prompts=10, max_rounds=-1)
    assert "batch_size" not in str(bad.value)
    with pytest.raises(ValueError, match="max_rounds must be at least 1"):
        DynamicSampling(num_prompts=10, max_rounds=0)
    with pytest.raises(TypeError, match="max_rounds must be an int"):
        DynamicSampling(num_prompts=10, max_rounds=2.5)  # type: ignore[arg-type]


def test_one_default_for_the_round_cap() -> None:
    assert DynamicSampling(num_prompts=10).max_rounds == DEFAULT_MAX_ROUNDS
    assert GRESO(10, rounds="batch").config()["max_rounds"] == DEFAULT_MAX_ROUNDS
    assert make_policy("ds", 1000).max_rounds == DEFAULT_MAX_ROUNDS


def test_make_policy_caps_rounds_to_full_batches_when_given_the_batch() -> None:
    assert capped_rounds(100, 40) == 2 and capped_rounds(100, 200) == 1 and capped_rounds(1000, 8, 3) == 3
    assert make_policy("ds", 100, batch_size=40).max_rounds == 2
    assert make_policy("dps+ds", 100, batch_size=40, max_rounds=1).max_rounds == 1
    assert make_policy("greso", 100, batch_size=40, rounds="batch").config()["max_rounds"] == 2
    assert make_policy("greso", 100, batch_size=40).config()["max_rounds"] is None  # released rounds: no cap
    assert make_policy("dps", 100, batch_size=40).max_rounds == 1  # a selector takes one round
    with pytest.raises(ValueError, match="policy 'ds': bad options"):
        make_policy("ds", 100, batch_size=40, max_rounds=2.5)  # refused, not rounded
