"""Saved states keep their layout: every built-in's state_dict has the keys, dtypes, shapes and
values main wrote before the state moved into the core's records (state_layout_cases.py), and
each saved file loads and continues exactly. Fields added to the records since the files were
written (`ADDED_STATE_FIELDS`) hold, in today's state, the value an old state stands for."""

from __future__ import annotations

import json

import numpy as np
import pytest
from state_layout_cases import CASES, STEPS, moments, path, world

from dps import run_step
from dps.policies.base import load_state
from dps.policies.builtin import ADDED_STATE_FIELDS


def scalars_as_saved(state: dict) -> dict:
    """The non-array entries as a saved file holds them (a JSON header)."""
    return json.loads(json.dumps({k: v for k, v in state.items() if not isinstance(v, np.ndarray)}))


def without_added_fields(state: dict, where: str) -> dict:
    """Today's state less the fields added since the files were written, each checked to hold
    what a state saved before it stands for (a gate's inner keys are "selector.<field>")."""
    kept = {}
    for key, value in state.items():
        added = ADDED_STATE_FIELDS.get(key.rpartition(".")[2])
        if added is None:
            kept[key] = value
        else:
            assert np.array_equal(value, added) and value.dtype == added.dtype, f"{where}: {key}"
    return kept


def assert_same_layout(state: dict, saved: dict, where: str) -> None:
    state, saved = without_added_fields(state, where), without_added_fields(saved, where)
    assert state.keys() == saved.keys(), where
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            old = saved[key]
            assert isinstance(old, np.ndarray), f"{where}: {key}"
            assert (value.dtype, value.shape) == (old.dtype, old.shape), f"{where}: {key}"
            assert np.array_equal(value, old), f"{where}: {key}"
    assert scalars_as_saved(state) == {k: v for k, v in saved.items() if not isinstance(v, np.ndarray)}, where


@pytest.mark.parametrize("case", CASES)
def test_state_dicts_match_the_saved_layout(case: str) -> None:
    policy = CASES[case]()
    for moment in moments(policy):
        saved = load_state(path(case, moment), type(policy).__name__)
        assert_same_layout(policy.state_dict(), saved, f"{case} {moment}")


@pytest.mark.parametrize("case", CASES)
def test_saved_states_load_and_continue(case: str) -> None:
    live = CASES[case]()
    steps = iter(moments(live))
    next(steps), next(steps)  # the state after STEPS steps
    resumed = CASES[case]()
    resumed.load(path(case, "end"))
    rollout = world(1)
    for _ in range(STEPS):
        a, b = run_step(live, 8, rollout), run_step(resumed, 8, rollout)
        assert np.array_equal(a.prompt_ids, b.prompt_ids)
    assert_same_layout(resumed.state_dict(), scalars_as_saved(live.state_dict()) | arrays(live.state_dict()), case)


def arrays(state: dict) -> dict:
    return {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
