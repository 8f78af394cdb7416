"""A reference of RateDPS, written from docs/method.md#rate-dps alone: the oracle of the Rust port.

RateDPS is a hidden Markov model per prompt whose hidden state is the prompt's success rate, on a
fixed grid of G rates. A group of n responses with c correct is a Binomial(n, rate) draw, so the
filter is exact for any n. Between two steps a prompt keeps its rate with probability 1 - rho and
otherwise draws a new one from the population (the mean posterior of the prompts observed so
far). rho is fitted online: shadow filters, one per candidate rho, run on a sample of the prompts
and score every group before they see it; the main filter, over every prompt, uses the candidate
with the best predictive log-likelihood so far. A prompt's score is the predicted chance that its
next group of k is partially solved; an eighth of each batch revisits the prompts most likely
stranded (at a rate r drawn from each prompt's prediction, the largest f_k(r) k r (1 - r)^k) or,
with revisit_by="age", those observed least recently.

Deliberately plain: every prompt's predicted distribution is updated every step, in every
filter (the Rust core updates lazily, docs/method.md#rate-dps-cost, and must agree with this to
rounding). It is a plain `dps.Policy`, so replay runs and scores it like a built-in.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dps import Policy
from dps._core import hashed_uniforms

#: The switch-rate candidates of the online fit (per step).
SWITCH_RATES = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
#: The switch rate while the candidates tie (before any prompt is observed twice).
START_SWITCH_RATE = 0.02
#: The population's memory: the weight of a step's switch evidence halves after this many steps.
POPULATION_HALF_LIFE = 10.0
#: The shadow filters run on about this many prompts (every prompt when there are fewer).
FIT_SAMPLE = 65536
#: The salt of the fit sample's hashed uniforms (so that they never coincide with a world's dice).
SAMPLE_SALT = 0x7261_7465_7361_6D31  # "ratesam1"
#: The core's random streams (rust/rng.rs) of the keyed orders: ties among equal scores, revisits;
#: then the draws of selection="sample": the rejection draws, the keys of its fallback; then the
#: uniforms of selection="thompson", and those of revisit_by="stranding".
TIE_STREAM = 6
REVISIT_STREAM = 7
SAMPLE_STREAM = 8
SAMPLE_ALL_STREAM = 9
THOMPSON_STREAM = 10
RESCUE_STREAM = 11
#: The values of the selection option.
SELECTIONS = ("top", "sample", "thompson")
#: The values of the revisit_by option.
REVISIT_BYS = ("stranding", "age")
MASK64 = (1 << 64) - 1
GOLDEN, MIX1, MIX2 = 0x9E37_79B9_7F4A_7C15, 0xBF58_476D_1CE4_E5B9, 0x94D0_49BB_1331_11EB


def rate_grid(size: int, logit_max: float) -> np.ndarray:
    """`size` rates evenly spaced in logit over [-logit_max, logit_max]."""
    z = np.linspace(-logit_max, logit_max, size)
    return 1.0 / (1.0 + np.exp(-z))


def log_binomial(rates: np.ndarray, n_correct: np.ndarray, n_rollouts: np.ndarray) -> np.ndarray:
    """(m, G): log P(c of n | rate) for every group and grid rate, binomial coefficient included."""
    c = np.asarray(n_correct, np.float64)
    n = np.asarray(n_rollouts, np.float64)
    lgamma = np.vectorize(math.lgamma, otypes=[np.float64])
    coefficient = lgamma(n + 1) - lgamma(c + 1) - lgamma(n - c + 1) if len(n) else np.zeros(0)
    return coefficient[:, None] + c[:, None] * np.log(rates) + (n - c)[:, None] * np.log1p(-rates)


def state_chances(rates: np.ndarray, n: int) -> np.ndarray:
    """(G, 3): P(unsolved), P(partially solved), P(solved) of a group of n at each grid rate.

    n = 0 is an empty group: 0 correct, which the replay and the trainer call unsolved; a group
    of one is never partially solved."""
    if n == 0:
        return np.tile([1.0, 0.0, 0.0], (len(rates), 1))
    unsolved, solved = (1.0 - rates) ** n, rates**n
    partial = 1.0 - unsolved - solved if n >= 2 else np.zeros_like(rates)
    return np.stack([unsolved, partial, solved], axis=1)


def log_mix(weights: np.ndarray, log_likelihood: np.ndarray) -> np.ndarray:
    """log sum_j weights[.., j] exp(log_likelihood[.., j]), rowwise, without underflow."""
    top = log_likelihood.max(axis=-1, keepdims=True)
    return top[..., 0] + np.log(np.sum(weights * np.exp(log_likelihood - top), axis=-1))


def hashed_key(salt: int, seed: int, step: int, ids: np.ndarray) -> np.ndarray:
    """A uniform in [0, 1) per prompt, a pure function of (seed, step, id)."""
    return hashed_uniforms((seed ^ salt) & MASK64, step, np.ascontiguousarray(ids, np.int64), 1)[:, 0]


def fmix64(z: Any) -> Any:
    """SplitMix64's finaliser, on Python ints or uint64 arrays (which wrap)."""
    if isinstance(z, int):
        z = ((z ^ (z >> 30)) * MIX1) & MASK64
        z = ((z ^ (z >> 27)) * MIX2) & MASK64
        return z ^ (z >> 31)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX2)
    return z ^ (z >> np.uint64(31))


def mix64(z: int) -> int:
    return fmix64((z + GOLDEN) & MASK64)


def stream_key(*parts: int) -> int:
    """rng.rs's key(): the words folded into one."""
    h = 0x243F_6A88_85A3_08D3
    for p in parts:
        h = mix64(h ^ mix64(p & MASK64))
    return h


def unit(bits: int) -> float:
    """rng.rs's unit_f64: a uniform in [0, 1) from the top 53 of 64 bits."""
    return (bits >> 11) / float(1 << 53)


def order_keys(stream: int, seed: int, step: int, num_prompts: int, ids: np.ndarray) -> np.ndarray:
    """A keyed order of the ids: each id's key under a permutation of [0, 4^h), 4^h >= N (a
    four-round Feistel network on two h-bit halves whose round function is fmix64 of the half
    and a round key). Distinct ids get distinct keys; smaller comes first. A permutation, so the
    port lists the first ids of an order by inverting it (docs/method.md#rate-dps-selection)."""
    half = max(1, ((num_prompts - 1).bit_length() + 1) // 2)
    base = stream_key(seed, stream, step)
    mask = np.uint64((1 << half) - 1)
    ids = np.asarray(ids, np.int64).astype(np.uint64)
    left, right = ids >> np.uint64(half), ids & mask
    for r in range(4):
        round_key = np.uint64(mix64((base + r) & MASK64))
        left, right = right, left ^ (fmix64(right ^ round_key) & mask)
    return (left << np.uint64(half)) | right


class RateFilter:
    """One filter over a domain of prompts: each prompt's predicted rate distribution for the next
    step and the part of it that has not switched since the prompt's last observation; the
    population, fitted by online EM to the evidence of switches; a switch rate."""

    population_half_life = POPULATION_HALF_LIFE

    def __init__(self, domain: np.ndarray, grid: int, switch_rate: float, families: np.ndarray | None, shrink: float):
        self.domain = domain  # the prompt ids this filter follows, sorted
        self.switch_rate = switch_rate
        self.population = np.full(grid, 1.0 / grid)
        self.prior = np.tile(self.population, (len(domain), 1))  # rows follow `domain`
        self.kept = np.zeros((len(domain), grid))  # the part of `prior` that has not switched
        self.switches = np.zeros(grid)  # decayed sum of the switch evidence, per rate
        self.switches_total = 0.0
        self.observed = np.zeros(len(domain), bool)  # observed at least once
        self.last_post = np.zeros((len(domain), grid))  # posterior at each prompt's last observation
        self.families = None if families is None else families[domain]
        self.shrink = shrink
        self.log_predictive_total = 0.0  # of every group scored so far
        self.groups_scored = 0

    def rows(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(which of `ids` this filter follows, their rows)."""
        at = np.searchsorted(self.domain, ids)
        inside = (at < len(self.domain)) & (self.domain[np.minimum(at, len(self.domain) - 1)] == ids)
        return inside, at[inside]

    def observe(self, ids: np.ndarray, loglik: np.ndarray) -> None:
        """Score the groups, then take the step: posterior, population, transition."""
        inside, rows = self.rows(ids)
        loglik = loglik[inside]
        self.log_predictive_total += float(log_mix(self.prior[rows], loglik).sum())
        self.groups_scored += len(rows)
        likelihood = np.exp(loglik - loglik.max(axis=1, keepdims=True))
        evidence = self.prior[rows] * likelihood
        total = evidence.sum(axis=1, keepdims=True)
        # P(the rate switched since the last look and is r_j | the group); a first look is a switch
        switched = (self.prior[rows] - self.kept[rows]) * likelihood / total
        post = self.prior.copy()  # an unobserved prompt's posterior is its prediction
        post[rows] = evidence / total
        first_look = ~self.observed[rows]
        self.observed[rows] = True
        self.last_post[rows] = post[rows]
        kept = self.kept.copy()
        kept[rows] = post[rows]  # an observation starts the unswitched part afresh
        self.update_population(post, switched, loglik[first_look])
        unseen = self.family_populations()[~self.observed]  # a never-observed prompt is a draw from its population
        self.prior = self.transition(post)
        self.kept = (1.0 - self.switch_rate) * kept
        self.prior[~self.observed] = unseen
        self.kept[~self.observed] = 0.0

    def update_population(self, post: np.ndarray, switched: np.ndarray, first_look_loglik: np.ndarray) -> None:
        """Online EM for the distribution switches draw from: each step's switch evidence is added
        to a sum whose older terms halve every POPULATION_HALF_LIFE steps; the population is that
        sum, normalised (uniform before any evidence)."""
        keep = 0.5 ** (1.0 / self.population_half_life)
        self.switches = keep * self.switches + switched.sum(axis=0)
        self.switches_total = keep * self.switches_total + float(switched.sum())
        if self.switches_total > 0:
            self.population = self.switches / self.switches_total

    def transition(self, post: np.ndarray) -> np.ndarray:
        """The next step's prediction: keep the rate, or with chance rho draw it from the population."""
        return (1.0 - self.switch_rate) * post + self.switch_rate * self.population

    def family_populations(self) -> np.ndarray:
        """Each prompt's population: the global one, or its family's (the last posteriors of the
        family's observed prompts, with `shrink` prompts' worth of the global population)."""
        if self.families is None:
            return np.broadcast_to(self.population, self.prior.shape)
        fam = self.families
        sums = np.zeros((int(fam.max()) + 1, self.prior.shape[1]))
        np.add.at(sums, fam[self.observed], self.last_post[self.observed])
        counts = np.bincount(fam[self.observed], minlength=len(sums)).astype(np.float64)
        mixed = (sums + self.shrink * self.population) / (counts + self.shrink)[:, None]
        return mixed[fam]


class ReferenceRateDPS(Policy):
    """RateDPS in numpy, every prompt updated every step.

    grid, logit_max: the G rates; switch_rate: "auto" (the online fit over `switch_rates`) or a
    fixed rho in [0, 1); revisit: the share of each batch given to revisits; revisit_by:
    "stranding" (the default: the largest f_k(r) k r (1 - r)^k at a rate r drawn from each
    prompt's prediction) or "age" (the prompts observed least recently); group_size: the k of
    the score (None: the most common group size of the last step that had groups, ties to the
    larger; 8 before any); families: an optional family id per
    prompt, whose never-observed prompts start from their family's population (shrunk towards the
    global one by `family_shrink` prompts); fit_sample: about how many prompts the shadow filters
    follow; selection: "thompson" (the default: the best partial chances at a rate drawn from
    each prompt's prediction), "top" (the best scores after the revisits) or "sample" (drawn in
    proportion to the score, without replacement).
    """

    def __init__(
        self,
        num_prompts: int,
        seed: int = 0,
        grid: int = 16,
        logit_max: float = 7.0,
        switch_rate: float | str = "auto",
        switch_rates: tuple[float, ...] = SWITCH_RATES,
        revisit: float = 0.125,
        group_size: int | None = None,
        families: Any = None,
        family_shrink: float = 1.0,
        fit_sample: int = FIT_SAMPLE,
        selection: str = "thompson",
        revisit_by: str = "stranding",
    ):
        if selection not in SELECTIONS:
            raise ValueError(f"selection must be 'top', 'sample' or 'thompson', got {selection!r}")
        if revisit_by not in REVISIT_BYS:
            raise ValueError(f"revisit_by must be 'stranding' or 'age', got {revisit_by!r}")
        self.selection = selection
        self.revisit_by = revisit_by
        if switch_rate != "auto" and not 0.0 <= float(switch_rate) < 1.0:
            raise ValueError(f"switch_rate must be 'auto' or in [0, 1), got {switch_rate!r}")
        if not 0.0 <= revisit <= 1.0:
            raise ValueError(f"revisit must be in [0, 1], got {revisit!r}")
        self.num_prompts = int(num_prompts)
        self.seed = int(seed)
        self.rates = rate_grid(int(grid), float(logit_max))
        self.revisit = float(revisit)
        self.fixed_group_size = group_size
        fam = None if families is None else np.asarray(families, np.int64)
        if fam is not None and fam.shape != (self.num_prompts,):
            raise ValueError(f"families must hold one id per prompt, got shape {fam.shape}")
        everyone = np.arange(self.num_prompts)
        self.fitted = switch_rate == "auto"
        start = START_SWITCH_RATE if self.fitted else float(switch_rate)
        self.main = RateFilter(everyone, int(grid), start, fam, family_shrink)
        self.shadows: list[RateFilter] = []
        if self.fitted:
            sample = everyone
            if self.num_prompts > fit_sample:
                keys = hashed_key(SAMPLE_SALT, self.seed, 0, everyone)
                sample = everyone[keys < fit_sample / self.num_prompts]
            self.shadows = [RateFilter(sample, int(grid), float(r), fam, family_shrink) for r in switch_rates]
        self.last_step = np.full(self.num_prompts, -1, np.int64)  # -1: never observed
        self.group_size = 8 if group_size is None else int(group_size)
        self.step = 0
        self.pending = np.zeros(self.num_prompts, bool)
        self.revisited = 0

    @property
    def switch_rate(self) -> float:
        return self.main.switch_rate

    # ---- selection ----------------------------------------------------------------------------

    def scores(self) -> np.ndarray:
        """P(a group of k is partially solved) for every prompt."""
        # elementwise, then summed per row: equal rows give equal scores (a matrix product need not)
        return (self.main.prior * state_chances(self.rates, self.group_size)[:, 1]).sum(axis=1)

    def select(self, batch_size: int) -> np.ndarray:
        free = np.flatnonzero(~self.pending)
        if batch_size > len(free):
            raise ValueError(f"batch_size {batch_size} exceeds the {len(free)} prompts not yet handed out")
        stale = int(math.floor(self.revisit * batch_size + 0.5))
        if self.revisit_by == "age":
            revisits = free[np.lexsort((self.revisit_keys(free), self.last_step[free]))[:stale]]
        else:
            revisits = self.best_drawn(stale, self.pending, RESCUE_STREAM, self.stranding_values())
        blocked = self.pending.copy()
        blocked[revisits] = True
        pick = {"sample": self.sampled, "thompson": self.thompson, "top": self.top}[self.selection]
        ids = np.concatenate([revisits, pick(batch_size - stale, blocked)]).astype(np.int64)
        self.pending[ids] = True
        self.revisited += stale
        return ids

    def top(self, count: int, blocked: np.ndarray) -> np.ndarray:
        """The `count` prompts not `blocked` with the best scores, ranked on float32 scores:
        rounding noise never splits scores equal in exact arithmetic (mirror-image histories on
        the symmetric grid); those go to the keyed order."""
        left = np.flatnonzero(~blocked)
        tie = order_keys(TIE_STREAM, self.seed, self.step, self.num_prompts, left)
        rank = self.scores().astype(np.float32)[left]
        return left[np.lexsort((tie, -rank))[:count]]

    def sampled(self, count: int, blocked: np.ndarray) -> np.ndarray:
        """`count` prompts not `blocked`, drawn one after another with chance proportional to the
        score among those left: a hashed uniform id accepted with chance its score, for up to
        64 count + 4096 draws; the rest by Efraimidis-Spirakis keys ln(u) / score over every
        prompt left (largest first; a score of 0 last, in the tie order)."""
        scores, blocked, out = self.scores(), blocked.copy(), []
        draw = lambda j: stream_key(self.seed, SAMPLE_STREAM, self.step, j)  # noqa: E731
        for j in range(64 * count + 4096):
            if len(out) == count:
                break
            prompt = (draw(2 * j) * self.num_prompts) >> 64
            if not blocked[prompt] and unit(draw(2 * j + 1)) < scores[prompt]:
                blocked[prompt] = True
                out.append(prompt)
        if len(out) == count:
            return np.array(out, np.int64)
        left = np.flatnonzero(~blocked)
        u = np.array([unit(stream_key(self.seed, SAMPLE_ALL_STREAM, self.step, int(i))) for i in left])
        s = scores[left]
        with np.errstate(divide="ignore"):
            keys = np.where(s > 0, np.log(u) / np.where(s > 0, s, 1.0), -np.inf)
        tie = order_keys(TIE_STREAM, self.seed, self.step, self.num_prompts, left)
        rest = left[np.lexsort((tie, -keys))[: count - len(out)]]
        return np.concatenate([np.array(out, np.int64), rest])

    def thompson(self, count: int, blocked: np.ndarray) -> np.ndarray:
        """The `count` prompts not `blocked` whose rate drawn from their prediction has the
        largest float32 partial chance."""
        partial = state_chances(self.rates, self.group_size)[:, 1].astype(np.float32)
        return self.best_drawn(count, blocked, THOMPSON_STREAM, partial)

    def stranding_values(self) -> np.ndarray:
        """f_k(r) k r (1 - r)^k at each grid rate, in float32: the chance (1 - r)^k that a group
        of k shows 0 correct falls by k r (1 - r)^k per unit of logit(r), and a group moves the
        prompt only when it is partially solved (chance f_k(r))."""
        k, r = self.group_size, self.rates
        return (state_chances(r, k)[:, 1] * k * r * (1.0 - r) ** k).astype(np.float32)

    def best_drawn(self, count: int, blocked: np.ndarray, stream: int, value: np.ndarray) -> np.ndarray:
        """The `count` prompts not `blocked` whose rate drawn from their prediction (the first
        rate where the running sum reaches a hashed uniform of (stream, step, id); the last if it
        never does) has the largest `value`; ties in the tie order. Every prompt drawn: the
        port's walk from the front of the tie order gives the same ids."""
        left = np.flatnonzero(~blocked)
        u = np.array([unit(stream_key(self.seed, stream, self.step, int(i))) for i in left])
        reached = np.cumsum(self.main.prior[left], axis=1) >= u[:, None]
        drawn = np.where(reached.any(axis=1), reached.argmax(axis=1), len(self.rates) - 1)
        tie = order_keys(TIE_STREAM, self.seed, self.step, self.num_prompts, left)
        return left[np.lexsort((tie, -value[drawn]))[:count]]

    def revisit_keys(self, ids: np.ndarray) -> np.ndarray:
        """The order among prompts last observed at the same step: a keyed order of (seed, that
        step + 1), fixed until the prompt is observed again (never-observed prompts: step 0)."""
        keys = np.empty(len(ids), np.uint64)
        for last in np.unique(self.last_step[ids]):
            rows = self.last_step[ids] == last
            keys[rows] = order_keys(REVISIT_STREAM, self.seed, int(last) + 1, self.num_prompts, ids[rows])
        return keys

    def predicted_states(self, prompt_ids: Any, n_rollouts: Any) -> np.ndarray:
        ids = np.asarray(prompt_ids, np.int64)
        sizes = np.broadcast_to(np.asarray(n_rollouts, np.int64), ids.shape)
        out = np.zeros((len(ids), 3))
        for n in np.unique(sizes):
            rows = sizes == n
            out[rows] = self.main.prior[ids[rows]] @ state_chances(self.rates, int(n))
        return out

    # ---- filter -------------------------------------------------------------------------------

    def observe(self, prompt_ids: Any, n_correct: Any, n_rollouts: Any) -> None:
        ids = np.asarray(prompt_ids, np.int64)
        c = np.asarray(n_correct, np.int64)
        n = np.asarray(n_rollouts, np.int64)
        if not (ids.shape == c.shape == n.shape) or ids.ndim != 1:
            raise ValueError("prompt_ids, n_correct and n_rollouts must be 1-D of one length")
        if len(ids) and (ids.min() < 0 or ids.max() >= self.num_prompts):
            raise ValueError("prompt_ids out of range")
        if len(np.unique(ids)) != len(ids):
            raise ValueError("prompt_ids repeated in one step")
        if np.any(c < 0) or np.any(c > n):
            raise ValueError("need 0 <= n_correct <= n_rollouts")
        seen = n > 0  # an empty group carries no evidence: the prompt counts as not observed
        ids, c, n = ids[seen], c[seen], n[seen]
        order = np.argsort(ids)
        ids, c, n = ids[order], c[order], n[order]
        loglik = log_binomial(self.rates, c, n)
        for shadow in self.shadows:
            shadow.observe(ids, loglik)
        if self.fitted:
            self.main.switch_rate = self.chosen_switch_rate()
        self.main.observe(ids, loglik)
        self.last_step[ids] = self.step
        if len(n) and self.fixed_group_size is None:
            sizes, counts = np.unique(n, return_counts=True)
            self.group_size = int(sizes[counts == counts.max()].max())
        self.step += 1
        self.pending[:] = False
        self.revisited = 0

    def chosen_switch_rate(self) -> float:
        """The candidate with the highest predictive log-likelihood so far; ties go to the start
        value when it is among them, else to the smallest."""
        totals = np.array([s.log_predictive_total for s in self.shadows])
        best = [s.switch_rate for s, v in zip(self.shadows, totals, strict=True) if v == totals.max()]
        return START_SWITCH_RATE if START_SWITCH_RATE in best else min(best)

    def abandon(self) -> None:
        self.pending[:] = False
        self.revisited = 0

    def metrics(self) -> dict[str, float]:
        chances = state_chances(self.rates, self.group_size)[:, 1]
        out = {
            "switch_rate": self.switch_rate,
            "population_mean_rate": float(self.main.population @ self.rates),
            "population_partial": float(self.main.population @ chances),
            "observed_share": float(self.main.observed.mean()),
        }
        if self.shadows and self.shadows[0].groups_scored:
            best = max(s.log_predictive_total for s in self.shadows)
            out["switch_rate_loglik"] = best / self.shadows[0].groups_scored  # per group, of the best candidate
        return out

    # ---- state --------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Arrays and scalars only (dps.Policy.save writes them to an .npz)."""
        grid = len(self.rates)
        sample = len(self.shadows[0].domain) if self.shadows else 0

        def shadows(name: str, shape: tuple[int, ...]) -> np.ndarray:
            return np.array([getattr(s, name) for s in self.shadows], np.float64).reshape(len(self.shadows), *shape)

        return {
            "prior": self.main.prior.copy(),
            "last_post": self.main.last_post.copy(),
            "population": self.main.population.copy(),
            "kept": self.main.kept.copy(),
            "switches": np.append(self.main.switches, self.main.switches_total),
            "shadow_prior": shadows("prior", (sample, grid)),
            "shadow_kept": shadows("kept", (sample, grid)),
            "shadow_switches": np.array(
                [np.append(s.switches, s.switches_total) for s in self.shadows], np.float64
            ).reshape(len(self.shadows), grid + 1),
            "shadow_last_post": shadows("last_post", (sample, grid)),
            "shadow_population": shadows("population", (grid,)),
            "shadow_log_predictive": shadows("log_predictive_total", ()),
            "shadow_groups": np.array([s.groups_scored for s in self.shadows], np.int64),
            "switch_rate": self.main.switch_rate,
            "last_step": self.last_step.copy(),
            "group_size": self.group_size,
            "step": self.step,
            "pending": np.flatnonzero(self.pending),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        expected = self.state_dict()
        for key, value in expected.items():
            if isinstance(value, np.ndarray) and key != "pending" and np.shape(state[key]) != value.shape:
                raise ValueError(f"state[{key!r}] has shape {np.shape(state[key])}, expected {value.shape}")
        last_step = np.asarray(state["last_step"], np.int64)
        self.main.prior = np.array(state["prior"], np.float64)
        self.main.last_post = np.array(state["last_post"], np.float64)
        self.main.population = np.array(state["population"], np.float64)
        self.main.kept = np.array(state["kept"], np.float64)
        self.main.switches, self.main.switches_total = np.array(state["switches"][:-1]), float(state["switches"][-1])
        self.main.observed = last_step >= 0
        for i, s in enumerate(self.shadows):
            s.prior = np.array(state["shadow_prior"][i], np.float64)
            s.last_post = np.array(state["shadow_last_post"][i], np.float64)
            s.population = np.array(state["shadow_population"][i], np.float64)
            s.kept = np.array(state["shadow_kept"][i], np.float64)
            s.switches, s.switches_total = (
                np.array(state["shadow_switches"][i][:-1]),
                float(state["shadow_switches"][i][-1]),
            )
            s.log_predictive_total = float(state["shadow_log_predictive"][i])
            s.groups_scored = int(state["shadow_groups"][i])
            s.observed = last_step[s.domain] >= 0
        self.main.switch_rate = float(state["switch_rate"])
        self.last_step = last_step.copy()
        self.group_size = int(state["group_size"])
        self.step = int(state["step"])
        self.pending = np.zeros(self.num_prompts, bool)
        self.pending[np.asarray(state["pending"], np.int64)] = True
        self.revisited = 0
