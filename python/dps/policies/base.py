"""The one interface every selection policy implements, and the step loop that drives it.

A step, in replay and in training alike (see `run_step`):

1. ``ids = policy.select(batch_size)`` picks prompts before any rollout;
2. the caller rolls out k responses per prompt and scores them: counts of correct responses
   or graded rewards, one `GroupOutcomes` (dps.outcomes);
3. ``keep = policy.admit_groups(groups)`` may reject groups after rollout (a dynamic-sampling
   gate); ``policy.round_size`` then says how many more prompts to ``select`` (by default
   ``batch_size`` again while fewer than ``batch_size`` groups are admitted and
   ``policy.max_rounds`` allows; 0 ends the step);
4. ``policy.observe_groups(groups)`` reports every rolled-out group of the step, rejected ones
   too, and advances the policy by one step.

Within one step, repeated ``select`` calls return ids not handed out earlier in that step.

Where a policy meets someone else's loop:

* counts are integers: ``n_correct`` is the number of correct responses, never a mean reward;
  `observe` and `run_step` both refuse float arrays (TypeError), they never round;
* a step that fails between `select` and `observe` (the rollout raised) is undone with
  ``policy.abandon()``: the built-ins return exactly to their state before the step's first
  `select`, so the next step selects what it would have selected. `run_step` calls it for you
  when the rollout (or `admit`) raises, then re-raises;
* `observe` accepts groups that were never selected: replaying a log into a fresh policy, or
  warm-starting one from an earlier run, is `observe` step after step, and reaches the same
  state as the live run that selected those prompts. Ids handed out but not observed are
  released by `observe`.

Selections in flight (a trainer that generates ahead): ``observe_groups(groups,
in_flight=True)`` takes groups of any earlier selection, in any order; each id must be in flight
(selected, not yet observed or handed back), and the ids not observed stay in flight, never
selected again until observed. ``warm_start(groups)`` takes groups that were never selected,
leaving what is in flight; ``abandon(ids)`` hands ids in flight back unobserved.
`roll_out_step` is a step without its `observe`; `LaggedSteps` runs steps whose groups are
observed a fixed number of steps later.
"""

from __future__ import annotations

import abc
import json
import zipfile
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dps.outcomes import GroupOutcomes, effective_ratio, int_array

#: A rollout: the ids to roll out -> their (n_correct, n_rollouts), or their `GroupOutcomes`.
RolloutFn = Callable[[np.ndarray], "tuple[np.ndarray, np.ndarray] | GroupOutcomes"]
NO_IDS = np.zeros(0, np.int64)


class Policy(abc.ABC):
    """Chooses which prompts to roll out. Subclass it for a custom policy."""

    num_prompts: int
    #: How many select/rollout rounds one step may take when `admit` rejects groups.
    max_rounds: int = 1

    @abc.abstractmethod
    def select(self, batch_size: int) -> np.ndarray:
        """Return `batch_size` distinct int64 prompt ids in [0, num_prompts)."""

    @abc.abstractmethod
    def observe(self, prompt_ids: np.ndarray, n_correct: np.ndarray, n_rollouts: np.ndarray) -> None:
        """Take the step's scored groups (one entry per group) and advance one step."""

    def observe_groups(self, groups: GroupOutcomes, *, in_flight: bool = False) -> None:
        """Take scored groups (counts or graded rewards) and advance one step: what the step
        loop, replay and the trainers call.

        Lockstep (the default): the step's groups, selected or not; every id handed out is
        released. `in_flight=True`: groups of earlier selections, in any order; each id must be
        in flight, and the others stay in flight.

        The default serves a policy of counts in lockstep: it calls `observe` with the counts.
        A policy of your own overrides this to take graded rewards or selections in flight."""
        name = type(self).__name__
        if in_flight:
            raise NotImplementedError(
                f"{name} does not take selections in flight: override observe_groups(groups, in_flight=True) "
                "(docs/policies.md#in-flight)"
            )
        if groups.n_correct is None:
            raise TypeError(
                f"{name}.observe takes counts, and these groups carry only rewards: override "
                "observe_groups(groups) to take them (docs/policies.md#graded-rewards)"
            )
        self.observe(groups.prompt_ids, groups.n_correct, groups.n_rollouts)

    def warm_start(self, groups: GroupOutcomes) -> None:
        """Take groups this policy never selected (a log, an earlier run) as one step; ids in
        flight stay in flight. The default is a lockstep `observe_groups`."""
        self.observe_groups(groups)

    def admit(self, prompt_ids: np.ndarray, n_correct: np.ndarray, n_rollouts: np.ndarray) -> np.ndarray:
        """Boolean mask of the groups to train on. The default admits every group."""
        return np.ones(len(prompt_ids), dtype=bool)

    def admit_groups(self, groups: GroupOutcomes) -> np.ndarray:
        """Boolean mask of `groups` to train on: what the step loop calls. The default asks
        `admit` with the counts (every group, where `admit` is not overridden)."""
        if type(self).admit is Policy.admit:
            return np.ones(len(groups), dtype=bool)
        if groups.n_correct is None:
            raise TypeError(
                f"{type(self).__name__}.admit takes counts, and these groups carry only rewards: override "
                "admit_groups(groups) to take them (docs/policies.md#graded-rewards)"
            )
        return self.admit(groups.prompt_ids, groups.n_correct, groups.n_rollouts)

    def in_flight(self) -> np.ndarray:
        """The ids handed out and not yet observed (empty for a policy that does not track them)."""
        return NO_IDS

    def round_size(self, batch_size: int, rounds: Sequence[tuple[int, int]]) -> int:
        """How many prompts the step's next round rolls out; 0 ends the step.

        `rounds` holds (groups rolled out, groups admitted) for each round of the step so far
        (empty before the first). The default: `batch_size` per round while fewer than
        `batch_size` groups are admitted and fewer than `max_rounds` rounds have run. The step
        loop never asks for more prompts than the step has left."""
        admitted = sum(kept for _, kept in rounds)
        if rounds and (admitted >= batch_size or len(rounds) >= max(1, self.max_rounds)):
            return 0
        return batch_size

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: numpy arrays and plain scalars."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()`; raise ValueError and change nothing if it does not fit."""

    def abandon(self, prompt_ids: Any = None) -> np.ndarray:
        """Hand ids back unobserved, and return them.

        Without ids: undo the `select` calls since the last `observe` (a step whose rollout
        failed); the built-ins go back exactly to their state before the step. With ids: hand
        back those ids in flight (their rollouts were dropped); they may be selected again.
        A policy of your own overrides this when `select` changes its state (e.g. marks ids as
        handed out)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement abandon()")

    def metrics(self) -> dict[str, float]:
        """Scalars describing the last step (empty by default)."""
        return {}

    def save(self, path: str | Path) -> None:
        save_state(path, type(self).__name__, self.state_dict())

    def load(self, path: str | Path) -> None:
        self.load_state_dict(load_state(path, type(self).__name__))


def save_state(path: str | Path, kind: str, state: dict[str, Any]) -> None:
    """Write a state dict as an .npz: arrays stored as such, scalars in a JSON header. Written to a
    temporary file beside `path` and moved into place, so a failed save leaves nothing behind."""
    arrays, scalars = _split_state(state)
    header = json.dumps({"kind": kind, "format": 1, "scalars": scalars})
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder; give the state a file name, e.g. {path / 'policy.npz'}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path}: no such folder {path.parent} (create it first)")
    tmp = path.with_name(path.name + ".tmp")
    payload: dict[str, Any] = {"__header__": np.frombuffer(header.encode(), dtype=np.uint8), **arrays}
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **payload)  # no object arrays (_split_state), so nothing is pickled
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _split_state(state: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A state's arrays and its JSON scalars (numpy scalars as Python's); anything else is named."""
    arrays: dict[str, np.ndarray] = {}
    scalars: dict[str, Any] = {}
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            what = "an array of Python objects" if value.dtype.hasobject else None
            arrays[key] = value
        else:
            value = value.item() if isinstance(value, np.generic) else value
            try:
                json.dumps(value)
                what, scalars[key] = None, value
            except (TypeError, ValueError):
                what = f"a {type(value).__name__}"
        if what is not None:
            raise ValueError(
                f"state[{key!r}] is {what}: a state_dict holds numpy arrays and plain scalars "
                "(numbers, strings, lists and dicts of them), so that it saves without pickle"
            )
    return arrays, scalars


def load_state(path: str | Path, kind: str) -> dict[str, Any]:
    """Read what `save_state` wrote, checking it holds a state of `kind`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such policy state file")

    def not_a_state(why: str) -> ValueError:
        return ValueError(f"{path}: not a saved policy state ({why}); Policy.save writes one, an .npz with a header")

    if not path.is_file() or not zipfile.is_zipfile(path):
        raise not_a_state("a folder" if path.is_dir() else "not an .npz archive")
    try:
        with np.load(path, allow_pickle=False) as data:
            header_bytes = bytes(data["__header__"]) if "__header__" in data.files else None
            arrays = {k: data[k] for k in data.files if k != "__header__"}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise not_a_state("an array in it holds Python objects" if "allow_pickle" in str(e) else str(e)) from e
    if header_bytes is None:
        raise not_a_state(f"an .npz without its header, holding {', '.join(arrays) or 'nothing'}")
    try:
        header = json.loads(header_bytes.decode())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise not_a_state(f"its header is not JSON: {e}") from e
    if not isinstance(header, dict) or header.get("format") != 1 or not isinstance(header.get("scalars"), dict):
        raise ValueError(f"{path}: unknown policy state format")
    if header.get("kind") != kind:
        raise ValueError(f"{path}: holds a {header.get('kind')!r} state, not a {kind!r} state")
    return {**header["scalars"], **arrays}


@dataclass
class StepResult:
    """What one step rolled out and what it trained on."""

    groups: GroupOutcomes  # every group rolled out this step, in order
    admitted: np.ndarray  # bool mask over the groups
    trained: np.ndarray  # indices into the groups of the trained batch (<= batch_size)
    rounds: int
    shortfall: int  # batch_size minus the number of trained groups

    @property
    def prompt_ids(self) -> np.ndarray:
        return self.groups.prompt_ids

    @property
    def n_rollouts(self) -> np.ndarray:
        return self.groups.n_rollouts

    @property
    def n_correct(self) -> np.ndarray:
        """The counts of correct responses (groups rolled out as rewards alone have none)."""
        if self.groups.n_correct is None:
            raise ValueError("this step's groups carry rewards, not counts: read result.groups")
        return self.groups.n_correct

    @property
    def rollouts(self) -> int:
        return int(self.n_rollouts.sum())

    @property
    def effective_ratio(self) -> float:
        """Share of the trained groups that were effective (partially solved, or a graded
        group whose rewards differ)."""
        return effective_ratio(int(self.groups.effective[self.trained].sum()), len(self.trained))


def rolled_out(ids: np.ndarray, returned: object) -> GroupOutcomes:
    """What a rollout returned for `ids`: their `GroupOutcomes` (for these ids, in order), or
    (n_correct, n_rollouts) counts."""
    if isinstance(returned, GroupOutcomes):
        if not np.array_equal(returned.prompt_ids, ids):
            raise ValueError("the rollout returned groups for other prompts than it was given, or in another order")
        return returned
    if not isinstance(returned, tuple) or len(returned) != 2:
        raise TypeError(
            f"the rollout returned {type(returned).__name__}; it must return (n_correct, n_rollouts) or GroupOutcomes"
        )
    n_correct, n_rollouts = returned
    return GroupOutcomes.counts(
        ids, count_array("n_correct", n_correct, len(ids)), count_array("n_rollouts", n_rollouts, len(ids))
    )


def count_array(name: str, values: object, n_groups: int) -> np.ndarray:
    """A rollout's counts as int64, refusing floats (a mean reward is not a count)."""
    array = np.asarray(values)
    if array.dtype.kind not in "iu" and not (array.size == 0 and array.dtype.kind == "f"):
        raise TypeError(
            f"the rollout returned {name} of dtype {array.dtype}; it must hold integer counts "
            f"(the number of correct responses and of responses per prompt, not a mean reward)"
        )
    if array.shape != (n_groups,):
        raise ValueError(f"the rollout returned {name} of shape {array.shape} for {n_groups} prompts")
    return array.astype(np.int64)


def abandon_step(policy: Policy, error: BaseException) -> None:
    """Undo a failed step's selection; say so on the error when the policy cannot."""
    try:
        policy.abandon()
    except NotImplementedError:
        error.add_note(
            f"{policy_name(policy)} does not implement abandon(): the ids it handed out in this "
            "step stay pending until its next observe()"
        )


#: Where the contract a policy of one's own must keep is written.
CONTRACT = "what a policy must provide: docs/policies.md#your-own-policy"


def policy_name(policy: Policy) -> str:
    """The class a message names: a wrapper that sets `__wrapped__` (replay's timing wrapper)
    names the policy the user wrote, not itself."""
    while isinstance(getattr(policy, "__wrapped__", None), Policy):
        policy = policy.__wrapped__  # type: ignore[attr-defined]
    return type(policy).__name__


def policy_size(policy: Policy) -> int:
    """The policy's `num_prompts`, checked to be a count >= 1."""
    name = policy_name(policy)
    size = getattr(policy, "num_prompts", None)
    if size is None:
        raise ValueError(
            f"{name} has no num_prompts: set self.num_prompts = <the number of prompts> in its __init__ ({CONTRACT})"
        )
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"{name}.num_prompts is {size!r}, not a count of prompts >= 1 ({CONTRACT})")
    return int(size)


def checked_selection(policy: Policy, returned: object, asked: int, earlier: Sequence[np.ndarray]) -> np.ndarray:
    """What `policy.select(asked)` returned, as int64 ids, checked against the contract: a 1-d
    array of at most `asked` distinct integer ids in [0, num_prompts), none handed out in an
    `earlier` round of the step. A break is a ValueError naming it."""
    where = f"{policy_name(policy)}.select({asked})"

    def refuse(what: str) -> ValueError:
        return ValueError(
            f"{where} {what}; select must return at most {asked} distinct int64 ids in [0, num_prompts), none "
            f"handed out earlier in the step ({CONTRACT})"
        )

    if returned is None:
        raise refuse("returned None")
    ids = np.asarray(returned)
    if ids.ndim != 1:
        raise refuse(f"returned an array of shape {ids.shape}")
    if ids.dtype.kind not in "iu" and not (ids.size == 0 and ids.dtype.kind == "f"):
        raise refuse(f"returned ids of dtype {ids.dtype}")
    if len(ids) > asked:
        raise refuse(f"returned {len(ids)} ids, more than the {asked} asked for")
    if len(ids) == 0:
        return ids.astype(np.int64)
    size = policy_size(policy)
    outside = ids[ids >= size] if ids.dtype.kind == "u" else ids[(ids < 0) | (ids >= size)]
    if len(outside):
        raise refuse(f"returned id {int(outside[0])}, outside [0, {size})")
    ids = ids.astype(np.int64)
    unique, counts = np.unique(ids, return_counts=True)
    if len(unique) < len(ids):
        raise refuse(f"repeats id {int(unique[np.argmax(counts > 1)])}")
    if earlier:
        again = np.intersect1d(unique, np.concatenate(earlier), assume_unique=False)
        if len(again):
            raise refuse(f"returned id {int(again[0])}, already handed out in an earlier round of this step")
    return ids


def run_step(policy: Policy, batch_size: int, rollout: RolloutFn) -> StepResult:
    """One selection step: select, roll out, admit (in rounds), observe.

    Each `select`'s ids are checked (`checked_selection`): a policy that breaks the contract
    gets a ValueError naming what it returned. If that check, the rollout or `admit` raises, the
    step is abandoned (`policy.abandon()`) and the error propagates: the policy is as it was
    before the step."""
    check_batch_size("run_step", batch_size)
    result = roll_out_step(policy, batch_size, rollout)
    policy.observe_groups(result.groups)
    return result


def check_batch_size(where: str, batch_size: object) -> None:
    """Refuse a batch size that is not an integer >= 1, naming the caller."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"{where}: batch_size must be an integer >= 1, not {batch_size!r}")


def roll_out_step(policy: Policy, batch_size: int, rollout: RolloutFn) -> StepResult:
    """A step without its `observe`: select, roll out and admit, in rounds. The groups stay in
    flight until the caller observes them (`policy.observe_groups(result.groups, in_flight=True)`,
    at a later step) or hands them back (`policy.abandon(result.prompt_ids)`); `run_step`
    observes them at once. A failure abandons the step, as in `run_step`."""
    check_batch_size("roll_out_step", batch_size)
    policy_size(policy)
    try:
        groups, admitted, rounds = _rounds(policy, batch_size, rollout)
    except BaseException as error:
        abandon_step(policy, error)
        raise
    trained = np.flatnonzero(admitted)[:batch_size]
    return StepResult(groups, admitted, trained, rounds, batch_size - len(trained))


class LaggedSteps:
    """Steps whose groups a policy observes `lag` steps after it selected them: each `step`
    selects, rolls out and admits, then observes, in flight, the groups of the step `lag` steps
    before. The policy thus selects step t having observed the groups of steps up to
    t - 1 - lag: what a trainer that generates `lag` steps ahead gives it. Lag 0 is `run_step`.
    `due` holds the steps rolled out and not yet observed, oldest first."""

    def __init__(self, policy: Policy, lag: int):
        if isinstance(lag, bool) or not isinstance(lag, (int, np.integer)):
            raise TypeError(f"lag must be an int, got {type(lag).__name__}")
        if lag < 0:
            raise ValueError(f"lag must be >= 0 (steps between a selection and its observation), got {lag}")
        self.policy, self.lag = policy, int(lag)
        self.due: deque[GroupOutcomes] = deque()

    def step(self, batch_size: int, rollout: RolloutFn) -> StepResult:
        if self.lag == 0:
            return run_step(self.policy, batch_size, rollout)
        result = roll_out_step(self.policy, batch_size, rollout)
        self.due.append(result.groups)
        if len(self.due) > self.lag:
            self.policy.observe_groups(self.due.popleft(), in_flight=True)
        return result


def takes_in_flight(policy: Policy) -> bool:
    """Whether a policy (and the selector a gate wraps) takes groups in flight: it overrides
    `observe_groups`, whose default refuses them."""
    if type(policy).observe_groups is Policy.observe_groups:
        return False
    inner = getattr(policy, "selector", None)
    return takes_in_flight(inner) if isinstance(inner, Policy) else True


def check_lag(policy: Policy, lag: int) -> None:
    """Refuse a lag below 0, or above 0 for a policy that cannot have selections in flight."""
    if isinstance(lag, bool) or not isinstance(lag, (int, np.integer)):
        raise TypeError(f"lag must be an int, got {type(lag).__name__}")
    if lag < 0:
        raise ValueError(f"lag must be >= 0 (steps between a selection and its observation), got {lag}")
    if lag and not takes_in_flight(policy):
        raise ValueError(
            f"lag = {lag} needs a policy that takes selections in flight; {type(policy).__name__} does not "
            "(override observe_groups(groups, in_flight=True): docs/policies.md#in-flight)"
        )


def next_request(
    policy: Policy, batch_size: int, history: list[tuple[int, int]], handed_out: int, in_flight: int = 0
) -> int:
    """The policy's next round size, limited to what the dataset still has this step (less the
    `in_flight` prompts of earlier steps, which are not handed out again)."""
    request = policy.round_size(batch_size, history)
    if isinstance(request, bool) or not isinstance(request, (int, np.integer)) or request < 0:
        raise ValueError(f"{policy_name(policy)}.round_size returned {request!r}, not a count >= 0")
    # The first round of a plain step asks for exactly batch_size (select refuses more than
    # the dataset); a later or larger round, or one beside selections in flight, asks only for
    # what the step has left.
    if history or request > batch_size or in_flight:
        request = min(int(request), policy.num_prompts - in_flight - handed_out)
    return int(request)


def _rounds(policy: Policy, batch_size: int, rollout: RolloutFn) -> tuple[GroupOutcomes, np.ndarray, int]:
    flying = int_array("in_flight", policy.in_flight())
    parts: list[GroupOutcomes] = []
    admit_parts: list[np.ndarray] = []
    history: list[tuple[int, int]] = []
    handed_out = 0
    while True:
        request = next_request(policy, batch_size, history, handed_out, len(flying))
        if request <= 0:
            break
        ids = checked_selection(policy, policy.select(request), request, [p.prompt_ids for p in parts])
        if len(flying) and np.isin(ids, flying).any():
            again = int(ids[np.isin(ids, flying)][0])
            raise ValueError(
                f"{type(policy).__name__}.select({request}) returned id {again}, which is in flight (selected at an "
                f"earlier step and not observed yet); {CONTRACT}"
            )
        handed_out += len(ids)
        if len(ids) == 0:
            break
        groups = rolled_out(ids, rollout(ids))
        keep = np.asarray(policy.admit_groups(groups), dtype=bool)
        if keep.shape != ids.shape:
            raise ValueError(f"admit returned a mask of shape {keep.shape} for {len(ids)} groups")
        parts.append(groups)
        admit_parts.append(keep)
        history.append((len(ids), int(keep.sum())))
    if not parts:
        return GroupOutcomes.counts(NO_IDS, NO_IDS, NO_IDS), np.zeros(0, bool), 0
    return GroupOutcomes.concat(parts), np.concatenate(admit_parts), len(parts)
