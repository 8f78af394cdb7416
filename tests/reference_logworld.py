"""The log world's message passes in numpy, rank by rank (a prompt's first row, its second, ...)
over all prompts at once: the implementation the Rust pass (rust/messages.rs) replaced, kept to
check it against."""

from __future__ import annotations

import numpy as np

from dps.replay.logworld import _FLOOR, GRID_SIZE, RowLog, Switching


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


def reference_pass(log: RowLog, dyn: Switching, forward: bool) -> np.ndarray:
    out = np.empty((log.rows, GRID_SIZE), log.dtype)
    emission = log.emission.astype(np.float32)
    for r, rows in enumerate(rank_orders(log, forward)):
        e = emission[log.emission_index[rows]]
        if r == 0:
            msg = dyn.prior_at(log.step[rows]).astype(np.float32) * e if forward else e.copy()
        else:
            nb = rows - 1 if forward else rows + 1
            m = out[nb].astype(np.float32)
            if forward:
                m /= m.sum(axis=1, keepdims=True)
            msg = RowLog._carry(dyn, m, log.step[nb], log.step[rows], forward)
            msg *= e
        msg /= msg.max(axis=1, keepdims=True)
        out[rows] = np.maximum(msg, np.float32(_FLOOR), out=msg)
    return out
