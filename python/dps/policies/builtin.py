"""The built-in policies: thin Python faces over the Rust core (`dps._core`).

This layer checks argument types and dtypes and converts to contiguous int64 arrays; the core
checks values (ranges, duplicates, counts) and refuses bad input without changing any state.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from dps._core import (
    BotsCore,
    DpsCore,
    GresoCore,
    HistoryCore,
    MoppsCore,
    RateDpsCore,
    Selector,
    UniformCore,
    admit_mask,
)
from dps.outcomes import GroupOutcomes, int_array
from dps.policies.base import NO_IDS, Policy

INT64_MAX = np.iinfo(np.int64).max

#: DPS's structured transition priors alpha0[to][from] (docs/method.md#dps-options), as the core defines them.
PRIORS: dict[str, list[list[float]]] = dict(DpsCore.PRIORS)


#: A 1-D contiguous int64 array, or TypeError / ValueError naming the argument.
as_int_array = int_array


def checked_groups(groups: Any) -> GroupOutcomes:
    if not isinstance(groups, GroupOutcomes):
        raise TypeError(
            f"groups must be a GroupOutcomes (GroupOutcomes.counts, .from_rewards, .from_moments), "
            f"got {type(groups).__name__}"
        )
    return groups


def check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(f"batch_size must be an int, got {type(batch_size).__name__}")
    if batch_size < 0:
        raise ValueError(f"batch_size must be non-negative, got {batch_size}")
    return int(batch_size)


def check_count(name: str, value: Any) -> int:
    """A non-negative int, or TypeError / ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be non-negative, got {value}")
    return int(value)


def check_num_prompts(num_prompts: Any) -> int:
    if isinstance(num_prompts, bool) or not isinstance(num_prompts, (int, np.integer)):
        raise TypeError(f"num_prompts must be an int, got {type(num_prompts).__name__}")
    if not 1 <= num_prompts < 2**32:
        raise ValueError(f"num_prompts must be in [1, 2^32), got {num_prompts}")
    return int(num_prompts)


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be in [0, 2^64), got {seed}")
    return int(seed)


def state_array(state: dict[str, Any], key: str, dtype: Any, shape: tuple[int | None, ...]) -> np.ndarray:
    """state[key] as a contiguous array of `dtype`, checked to have `shape` (None: any length)."""
    value = np.asarray(state[key])
    fits = value.ndim == len(shape) and all(d is None or d == s for d, s in zip(shape, value.shape, strict=False))
    if not fits:
        raise ValueError(f"state[{key!r}] has shape {value.shape}, expected {shape}")
    if value.size and not np.can_cast(value.dtype, dtype, casting="same_kind"):
        raise ValueError(f"state[{key!r}] has dtype {value.dtype}, expected {np.dtype(dtype)}")
    return np.ascontiguousarray(value, dtype=dtype)


def _scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.ndarray) and value.shape == () else value


def state_int(state: dict[str, Any], key: str) -> int:
    value = _scalar(state[key])
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"state[{key!r}] must be a non-negative int, got {value!r}")
    return int(value)


def state_number(state: dict[str, Any], key: str, optional: bool = False) -> float | None:
    """state[key] as a float (None where the field allows it); the core checks its range."""
    value = _scalar(state[key])
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        allowed = "a number, or None" if optional else "a number"
        raise ValueError(f"state[{key!r}] must be {allowed}, got {value!r}")
    return float(value)


#: A core's state fields (`Selector.state_fields()`): name, type, shape (None for a scalar).
StateFields = list[tuple[str, str, tuple[int | None, ...] | None]]


def core_state(state: dict[str, Any], fields: StateFields) -> dict[str, Any]:
    """The core's entries of a state dict, each as its field's type, dtype and shape (the fields
    are defined once, in the core); the core checks the values."""
    out: dict[str, Any] = {}
    for name, kind, shape in fields:
        if shape == (None,) and kind == "int64":
            out[name] = as_int_array(name, state[name])  # ids: pending, an epoch order
        elif shape is not None:
            out[name] = state_array(state, name, kind, shape)
        elif kind == "int":
            out[name] = state_int(state, name)
        elif kind in ("float", "float | None"):
            out[name] = state_number(state, name, optional=kind != "float")
        else:
            out[name] = state[name]  # the core checks the type
    return out


def prediction_scores(confusion: Any) -> dict[str, float]:
    """Accuracy, and precision / recall / F1 of state 1 (partial), from a 3x3 matrix
    `[observed][predicted]`; NaN where a ratio has nothing to count."""
    c = np.asarray(confusion, dtype=np.float64)
    tp, predicted, observed = float(c[1, 1]), float(c[:, 1].sum()), float(c[1, :].sum())
    precision = tp / predicted if predicted else math.nan
    recall = tp / observed if observed else math.nan
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else math.nan
    total = float(c.sum())
    return {
        "pred_accuracy": float(np.trace(c)) / total if total else math.nan,
        "pred_precision": precision,
        "pred_recall": recall,
        "pred_f1": f1,
    }


class RustPolicy(Policy):
    """What the Rust-backed policies share: select, observe, and checked state round trips.

    The options and the state are the core's (`Selector.config()`, `state()`, `state_fields()`),
    defined once there as records; this layer adds only options of its own."""

    _core: Selector[Any, Any]
    #: True where `select` changes nothing but the set of ids handed out (DPS, MoPPS): undoing a
    #: step then only clears that set; the epoch-based policies also move their epoch order,
    #: so their state at the step's first `select` is kept until the step ends.
    _select_only_marks_pending = False
    _step_open = False
    _step_start: dict[str, Any] | None = None

    @property
    def num_prompts(self) -> int:  # type: ignore[override]
        return int(self._core.num_prompts)

    @property
    def step(self) -> int:
        return int(self._core.step)

    def config(self) -> dict[str, Any]:
        """The options the policy was built with; a state only loads into the same options."""
        return dict(self._core.config())

    def select(self, batch_size: int) -> np.ndarray:
        batch_size = check_batch_size(batch_size)
        if not self._step_open:
            self._step_start = None if self._select_only_marks_pending else self._step_snapshot()
        self._before_select(batch_size)
        ids = self._core.select(batch_size)
        self._step_open = True
        return ids

    def _step_snapshot(self) -> dict[str, Any]:
        """What `abandon` returns to: the state before the step's first select."""
        return self.state_dict()

    def _before_select(self, batch_size: int) -> None:
        """Complete the step's snapshot if this select may change what it left out."""

    def observe(self, prompt_ids: Any, n_correct: Any, n_rollouts: Any) -> None:
        self._take(GroupOutcomes.counts(prompt_ids, n_correct, n_rollouts), "lockstep")

    def observe_groups(self, groups: GroupOutcomes, *, in_flight: bool = False) -> None:
        """A step's groups, counts or graded rewards (docs/policies.md#in-flight for the rules)."""
        self._take(checked_groups(groups), "in_flight" if in_flight else "lockstep")

    def warm_start(self, groups: GroupOutcomes) -> None:
        """Groups this policy never selected, as one step; what is in flight stays in flight."""
        self._take(checked_groups(groups), "warm_start")

    def _take(self, groups: GroupOutcomes, arrival: str) -> None:
        self._core.observe_groups(
            groups.prompt_ids,
            groups.n_rollouts,
            n_correct=groups.n_correct,
            reward_mean=groups.reward_mean,
            reward_std=groups.reward_std,
            spread_tol=groups.spread_tol,
            success_at=groups.success_at,
            arrival=arrival,
        )
        self._end_step()

    def in_flight(self) -> np.ndarray:
        """The ids handed out and not yet observed: this step's, then earlier steps' in flight."""
        return self._core.in_flight()

    def abandon(self, prompt_ids: Any = None) -> np.ndarray:
        """Without ids: go back to the state before this step's first `select` (exactly) and
        return the step's ids. With ids: hand those ids in flight back unobserved (they may be
        selected again; an epoch order does not move back) and return them."""
        if prompt_ids is not None:
            return self._hand_back(as_int_array("prompt_ids", prompt_ids))
        if not self._step_open:
            return NO_IDS
        handed = np.asarray(self.state_dict()["pending"], np.int64)
        if self._step_start is not None:
            state = self._step_start
        else:
            state = self.state_dict()
            state["pending"] = np.zeros(0, np.int64)
        self.load_state_dict(state)
        return handed

    def _hand_back(self, ids: np.ndarray) -> np.ndarray:
        back = self._core.hand_back(ids)
        if self._step_start is not None:  # what a later abandon() returns to leaves them out too
            start = self._step_start
            for key in ("pending", "in_flight"):
                start[key] = start[key][~np.isin(start[key], back)]
        return back

    def _end_step(self) -> None:
        self._step_open, self._step_start = False, None

    def state_dict(self) -> dict[str, Any]:
        return {"num_prompts": self.num_prompts, "config": self.config(), **self._core.state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        fields = self._core.state_fields()
        state = with_added_fields(state, fields)
        expected = {"num_prompts", "config", *(name for name, _, _ in fields)}
        missing = sorted(expected - state.keys())
        extra = sorted(state.keys() - expected)
        if missing or extra:
            raise ValueError(f"state does not fit {type(self).__name__}: missing {missing}, unexpected {extra}")
        if state["num_prompts"] != self.num_prompts:
            raise ValueError(f"state is for {state['num_prompts']} prompts, this policy has {self.num_prompts}")
        saved = with_added_options(state["config"], self.config())
        if _normalise(saved) != _normalise(self.config()):
            raise ValueError(options_mismatch(saved, self.config()))
        self._core.load_state(core_state(state, fields))
        self._end_step()
        if len(state["pending"]):
            self._step_open = True  # a state saved mid-step; abandon() then only clears the pending ids


#: State fields added after states were first saved, with the value a state saved before them
#: stands for: nothing in flight (selections in flight came with issue 23).
ADDED_STATE_FIELDS: dict[str, Any] = {"in_flight": np.zeros(0, np.int64)}


#: Options added after states were first saved, with the value a state saved before them stands
#: for: RateDPS's selection was always the best scores and its revisits went by age (the defaults
#: are now "thompson" and "stranding", so such a state loads only into a RateDPS built with the
#: old values, e.g. RateDPS(revisit_by="age") for a state saved with a selection).
ADDED_OPTIONS: dict[str, Any] = {"selection": "top", "revisit_by": "age"}


def with_added_options(saved: Any, config: dict[str, Any]) -> Any:
    """A saved config from before some of this policy's options existed, completed with their
    values then."""
    if not isinstance(saved, dict):
        return saved
    return {**{k: v for k, v in ADDED_OPTIONS.items() if k in config}, **saved}


def options_mismatch(saved: Any, config: dict[str, Any]) -> str:
    """Why a state saved with `saved` options does not load into a policy with `config`."""
    text = f"state was saved with options {saved}, this policy has {config}"
    if not isinstance(saved, dict):
        return text
    differ = [k for k in config if _normalise(saved.get(k)) != _normalise(config[k])]
    differ += [k for k in saved if k not in config]
    detail = ", ".join(f"{k}: {saved.get(k)!r} saved, {config.get(k)!r} here" for k in differ)
    return f"{text} (they differ in {detail}; build the policy with the saved options to load it)"


def with_added_fields(state: dict[str, Any], fields: StateFields) -> dict[str, Any]:
    """A state saved before some of the core's fields existed, completed with their values then."""
    names = {name for name, _, _ in fields}
    missing = {k: v for k, v in ADDED_STATE_FIELDS.items() if k in names and k not in state}
    return {**state, **missing} if missing else state


def _normalise(value: Any) -> Any:
    """Config values compared after a JSON round trip (tuples become lists)."""
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_normalise(v) for v in value]
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return value


def check_candidate_ratio(candidate_ratio: Any) -> float | None:
    """None (score the whole dataset) or a number; the core checks that it is finite and >= 1."""
    if candidate_ratio is None:
        return None
    if isinstance(candidate_ratio, bool) or not isinstance(candidate_ratio, (int, float, np.integer, np.floating)):
        raise TypeError(f"candidate_ratio must be a number or None, got {type(candidate_ratio).__name__}")
    return float(candidate_ratio)


class PooledPolicy(RustPolicy):
    """A scoring policy that can score only a candidate pool: floor(candidate_ratio x
    batch_size) prompts, the next slice of an epoch-wise shuffled order (the released sampler's
    loader); a pool never spans two epochs, so an epoch's rest too small for a pool is skipped.
    None (default) scores the whole dataset."""

    candidate_ratio: float | None = None

    @property
    def _select_only_marks_pending(self) -> bool:  # type: ignore[override]
        """Without a pool `select` only marks ids as handed out; a pool also moves the epoch order."""
        return self.candidate_ratio is None


def prior_matrix(prior_alpha: Any) -> list[list[float]]:
    if isinstance(prior_alpha, str):
        name = "ones" if prior_alpha == "uniform" else prior_alpha
        if name not in PRIORS:
            raise ValueError(
                f"unknown prior_alpha {prior_alpha!r}; choose a number, a 3x3 matrix or one of {sorted(PRIORS)}"
            )
        return PRIORS[name]
    if isinstance(prior_alpha, (int, float, np.integer, np.floating)) and not isinstance(prior_alpha, bool):
        return [[float(prior_alpha)] * 3 for _ in range(3)]
    matrix = np.asarray(prior_alpha, dtype=np.float64)
    if matrix.shape != (3, 3):
        raise ValueError(f"prior_alpha must be a number, a name or a 3x3 matrix, got shape {matrix.shape}")
    return matrix.tolist()


class DPS(PooledPolicy):
    """Dynamics-Predictive Sampling: a 3-state HMM per prompt; take the B prompts most likely
    to be partially solved at the next step.

    prior_alpha: alpha0, a number (every entry), 'ones', 'progress', 'stability', 'local', or a
    3x3 matrix `[to][from]`. prior_state: pi0 (default uniform). entropy_weight: the
    topk+entropy variant's w (0 = the paper's default). candidate_ratio: take the B best of a
    pool of floor(ratio x B) prompts drawn epoch-wise (see `PooledPolicy`); None = all prompts.
    """

    _core: DpsCore
    DEFAULT_DECAY = DpsCore.DEFAULT_DECAY

    def __init__(
        self,
        num_prompts: int,
        *,
        decay: float = DEFAULT_DECAY,
        prior_alpha: Any = 1.0,
        prior_state: Any = None,
        entropy_weight: float = 0.0,
        candidate_ratio: float | None = None,
        seed: int = 0,
    ) -> None:
        num_prompts = check_num_prompts(num_prompts)
        self.decay = float(decay)
        self.prior_alpha = prior_matrix(prior_alpha)
        pi0 = [1.0 / 3] * 3 if prior_state is None else np.asarray(prior_state, dtype=np.float64).tolist()
        if len(pi0) != 3:
            raise ValueError(f"prior_state must hold 3 probabilities, got {len(pi0)}")
        self.prior_state = pi0
        self.entropy_weight = float(entropy_weight)
        self.candidate_ratio = check_candidate_ratio(candidate_ratio)
        self.seed = check_seed(seed)
        self._core = DpsCore(
            num_prompts,
            {
                "decay": self.decay,
                "prior_alpha": self.prior_alpha,
                "prior_state": self.prior_state,
                "entropy_weight": self.entropy_weight,
                "candidate_ratio": self.candidate_ratio,
                "seed": self.seed,
            },
        )

    def predicted_state_probs(self, prompt_ids: Any = None) -> np.ndarray:
        """(n, 3) predicted distribution over (unsolved, partial, solved) for the next step."""
        ids = np.arange(self.num_prompts) if prompt_ids is None else as_int_array("prompt_ids", prompt_ids)
        return self._core.predicted(ids)

    def predicted_states(self, prompt_ids: Any, n_rollouts: Any = None) -> np.ndarray:
        """(n, 3) P(unsolved, partial, solved) of each prompt's next group: the HMM's prior
        (its states do not depend on the group size)."""
        return self.predicted_state_probs(prompt_ids)

    def bytes_per_prompt(self) -> float:
        return float(self._core.bytes_per_prompt())

    def metrics(self) -> dict[str, float]:
        """Prediction quality over the last step's observed groups: argmax(prior) against the
        observed state (see `prediction_scores`); confusion_{observed}{predicted} counts."""
        c = self._core.confusion().astype(np.float64)
        out = prediction_scores(c)
        out.update({f"confusion_{i}{j}": float(c[i, j]) for i in range(3) for j in range(3)})
        return out


class EpochPolicy(RustPolicy):
    """A policy built on a shuffled epoch order (its state holds `epoch`, `cursor`, `order`)."""


class Uniform(EpochPolicy):
    """US: the shuffled dataloader, a fresh seeded permutation each epoch."""

    _core: UniformCore

    # A step's snapshot leaves out the epoch order (N ids, the cost of a step at large N): within
    # an epoch only the cursor moves, so the order is copied only before a select that may start
    # the next epoch, and otherwise taken from the core when a step is abandoned.
    def _step_snapshot(self) -> dict[str, Any]:
        return {"num_prompts": self.num_prompts, "config": self.config(), **self._core.state(with_order=False)}

    def _before_select(self, batch_size: int) -> None:
        start = self._step_start
        if start is None or "order" in start:
            return
        now = self._core.state(with_order=False)
        handed_out = len(now["pending"]) + len(now["in_flight"])  # skipped where the order meets them
        if now["epoch"] == 0 or now["cursor"] + batch_size + handed_out > self.num_prompts:
            start["order"] = self._core.state()["order"]

    def abandon(self, prompt_ids: Any = None) -> np.ndarray:
        start = self._step_start
        if prompt_ids is None and self._step_open and start is not None and "order" not in start:
            start["order"] = self._core.state()["order"]  # no new epoch began since the snapshot
        return super().abandon(prompt_ids)

    def __init__(self, num_prompts: int, *, seed: int = 0) -> None:
        self.seed = check_seed(seed)
        self._core = UniformCore(check_num_prompts(num_prompts), {"seed": self.seed})


class HistoryResampling(EpochPolicy):
    """HR (SRPO): uniform epochs that leave out prompts whose last group was all correct."""

    _core: HistoryCore

    def __init__(self, num_prompts: int, *, seed: int = 0) -> None:
        self.seed = check_seed(seed)
        self._core = HistoryCore(check_num_prompts(num_prompts), {"seed": self.seed})

    def metrics(self) -> dict[str, float]:
        return {"excluded": float(self._core.excluded_count), "history_resets": float(self._core.resets)}


def group_sizes(prompt_ids: np.ndarray, n_rollouts: Any) -> np.ndarray:
    """One group size per prompt id (a single number applies to every prompt)."""
    if n_rollouts is None:
        raise TypeError("n_rollouts is needed: the prediction depends on the group size")
    if np.ndim(n_rollouts) == 0:
        return np.full(len(prompt_ids), int(n_rollouts), np.int64)
    return as_int_array("n_rollouts", n_rollouts)


class BetaPredictive:
    """The prediction of a policy with a Beta belief per prompt (MoPPS, BOTS)."""

    _core: MoppsCore | BotsCore

    def predicted_states(self, prompt_ids: Any, n_rollouts: Any) -> np.ndarray:
        """(n, 3) P(unsolved, partial, solved) of each prompt's next group of `n_rollouts`
        responses: the Beta-binomial predictive of its Beta(a, b) belief."""
        ids = as_int_array("prompt_ids", prompt_ids)
        return self._core.predicted(ids, group_sizes(ids, n_rollouts))

    def predicted_success(self, prompt_ids: Any = None) -> np.ndarray:
        """The posterior mean success rate a / (a + b) of each prompt."""
        state = self._core.state()
        a, b = state["a"], state["b"]
        mean = a / (a + b)
        return mean if prompt_ids is None else mean[as_int_array("prompt_ids", prompt_ids)]


#: MoPPS's released MATH script scores a pool of 16 x B candidates (`tasksampler.ts_ratio=16`).
MOPPS_CANDIDATE_RATIO = 16.0


class MoPPS(BetaPredictive, PooledPolicy):
    """MoPPS: Beta(a, b) per prompt; take the B whose posterior draw is closest to `target`.

    threshold=(lo, hi) is the threshold variant: draws inside the band first, in random order,
    then the rest by distance to the band's nearest edge (as released).
    candidate_ratio: the B best of a pool of floor(ratio x B) prompts (see `PooledPolicy`);
    the default 16 is the released MATH script's `ts_ratio` (a pool at least as large as the
    dataset is the whole dataset, as in the released Countdown and Geometry3k scripts); None
    scores the whole dataset every step.
    """

    _core: MoppsCore

    def __init__(
        self,
        num_prompts: int,
        *,
        decay: float = 1.0,
        prior_a: float = 1.0,
        prior_b: float = 1.0,
        target: float = 0.5,
        threshold: tuple[float, float] | None = None,
        candidate_ratio: float | None = MOPPS_CANDIDATE_RATIO,
        seed: int = 0,
    ) -> None:
        self.decay, self.prior_a, self.prior_b, self.target = (
            float(decay),
            float(prior_a),
            float(prior_b),
            float(target),
        )
        if threshold is not None and len(threshold) != 2:
            raise ValueError(f"threshold must be (lo, hi), got {threshold!r}")
        self.threshold = None if threshold is None else (float(threshold[0]), float(threshold[1]))
        self.candidate_ratio = check_candidate_ratio(candidate_ratio)
        self.seed = check_seed(seed)
        self._core = MoppsCore(
            check_num_prompts(num_prompts),
            {
                "decay": self.decay,
                "prior_a": self.prior_a,
                "prior_b": self.prior_b,
                "target": self.target,
                "threshold": self.threshold,
                "candidate_ratio": self.candidate_ratio,
                "seed": self.seed,
            },
        )


def anchor_array(anchors: Any, num_prompts: int) -> np.ndarray | None:
    """BOTS's anchors as a contiguous (num_prompts, 2) float64 array (values checked by the core);
    "population" gives every prompt (0, 1)."""
    if anchors is None:
        return None
    if isinstance(anchors, str):
        if anchors != "population":
            raise ValueError(f"anchors must be a (num_prompts, 2) array, None or 'population', not {anchors!r}")
        return np.tile(np.array([0.0, 1.0]), (num_prompts, 1))
    array = np.asarray(anchors)
    if array.dtype.kind not in "iuf":
        raise TypeError(f"anchors must hold numbers, got dtype {array.dtype}")
    if array.shape != (num_prompts, 2):
        raise ValueError(f"anchors must have shape (num_prompts, 2) = ({num_prompts}, 2), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("anchors must be finite pass rates in [0, 1]")
    return np.ascontiguousarray(array, dtype=np.float64)


class BOTS(BetaPredictive, PooledPolicy):
    """BOTS (Bayesian Online Task Selection, arXiv 2510.26374): a Beta(a, b) belief about each
    prompt's success rate with forgetting, explicit evidence from the prompts rolled out and
    implicit evidence for all others; take the B prompts whose Thompson draw is closest to
    `target`.

    Each step every belief forgets: a <- (1 - forgetting) a + forgetting a0 (b likewise); a
    rolled-out prompt then adds its successes and failures, every other prompt rho x m
    pseudo-counts at the interpolation plug-in's success rate p~ = clip(r0 + c (r1 - r0), 0, 1)
    (`implicit_weight` = rho, `pseudo_count` = m, default the step's mean group size). r0, r1
    are the prompt's `anchors` (two reference models' pass rates, shape (num_prompts, 2)); c,
    the model's place between them, is estimated from the rolled-out groups and smoothed
    (`smoothing`). Without anchors there is no implicit evidence; `anchors="population"` gives
    every prompt (0, 1), making p~ the smoothed pass rate of the rolled-out groups (measured
    worse than none on real logs: docs/method.md). `thompson=False` ranks by the posterior mean
    instead of a draw.
    Defaults: the released example's (Trinity-RFT examples/bots/bots.yaml: lamb 0.1, rho 0.1,
    target_reward 0.5, tau 0 (top-k), do_sample true; estimator: a0 = b0 = 1, smoothing 0.9).
    """

    _core: BotsCore

    def __init__(
        self,
        num_prompts: int,
        *,
        forgetting: float = 0.1,
        implicit_weight: float = 0.1,
        prior_a: float = 1.0,
        prior_b: float = 1.0,
        target: float = 0.5,
        pseudo_count: float | None = None,
        smoothing: float = 0.9,
        thompson: bool = True,
        anchors: Any = None,
        candidate_ratio: float | None = None,
        seed: int = 0,
    ) -> None:
        num_prompts = check_num_prompts(num_prompts)
        if not isinstance(thompson, (bool, np.bool_)):
            raise TypeError(f"thompson must be true or false, got {type(thompson).__name__}")
        self.forgetting, self.implicit_weight = float(forgetting), float(implicit_weight)
        self.prior_a, self.prior_b, self.target = float(prior_a), float(prior_b), float(target)
        self.pseudo_count = None if pseudo_count is None else float(pseudo_count)
        self.smoothing, self.thompson = float(smoothing), bool(thompson)
        self._anchor_option = anchors if anchors is None or isinstance(anchors, str) else "array"
        self._anchors = anchor_array(anchors, num_prompts)
        self.candidate_ratio = check_candidate_ratio(candidate_ratio)
        self.seed = check_seed(seed)
        self._core = BotsCore(
            num_prompts,
            {
                "forgetting": self.forgetting,
                "implicit_weight": self.implicit_weight,
                "prior_a": self.prior_a,
                "prior_b": self.prior_b,
                "target": self.target,
                "pseudo_count": self.pseudo_count,
                "smoothing": self.smoothing,
                "thompson": self.thompson,
                "candidate_ratio": self.candidate_ratio,
                "seed": self.seed,
            },
            self._anchors,
        )

    @property
    def anchors(self) -> np.ndarray | None:
        return None if self._anchors is None else self._anchors.copy()

    def config(self) -> dict[str, Any]:
        """The core's options, and the anchors: None, "population", or a fingerprint of the array."""
        digest = self._anchor_option
        if self._anchors is not None and digest == "array":
            digest = "sha256:" + hashlib.sha256(self._anchors.tobytes()).hexdigest()[:16]
        return {**super().config(), "anchors": digest}

    @property
    def capability(self) -> float | None:
        """The plug-in's estimate c of the model's place between the anchors (None before the first step)."""
        return self._core.capability

    def metrics(self) -> dict[str, float]:
        c = self._core.capability
        return {"capability": math.nan if c is None else float(c)}


def family_ids(families: Any, num_prompts: int) -> np.ndarray | None:
    """RateDPS's families as dense int64 ids 0..F-1, one per prompt: any labels (numbers,
    strings), equal labels one family; None leaves families off."""
    if families is None:
        return None
    labels = np.asarray(families)
    if labels.shape != (num_prompts,):
        raise ValueError(f"families must hold one label per prompt, shape ({num_prompts},), got {labels.shape}")
    if labels.dtype.kind == "f" and not np.all(np.isfinite(labels)):
        raise ValueError("families must not hold NaN or infinite labels")
    _, dense = np.unique(labels, return_inverse=True)
    return np.ascontiguousarray(dense.reshape(-1), dtype=np.int64)


def check_switch_rate(switch_rate: Any) -> float | None:
    """ "auto" (None to the core: fitted online) or a number (the core checks its range)."""
    if isinstance(switch_rate, str):
        if switch_rate != "auto":
            raise ValueError(f"switch_rate must be 'auto' or a number in [0, 1), got {switch_rate!r}")
        return None
    if isinstance(switch_rate, bool) or not isinstance(switch_rate, (int, float, np.integer, np.floating)):
        raise TypeError(f"switch_rate must be 'auto' or a number, got {type(switch_rate).__name__}")
    return float(switch_rate)


class RateDPS(RustPolicy):
    """RateDPS (docs/method.md#rate-dps): the prompt's success rate as the hidden state, on a grid
    of `grid` rates evenly spaced in logit over [-logit_max, logit_max]; a group of n with c
    correct is a Binomial(n, rate) look at it, for any n; between steps a prompt keeps its rate or,
    with chance `switch_rate`, draws a new one from a population fitted online. Selection: a
    `revisit` share of each batch revisits prompts (`revisit_by="stranding"`, the default: each
    prompt draws a rate r from its predicted distribution, the largest f_k(r) k r (1 - r)^k win,
    the expected drop per group in the chance it stays unsolved; `revisit_by="age"`: the prompts
    observed least recently, the rule of states saved before the option existed), the rest by
    Thompson sampling (`selection="thompson"`, the default: each prompt draws a rate from its
    predicted distribution, the best P(the next group of k is partially solved) at the drawn
    rates win), or to the highest predicted P(partially solved) (`selection="top"`, which
    concentrates training on a few prompts; states saved before the option existed were made
    by it), or drawn in proportion to it without replacement (`selection="sample"`).

    switch_rate: "auto" fits it online (shadow filters over the candidates `switch_rates`, on
    about `fit_sample` prompts, scoring each group before they see it); a number fixes it.
    group_size: the score's k (None: the most common group size of the last step). families: an
    optional label per prompt (e.g. a column of the prompt table); a never-observed prompt then
    starts from its family's observed posteriors, shrunk towards the population by
    `family_shrink` prompts' worth.
    """

    _core: RateDpsCore
    _select_only_marks_pending = True
    SWITCH_RATES: tuple[float, ...] = tuple(RateDpsCore.SWITCH_RATES)
    SELECTIONS: tuple[str, ...] = tuple(RateDpsCore.SELECTIONS)
    REVISIT_BYS: tuple[str, ...] = tuple(RateDpsCore.REVISIT_BYS)

    def __init__(
        self,
        num_prompts: int,
        *,
        grid: int = 16,
        logit_max: float = 7.0,
        switch_rate: float | str = "auto",
        switch_rates: Sequence[float] = SWITCH_RATES,
        revisit: float = 0.125,
        revisit_by: str = RateDpsCore.REVISIT_BY,
        selection: str = RateDpsCore.SELECTION,
        group_size: int | None = None,
        families: Any = None,
        family_shrink: float = 1.0,
        fit_sample: int = RateDpsCore.FIT_SAMPLE,
        seed: int = 0,
    ) -> None:
        num_prompts = check_num_prompts(num_prompts)
        self._families = family_ids(families, num_prompts)
        self.seed = check_seed(seed)
        self._core = RateDpsCore(
            num_prompts,
            {
                "grid": check_count("grid", grid),
                "logit_max": float(logit_max),
                "switch_rate": check_switch_rate(switch_rate),
                "switch_rates": [float(r) for r in switch_rates],
                "revisit": float(revisit),
                "revisit_by": revisit_by,
                "selection": selection,
                "group_size": None if group_size is None else check_count("group_size", group_size),
                "family_shrink": float(family_shrink),
                "fit_sample": check_count("fit_sample", fit_sample),
                "seed": self.seed,
            },
            self._families,
        )

    def config(self) -> dict[str, Any]:
        """The core's options ("auto" for a fitted switch rate), and the families: None or a
        fingerprint of their ids."""
        config = super().config()
        if config["switch_rate"] is None:
            config["switch_rate"] = "auto"
        digest = None
        if self._families is not None:
            digest = "sha256:" + hashlib.sha256(self._families.tobytes()).hexdigest()[:16]
        return {**config, "families": digest}

    @property
    def families(self) -> np.ndarray | None:
        """The family id of each prompt (dense, 0..F-1), or None."""
        return None if self._families is None else self._families.copy()

    @property
    def rates(self) -> np.ndarray:
        """The grid of success rates."""
        return self._core.rates

    @property
    def switch_rate(self) -> float:
        """The switch rate the main filter uses now (the fitted choice, or the fixed value)."""
        return float(self._core.metrics()["switch_rate"])

    def predicted_states(self, prompt_ids: Any, n_rollouts: Any) -> np.ndarray:
        """(n, 3) P(unsolved, partial, solved) of each prompt's next group of `n_rollouts`
        responses: the binomial predictive of its rate distribution."""
        ids = as_int_array("prompt_ids", prompt_ids)
        return self._core.predicted(ids, group_sizes(ids, n_rollouts))

    def predicted_rates(self, prompt_ids: Any = None) -> np.ndarray:
        """(n, G) each prompt's predicted distribution over `rates` at the coming step."""
        ids = np.arange(self.num_prompts) if prompt_ids is None else as_int_array("prompt_ids", prompt_ids)
        return self._core.rate_distribution(ids)

    def scores(self) -> np.ndarray:
        """Every prompt's score: P(its next group of k is partially solved)."""
        return self._core.scores()

    def bytes_per_prompt(self) -> float:
        return float(self._core.bytes_per_prompt())

    def metrics(self) -> dict[str, float]:
        """switch_rate, switch_rate_loglik (the best candidate's mean log predictive per group,
        once the fit has scored groups), population_mean_rate, population_partial (the population's
        P(partial) at k) and observed_share (prompts observed at least once)."""
        return {k: float(v) for k, v in self._core.metrics().items()}


def zero_variance_mask(n_correct: Any, n_rollouts: Any, band: tuple[float, float] | None = None) -> np.ndarray:
    """True for groups with a learning signal: 0 < correct < k, or a mean inside `band`."""
    return admit_mask(as_int_array("n_correct", n_correct), as_int_array("n_rollouts", n_rollouts), band)


#: GRESO's rounds as released (ray_trainer.py): the first rolls out 1.5 x B prompts
#: (`sampling_batch_size` 384 for B = 256); each later one what is still missing, scaled up by
#: the round's zero-variance share and a margin, at least 64 and at most the first round's size.
GRESO_FIRST_ROUND = 1.5
GRESO_ROUND_MARGIN = 1.25
GRESO_MIN_ROUND = 64
GRESO_ROUNDS = ("released", "batch")
#: Rounds a step may take when a gate rejects groups and rounds are whole batches (DS; GRESO's
#: rounds="batch"): DAPO's max_num_gen_batches in the paper's runs.
DEFAULT_MAX_ROUNDS = 10


def released_round_size(batch_size: int, rounds: Sequence[tuple[int, int]], first_ratio: float) -> int:
    """The released GRESO trainer's next round: 0 ends the step.

    After a round that leaves the step short, the next round asks for
    int((B - kept) / (1 - zero-variance share of that round) x 1.25) prompts, clamped to
    [64, first round]; when that estimate already fits in the first round's size, the next
    round is the step's last. A round whose groups were all zero-variance (the released code
    divides by zero there) asks for a full first-round's worth and is never the last.
    """
    first = max(1, int(first_ratio * batch_size))
    if not rounds:
        return first

    def estimate(done: Sequence[tuple[int, int]]) -> float:
        missing = batch_size - sum(kept for _, kept in done)
        groups, kept = done[-1]
        zero_variance = 1.0 - kept / groups if groups else 1.0
        return math.inf if zero_variance >= 1.0 else float(int(missing / (1.0 - zero_variance) * GRESO_ROUND_MARGIN))

    if sum(kept for _, kept in rounds) >= batch_size:
        return 0
    if len(rounds) >= 2 and estimate(rounds[:-1]) <= first:
        return 0  # the previous round said this one was the last
    size = estimate(rounds)
    return int(max(min(size, first), GRESO_MIN_ROUND))


class GRESO(EpochPolicy):
    """GRESO: skip prompts with zero-variance streaks before rollout (adaptive skip
    probabilities), then drop zero-variance groups after rollout, in rounds.

    As released by default (Infini-AI-Lab/GRESO b277843): p_easy and p_hard adapt only from
    the second epoch on (`adapt_from_epoch=1`; 0 adapts from the first step), and a step's rounds
    are the released trainer's (`rounds="released"`: 1.5 x B prompts first, then sized to what
    is still missing, see `released_round_size`, with no cap on their number).
    `rounds="batch"` rolls out B prompts per round, at most `max_rounds` (default
    DEFAULT_MAX_ROUNDS) rounds.
    `max_rounds` caps the released rounds too when given.
    """

    _core: GresoCore

    def __init__(
        self,
        num_prompts: int,
        *,
        p_easy: float = 0.5,
        p_hard: float = 0.5,
        step_size: float = 0.01,
        p_min: float = 0.05,
        p_max: float = 0.95,
        min_keep: float = 0.01,
        target_easy: float = 0.25 / 3,
        target_hard: float = 0.25 * 2 / 3,
        adapt_from_epoch: int = 1,
        rounds: str = "released",
        first_round: float = GRESO_FIRST_ROUND,
        max_rounds: int | None = None,
        seed: int = 0,
    ) -> None:
        if rounds not in GRESO_ROUNDS:
            raise ValueError(f"rounds must be one of {GRESO_ROUNDS}, got {rounds!r}")
        self.rounds = rounds
        self.first_round = float(first_round)
        if not (math.isfinite(self.first_round) and self.first_round >= 1.0):
            raise ValueError(f"first_round must be a finite number >= 1 (x batch_size), got {first_round!r}")
        self.adapt_from_epoch = check_count("adapt_from_epoch", adapt_from_epoch)
        num_prompts = check_num_prompts(num_prompts)
        if max_rounds is None:
            self._round_cap = DEFAULT_MAX_ROUNDS if rounds == "batch" else None
        else:
            self._round_cap = check_count("max_rounds", max_rounds) or 1
        #: An upper bound on a step's rounds: each rolls out at least one prompt.
        self.max_rounds = self._round_cap if self._round_cap is not None else num_prompts
        self.seed = check_seed(seed)
        self._core = GresoCore(
            num_prompts,
            {
                "p_easy": float(p_easy),
                "p_hard": float(p_hard),
                "step_size": float(step_size),
                "p_min": float(p_min),
                "p_max": float(p_max),
                "min_keep": float(min_keep),
                "target_easy": float(target_easy),
                "target_hard": float(target_hard),
                "adapt_from_epoch": self.adapt_from_epoch,
                "seed": self.seed,
            },
        )
        self._skipped_last = 0

    def config(self) -> dict[str, Any]:
        """The core's options, and the rounds of a step (this layer's)."""
        rounds = {"rounds": self.rounds, "first_round": self.first_round, "max_rounds": self._round_cap}
        return {**super().config(), **rounds}

    def round_size(self, batch_size: int, rounds: Sequence[tuple[int, int]]) -> int:
        if self.rounds == "batch":
            return super().round_size(batch_size, rounds)
        if self._round_cap is not None and len(rounds) >= self._round_cap:
            return 0
        return released_round_size(batch_size, rounds, self.first_round)

    def predicted_states(self, prompt_ids: Any, n_rollouts: Any = None) -> np.ndarray:
        """(n, 3) the states the skip filter implies: a prompt with a zero-variance streak is
        kept with chance q (p_easy or p_hard to the streak's length, at least min_keep), read
        as P(partial) = q and the streak's state otherwise; a prompt without one, partial."""
        return self._core.predicted(as_int_array("prompt_ids", prompt_ids))

    def admit(self, prompt_ids: Any, n_correct: Any, n_rollouts: Any) -> np.ndarray:
        return zero_variance_mask(n_correct, n_rollouts)

    def admit_groups(self, groups: GroupOutcomes) -> np.ndarray:
        """The groups with a learning signal: effective (partially solved, or rewards that differ)."""
        return checked_groups(groups).effective

    def _take(self, groups: GroupOutcomes, arrival: str) -> None:
        skipped = int(self._core.skipped)
        super()._take(groups, arrival)
        self._skipped_last = skipped

    def metrics(self) -> dict[str, float]:
        return {"p_easy": self._core.p_easy, "p_hard": self._core.p_hard, "skipped": float(self._skipped_last)}
