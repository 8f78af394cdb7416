"""The log world's numpy implementation, kept to check the Rust core against (rust/logworld/:
messages.rs, query.rs): the message passes rank by rank (a prompt's first row, its second, ...) over
all prompts at once, and the queries a replay makes (posterior, draw, rollout) vectorised over
the queries, as python/dps/replay/logworld.py did them before they moved into the core."""

from __future__ import annotations

import numpy as np

from dps.replay.logworld import _DRAW_SALT, _FLOOR, GRID_SIZE, P_GRID, RowLog, Switching

# --------------------------------------------------------------------------------------------
# Common random numbers

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_G = np.uint64(0x9E3779B97F4A7C15)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)


def _mix(x: np.ndarray) -> np.ndarray:
    x = (x ^ (x >> _S30)) * _M1
    x = (x ^ (x >> _S27)) * _M2
    return x ^ (x >> _S31)


def hashed_uniforms(seed: int, step: int, ids: np.ndarray, k: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        s = _mix(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64) + _G)
        s = _mix(s ^ (np.array([step], dtype=np.uint64) * _G + np.uint64(1)))
        h = _mix(s ^ (np.asarray(ids, dtype=np.int64).astype(np.uint64) * _M1 + _G))
        j = np.arange(1, k + 1, dtype=np.uint64) * _M2
        u = _mix(h[:, None] + j[None, :])
    return (u >> _S11).astype(np.float64) * (1.0 / 9007199254740992.0)


def draw_correct(seed: int, step: int, ids: np.ndarray, p: np.ndarray, k: int) -> np.ndarray:
    if len(ids) == 0:
        return np.zeros(0, np.int64)
    return (hashed_uniforms(seed, step, ids, k) < np.asarray(p, np.float64)[:, None]).sum(axis=1).astype(np.int64)


# --------------------------------------------------------------------------------------------
# Message passes


def rank_orders(log: RowLog, forward: bool) -> list[np.ndarray]:
    """Rows grouped by their rank within the prompt, counted from the first row (forward) or the last."""
    starts = log.offsets[:-1][np.diff(log.offsets) > 0]
    lengths = np.diff(np.append(starts, log.rows))
    if forward:
        rank = np.arange(log.rows) - np.repeat(starts, lengths)
    else:
        rank = np.repeat(starts + lengths - 1, lengths) - np.arange(log.rows)
    order = np.argsort(rank, kind="stable")
    bounds = np.searchsorted(rank[order], np.arange(int(rank.max(initial=0)) + 2))
    return [order[bounds[r] : bounds[r + 1]] for r in range(len(bounds) - 1) if bounds[r + 1] > bounds[r]]


def carry(dyn: Switching, m: np.ndarray, t_from: np.ndarray, t_to: np.ndarray, forward: bool) -> np.ndarray:
    """A forward message moved from t_from to t_to > t_from, or a backward one from t_from back to t_to."""
    if dyn.rate == 0.0:
        return m
    if forward:
        return dyn.stay(t_to - t_from)[:, None] * m + dyn.redraw(t_from, t_to)
    s = dyn.stay(t_from - t_to)[:, None]
    return s * m + np.sum(dyn.redraw(t_to, t_from) * m, axis=1, keepdims=True)


def reference_pass(log: RowLog, dyn: Switching, forward: bool) -> np.ndarray:
    """Every row's forward (or backward) message, stored in log.dtype."""
    out = np.empty((log.rows, GRID_SIZE), log.dtype)
    emission = log.emission.astype(np.float32)
    step, index = log.step, log.core.pair_index()
    for r, rows in enumerate(rank_orders(log, forward)):
        e = emission[index[rows]]
        if r == 0:
            msg = dyn.prior_at(step[rows]).astype(np.float32) * e if forward else e.copy()
        else:
            nb = rows - 1 if forward else rows + 1
            m = out[nb].astype(np.float32)
            if forward:
                m /= m.sum(axis=1, keepdims=True)
            msg = carry(dyn, m, step[nb], step[rows], forward)
            msg *= e
        msg /= msg.max(axis=1, keepdims=True)
        out[rows] = np.maximum(msg, np.float32(_FLOOR), out=msg)
    return out


# --------------------------------------------------------------------------------------------
# Queries


class ReferenceQueries:
    """Posteriors, draws and rollouts from every row's messages as the core stored them (built
    with `dyn`), vectorised over the queries."""

    def __init__(self, log: RowLog, dyn: Switching):
        self.log, self.dyn = log, dyn
        self.step, self.offsets = log.step, log.offsets
        self.nc, self.nr = log.nc, log.nr
        self.fwd = log.messages(True).astype(log.dtype)
        self.bwd = log.messages(False).astype(log.dtype)

    def locate(self, t: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        ids, t = np.asarray(ids, np.int64), np.asarray(t, np.int64)
        inside = ids < len(self.offsets) - 1
        safe = np.where(inside, ids, 0)
        lo = np.where(inside, self.offsets[safe], 0)
        hi = np.where(inside, self.offsets[safe + 1], 0)
        at_or_after = self._bisect(lo, hi, t, strict=False)
        return lo, at_or_after, self._bisect(at_or_after, hi, t, strict=True), hi

    def _bisect(self, a: np.ndarray, b: np.ndarray, t: np.ndarray, strict: bool) -> np.ndarray:
        a, b = a.copy(), b.copy()
        last = max(self.log.rows - 1, 0)
        while True:
            active = a < b
            if not active.any():
                return a
            mid = np.minimum((a + b) // 2, last)
            s = self.step[mid]
            right = active & ((s <= t) if strict else (s < t))
            a = np.where(right, mid + 1, a)
            b = np.where(active & ~right, mid, b)

    def posterior(self, t: np.ndarray, ids: np.ndarray, include_cell: bool = True) -> np.ndarray:
        t = np.asarray(t, np.int64)
        lo, at_or_after, after, hi = self.locate(t, ids)
        prev = (after if include_cell else at_or_after) - 1
        has_prev, has_next = prev >= lo, after < hi
        alpha = self.dyn.prior_at(t)
        if has_prev.any():
            jp = prev[has_prev]
            m = self.fwd[jp].astype(np.float64)
            alpha[has_prev] = carry(self.dyn, m / m.sum(axis=1, keepdims=True), self.step[jp], t[has_prev], True)
        beta = np.ones_like(alpha)
        if has_next.any():
            jn = after[has_next]
            beta[has_next] = carry(self.dyn, self.bwd[jn].astype(np.float64), self.step[jn], t[has_next], False)
        w = alpha * beta
        return w / w.sum(axis=1, keepdims=True)

    def draw(self, t: int, ids: np.ndarray, seed: int) -> np.ndarray:
        w = self.posterior(np.full(len(ids), t), ids)
        u = hashed_uniforms(seed ^ _DRAW_SALT, 0, ids, 1)[:, 0]
        g = np.minimum((np.cumsum(w, axis=1) < u[:, None]).sum(axis=1), GRID_SIZE - 1)
        return P_GRID[g]

    def rollout(self, t: int, ids: np.ndarray, seed: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(ids, np.int64)
        _, first, after, _ = self.locate(np.full(len(ids), t), ids)
        found = after > first
        pos = np.minimum(first + (seed % np.maximum(after - first, 1)), max(self.log.rows - 1, 0))
        nc = np.where(found, self.nc[pos], 0).astype(np.int64)
        nr = np.where(found, self.nr[pos], 0).astype(np.int64)
        miss = ~found
        nc[miss] = draw_correct(seed, t, ids[miss], self.draw(t, ids[miss], seed), k)
        nr[miss] = k
        return nc, nr
