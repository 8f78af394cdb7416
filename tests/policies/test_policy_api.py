"""The policy API where it meets other people's loops: integer counts only, a failed step
undone, and observe of groups the policy never selected (log replay, warm starts)."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest

from dps import BOTS, DPS, GRESO, DynamicSampling, HistoryResampling, MoPPS, Policy, Uniform, run_step

N, B, K = 40, 8, 4


def builtins() -> list[Policy]:
    return [
        DPS(N, seed=1),
        DPS(N, seed=1, candidate_ratio=2.0),
        Uniform(N, seed=1),
        HistoryResampling(N, seed=1),
        MoPPS(N, seed=1),
        MoPPS(N, seed=1, candidate_ratio=2.0),
        GRESO(N, seed=1),
        GRESO(N, seed=1, rounds="batch"),
        BOTS(N, seed=1),
        BOTS(N, seed=1, candidate_ratio=2.0),
        DynamicSampling(DPS(N, seed=1)),
        DynamicSampling(num_prompts=N, seed=1),
    ]


def world(seed: int = 0):
    p = np.random.default_rng(seed).uniform(size=N)

    def rollout(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([seed, *ids.tolist()])
        return rng.binomial(K, p[ids]).astype(np.int64), np.full(len(ids), K, np.int64)

    return rollout


def states_equal(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if not np.array_equal(np.asarray(x), np.asarray(y)):
                return False
        elif x != y:
            return False
    return True


@pytest.mark.parametrize("policy", builtins(), ids=lambda p: type(p).__name__)
def test_run_step_refuses_float_counts_like_observe(policy: Policy) -> None:
    rollout = world()
    for _ in range(3):
        run_step(policy, B, rollout)
    before = policy.state_dict()

    def mean_reward(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.full(len(ids), 0.9), np.full(len(ids), K)

    with pytest.raises(TypeError, match="n_correct of dtype float64"):
        run_step(policy, B, mean_reward)
    assert states_equal(policy.state_dict(), before)
    with pytest.raises(TypeError, match="n_correct"):
        policy.observe(np.arange(B), np.full(B, 0.9), np.full(B, K))
    assert states_equal(policy.state_dict(), before)


@pytest.mark.parametrize(
    "make",
    [
        lambda: DPS(N, seed=1),
        lambda: Uniform(N, seed=1),
        lambda: HistoryResampling(N, seed=1),
        lambda: MoPPS(N, seed=1),
        lambda: GRESO(N, seed=1),
        lambda: DynamicSampling(DPS(N, seed=1)),
        lambda: DynamicSampling(num_prompts=N, seed=1),
        lambda: DPS(N, seed=1, candidate_ratio=2.0),
        lambda: MoPPS(N, seed=1, candidate_ratio=2.0),
        lambda: BOTS(N, seed=1),
        lambda: BOTS(N, seed=1, candidate_ratio=2.0),
        lambda: GRESO(N, seed=1, rounds="batch"),
    ],
    ids=[
        "DPS",
        "Uniform",
        "HR",
        "MoPPS",
        "GRESO",
        "DS(DPS)",
        "DS",
        "DPS-pool",
        "MoPPS-pool",
        "BOTS",
        "BOTS-pool",
        "GRESO-batch",
    ],
)
def test_failed_rollout_leaves_the_policy_as_it_was(make) -> None:
    rollout = world()
    failing, twin = make(), make()
    # Enough steps that the epoch-based policies cross an epoch boundary inside the failed step.
    for _ in range(4):
        run_step(failing, B, rollout)
        run_step(twin, B, rollout)
    before = failing.state_dict()
    calls = [0]

    def crash_in_second_round(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        calls[0] += 1
        if calls[0] == 2 or getattr(failing, "max_rounds", 1) == 1:
            raise RuntimeError("inference server went away")
        return np.zeros(len(ids), np.int64), np.full(len(ids), K, np.int64)  # all wrong: a gate wants more

    with pytest.raises(RuntimeError, match="went away"):
        run_step(failing, B, crash_in_second_round)
    assert states_equal(failing.state_dict(), before)
    # A full-size select works again (it failed while the ids stayed handed out), and the
    # policy goes on exactly like its twin that never saw the failure.
    for _ in range(3):
        assert np.array_equal(run_step(failing, B, rollout).prompt_ids, run_step(twin, B, rollout).prompt_ids)
    assert len(failing.select(N)) == N
    failing.abandon()
    assert states_equal(failing.state_dict(), twin.state_dict())


def test_abandon_without_a_step_changes_nothing() -> None:
    policy = DPS(N, seed=0)
    run_step(policy, B, world())
    before = policy.state_dict()
    policy.abandon()
    assert states_equal(policy.state_dict(), before)


class NoAbandon(Policy):
    def __init__(self) -> None:
        self.num_prompts = N

    def select(self, batch_size: int) -> np.ndarray:
        return np.arange(batch_size, dtype=np.int64)

    def observe(self, prompt_ids, n_correct, n_rollouts) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def test_a_policy_without_abandon_gets_a_note_on_the_error() -> None:
    def boom(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom") as info:
        run_step(NoAbandon(), B, boom)
    assert any("does not implement abandon()" in note for note in info.value.__notes__)


@pytest.mark.parametrize(
    "make",
    [lambda: DPS(N, seed=3), lambda: MoPPS(N, seed=3), lambda: BOTS(N, seed=3), lambda: HistoryResampling(N, seed=3)],
    ids=["DPS", "MoPPS", "BOTS", "HR"],
)
def test_observing_a_log_reaches_the_live_runs_state(make) -> None:
    """observe accepts groups it never selected: replaying a run's groups into a fresh policy
    gives the state the live policy reached by selecting them itself."""
    live, replayed = make(), make()
    rollout = world(5)
    log = [run_step(live, B, rollout) for _ in range(6)]
    for step in log:
        replayed.observe(step.prompt_ids, step.n_correct, step.n_rollouts)
    a, b = live.state_dict(), replayed.state_dict()
    if "order" in a:  # an epoch policy's dataloader position comes from select alone
        for key in ("order", "cursor", "epoch"):
            a.pop(key), b.pop(key)
    assert states_equal(a, b)
    if isinstance(live, DPS):
        assert np.array_equal(live.select(B), replayed.select(B))


def test_observe_releases_ids_handed_out_but_not_observed() -> None:
    policy = DPS(N, seed=0)
    policy.select(N // 2)
    policy.observe(np.array([0, 1]), np.array([1, 2]), np.array([K, K]))  # not the selected ids
    assert len(policy.select(N)) == N


def test_uniform_copies_its_epoch_order_only_before_a_select_that_may_start_an_epoch() -> None:
    """Within an epoch a step's undo point leaves the N-id order out (it is what makes a step cost
    O(N)); a select that may start the next epoch copies it first; both undo exactly."""
    policy, rollout = Uniform(N, seed=2), world()
    run_step(policy, B, rollout)  # cursor 8 of 40
    before = policy.state_dict()
    policy.select(B)
    policy.select(B)
    assert "order" not in policy._step_start
    policy.abandon()
    assert states_equal(policy.state_dict(), before)
    for _ in range(3):
        run_step(policy, B, rollout)  # cursor 32 of 40
    before = policy.state_dict()
    policy.select(B)  # to 40: this epoch's ids suffice
    assert "order" not in policy._step_start
    policy.select(3)  # the next epoch begins
    assert "order" in policy._step_start and policy.state_dict()["epoch"] == before["epoch"] + 1
    policy.abandon()
    assert states_equal(policy.state_dict(), before)


def save_npy(path, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # np.save(path) would add .npy to the name
        np.save(f, array, allow_pickle=True)


@pytest.mark.parametrize(
    "write",
    [
        lambda p: save_npy(p, np.array([{"a": 1}], dtype=object)),  # a pickled .npy
        lambda p: save_npy(p, np.arange(3)),  # a plain .npy array
        lambda p: p.write_bytes(pickle.dumps({"alpha": 1})),  # a pickle
        lambda p: p.write_text("decay = 0.7\n"),  # text
        lambda p: p.write_bytes(b""),  # empty
        lambda p: np.savez(p, alpha=np.arange(3)),  # an .npz without the header
        lambda p: p.mkdir(),  # a folder
    ],
    ids=["pickled npy", "npy", "pickle", "text", "empty", "npz without header", "folder"],
)
def test_loading_a_file_that_is_no_saved_state_says_so_and_never_suggests_pickle(tmp_path, write) -> None:
    path = tmp_path / "state.npz"
    write(path)
    policy = DPS(N, seed=1)
    before = policy.state_dict()
    with pytest.raises(ValueError) as info:
        policy.load(path)
    message = str(info.value)
    assert "not a saved policy state" in message and "Policy.save" in message, message
    assert "pickle" not in message.lower()
    assert states_equal(before, policy.state_dict())


def test_loading_a_missing_state_file_names_it(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no such policy state file"):
        DPS(N, seed=1).load(tmp_path / "nope.npz")


# ---------------------------------------------------------------- saving where it cannot go
def test_saving_to_a_folder_or_a_missing_folder_names_the_path_and_leaves_nothing(tmp_path) -> None:
    """`policy.save(folder)` said "Is a directory: 'folder.tmp' -> 'folder'" and left folder.tmp beside it."""
    policy = DPS(N, seed=1)
    with pytest.raises(IsADirectoryError, match=f"{tmp_path}: is a folder; give the state a file name"):
        policy.save(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such folder") as info:
        policy.save(tmp_path / "nodir" / "state.npz")
    assert ".tmp" not in str(info.value)
    assert sorted(tmp_path.parent.glob(f"{tmp_path.name}*")) == [tmp_path] and not any(tmp_path.iterdir())


class Unsaveable(Policy):
    def __init__(self, state: dict):
        self.num_prompts, self.state = N, state

    def select(self, batch_size: int) -> np.ndarray:
        return np.arange(batch_size)

    def observe(self, prompt_ids, n_correct, n_rollouts) -> None:
        pass

    def state_dict(self) -> dict:
        return self.state

    def load_state_dict(self, state: dict) -> None:
        self.state = state


@pytest.mark.parametrize(
    "state, words",
    [
        ({"seen": {1, 2}}, "state['seen'] is a set"),
        ({"ids": np.array([[1], "x"], dtype=object)}, "state['ids'] is an array of Python objects"),
        ({"rng": np.random.default_rng(0)}, "state['rng'] is a Generator"),
    ],
)
def test_a_state_that_cannot_be_saved_is_named_and_nothing_is_written(tmp_path, state, words) -> None:
    """A set in a state was json's "Object of type set is not JSON serializable"; an object array
    was pickled into the file, which `load` then refused."""
    path = tmp_path / "state.npz"
    with pytest.raises(ValueError, match=re.escape(words)) as info:
        Unsaveable(state).save(path)
    assert "numpy arrays and plain scalars" in str(info.value)
    assert not any(tmp_path.iterdir())
