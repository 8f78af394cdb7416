"""A chi-square goodness-of-fit check of sampled token counts against given probabilities."""

from __future__ import annotations

import math

import numpy as np


def chi2_pvalue(counts, probs, min_expected: float = 5.0) -> float:
    """p-value of Pearson's chi-square test; bins expected below `min_expected` are pooled.

    The chi-square tail uses the Wilson-Hilferty normal approximation (good to a few percent
    at the tens of degrees of freedom used here; no scipy needed).
    """
    counts = np.asarray(counts, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    probs = probs / probs.sum()
    expected = counts.sum() * probs
    big = expected >= min_expected
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    keep = exp > 0
    if (obs[~keep] > 0).any():
        return 0.0  # a token drawn that has probability zero
    obs, exp = obs[keep], exp[keep]
    stat = float(((obs - exp) ** 2 / exp).sum())
    df = len(obs) - 1
    z = ((stat / df) ** (1 / 3) - (1 - 2 / (9 * df))) / math.sqrt(2 / (9 * df))
    return 0.5 * math.erfc(z / math.sqrt(2))
