"""A policy of the user's own: the contract docs/policies.md states, checked where the policy meets
dps (`make_policy`, `run_step`), each break one clear error."""

from __future__ import annotations

import re

import numpy as np
import pytest

from dps import Policy, run_step
from dps.policies.registry import make_policy

N, B, K = 30, 6, 4


def rollout(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.full(len(ids), 2, np.int64), np.full(len(ids), K, np.int64)


class Returns(Policy):
    """Selects whatever `make_ids(batch_size)` gives, and records what it observed."""

    def __init__(self, make_ids, num_prompts: int = N):
        self.num_prompts = num_prompts
        self.make_ids = make_ids
        self.observed = 0
        self.abandoned = 0

    def select(self, batch_size: int) -> np.ndarray:
        return self.make_ids(batch_size)

    def observe(self, prompt_ids, n_correct, n_rollouts) -> None:
        self.observed += 1

    def abandon(self) -> None:
        self.abandoned += 1

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


@pytest.mark.parametrize(
    "make_ids, words",
    [
        (lambda b: np.zeros(b, np.int64), "repeats id 0"),
        (lambda b: np.arange(b) + N - 2, f"id {N}, outside [0, {N})"),
        (lambda b: np.arange(b) - 1, f"id -1, outside [0, {N})"),
        (lambda b: np.arange(b + 1), f"{B + 1} ids, more than the {B} asked for"),
        (lambda b: np.arange(b, dtype=np.float64), "ids of dtype float64"),
        (lambda b: np.arange(b).reshape(2, -1), "an array of shape (2, 3)"),
        (lambda b: [str(i) for i in range(b)], "ids of dtype <U1"),
        (lambda b: None, "returned None"),
    ],
    ids=["duplicates", "too large", "negative", "too many", "floats", "2-d", "strings", "None"],
)
def test_run_step_refuses_a_selection_that_breaks_the_contract(make_ids, words) -> None:
    policy = Returns(make_ids)
    with pytest.raises(ValueError) as info:
        run_step(policy, B, rollout)
    message = str(info.value)
    assert words in message and "Returns.select" in message, message
    assert "docs/policies.md#your-own-policy" in message
    assert policy.observed == 0 and policy.abandoned == 1  # nothing observed; the step was undone


def test_all_zero_ids_no_longer_report_an_effective_ratio_of_one() -> None:
    """The issue's reproduction: [0, 0, ..., 0] gave an effective ratio of 1.0."""
    with pytest.raises(ValueError, match="repeats id 0"):
        run_step(Returns(lambda b: np.zeros(b, np.int64)), B, rollout)


def test_an_id_repeated_in_a_later_round_of_the_step_is_refused() -> None:
    class Gate(Returns):
        max_rounds = 2

        def admit(self, prompt_ids, n_correct, n_rollouts):
            return np.zeros(len(prompt_ids), bool)  # reject all: a second round follows

    with pytest.raises(ValueError, match="id 0, already handed out in an earlier round"):
        run_step(Gate(lambda b: np.arange(b)), B, rollout)


@pytest.mark.parametrize(
    "ids", [np.arange(B, dtype=np.int32), np.arange(B, dtype=np.uint64), list(range(B)), np.arange(B - 2)]
)
def test_integer_ids_of_any_width_and_fewer_than_asked_are_fine(ids) -> None:
    result = run_step(Returns(lambda b: ids), B, rollout)
    assert result.prompt_ids.dtype == np.int64 and len(result.prompt_ids) == len(ids)


class NoSize(Policy):
    def __init__(self, num_prompts: int, seed: int = 0):
        self.n = num_prompts  # but not self.num_prompts

    def select(self, batch_size):
        return np.arange(batch_size)

    def observe(self, prompt_ids, n_correct, n_rollouts):
        pass

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def test_a_policy_without_num_prompts_is_told_what_to_set() -> None:
    with pytest.raises(ValueError, match=r"NoSize has no num_prompts.*self\.num_prompts = "):
        run_step(NoSize(N), B, rollout)


@pytest.mark.parametrize("size", [0, -3, 2.5, "30", True])
def test_a_bad_num_prompts_is_named(size) -> None:
    policy = Returns(lambda b: np.arange(b), num_prompts=size)
    with pytest.raises(ValueError, match="num_prompts"):
        run_step(policy, B, rollout)


class NoState(Policy):
    def __init__(self, num_prompts: int, seed: int = 0):
        self.num_prompts = num_prompts

    def select(self, batch_size):
        return np.arange(batch_size)

    def observe(self, prompt_ids, n_correct, n_rollouts):
        pass


class NoSeed(Returns):
    def __init__(self, num_prompts: int):
        super().__init__(lambda b: np.arange(b), num_prompts)


def test_make_policy_names_the_methods_a_policy_class_lacks() -> None:
    with pytest.raises(ValueError) as info:
        make_policy(f"{__name__}:NoState", N)
    message = str(info.value)
    assert "does not implement load_state_dict, state_dict" in message and "bad options" not in message
    assert "docs/policies.md#your-own-policy" in message


def test_make_policy_says_how_a_policy_class_is_constructed() -> None:
    with pytest.raises(ValueError) as info:
        make_policy(f"{__name__}:NoSeed", N, seed=3)
    message = str(info.value)
    assert "NoSeed(num_prompts=30, seed=3)" in message and "'seed'" in message, message
    assert "bad options []" not in message


def test_the_docs_list_what_a_policy_must_provide() -> None:
    from paths import ROOT

    text = (ROOT / "docs" / "policies.md").read_text()
    part = text.split("What a policy must provide", 1)[1].split("It replays like a built-in", 1)[0]
    for name in ("num_prompts", "select", "observe", "state_dict", "load_state_dict", "abandon", "admit"):
        assert re.search(rf"`{name}[`(]", part), name


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, "8", True])
def test_run_step_refuses_a_batch_size_that_is_not_a_count(batch_size) -> None:
    policy = Returns(lambda b: np.arange(b))
    with pytest.raises(ValueError, match=f"run_step: batch_size must be an integer >= 1, not {batch_size!r}"):
        run_step(policy, batch_size, rollout)
    assert policy.observed == 0  # a step of nothing did not advance the policy


@pytest.mark.parametrize(
    "name, options, words",
    [
        ("dps", {"decay": 0.5, "decya": 0.5}, "policy 'dps': unknown option 'decya' (its options: decay, prior_alpha"),
        ("mopps", {"treshold": 0.5}, "; perhaps threshold"),
        ("uniform", {"decay": 0.5}, "policy 'uniform': unknown option 'decay' (it takes no options)"),
    ],
)
def test_a_misspelt_option_is_named_with_the_policys_own(name, options, words) -> None:
    """`--set policy.options.decya=0.5` said "bad options ['decay', 'decya']", naming the good one too."""
    with pytest.raises(ValueError) as info:
        make_policy(name, N, **options)
    message = str(info.value)
    assert words in message and "bad options" not in message, message


def test_a_bad_option_value_names_the_policy() -> None:
    """`dps train --set policy.options.decay=2` said only "decay must be in (0, 1], got 2"."""
    with pytest.raises(ValueError, match=r"^policy 'mopps': decay must be in \(0, 1\], got 2"):
        make_policy("mopps", N, decay=2.0)
