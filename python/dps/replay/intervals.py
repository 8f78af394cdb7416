"""90% intervals of a sweep's numbers: what one more replay would give, and what that rests on.

A closed-loop policy with interval replays (each with its own seed and an effect drawn from what
the log allows: seed noise, the fitted gain's uncertainty and the shapes the log cannot tell
apart) gets the interval of those replays: `prediction_interval`. Every other policy gets one
from its seeds alone (the replay noise; in a log world without a closed loop, not how far the
open loop itself is off): a normal prediction interval for one more seed, `seed_interval`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import polars as pl

#: The interval's level: a replay of the same scenario falls inside it this often.
INTERVAL_LEVEL = 0.9


@dataclass(frozen=True)
class Interval:
    """Where one more replay falls with probability INTERVAL_LEVEL (NaN where nothing says)."""

    lo: float
    hi: float


@dataclass(frozen=True)
class PolicyIntervals:
    """A policy's intervals of its effective ratio and its rollouts, and what they come from."""

    effective_ratio: Interval
    rollouts: Interval
    #: the closed loop's interval replays they come from; 0: from the policy's seeds alone
    draws: int = 0

    @property
    def source(self) -> str:
        """What they come from, as summary.csv's interval_from says it."""
        return f"closed loop, {self.draws} draws" if self.draws else "seeds"

    def columns(self) -> dict[str, float]:
        """COLUMN_lo / COLUMN_hi of each interval, as summary.csv holds them."""
        out = {}
        for name in INTERVAL_COLUMNS:
            interval: Interval = getattr(self, name)
            out[f"{name}_lo"], out[f"{name}_hi"] = interval.lo, interval.hi
        return out


#: The numbers that get an interval (fields of PolicyIntervals, columns of a sweep's summary).
INTERVAL_COLUMNS = ("effective_ratio", "rollouts")


def policy_intervals(summary: pl.DataFrame, draws: pl.DataFrame | None) -> dict[str, PolicyIntervals]:
    """Each policy's intervals (in the summary's order): from its interval replays in `draws` where
    it has any (`prediction_interval`), else from its seeds' rows of `summary` (`seed_interval`)."""
    by_draws: dict[str, pl.DataFrame] = {}
    if draws is not None:
        by_draws = {str(p[0]): d for p, d in draws.group_by("policy")}
    out = {}
    for (policy,), rows in summary.group_by("policy", maintain_order=True):
        d = by_draws.get(str(policy))
        if d is not None:
            bounds = {c: prediction_interval(d[c].to_numpy().astype(np.float64)) for c in INTERVAL_COLUMNS}
        else:
            bounds = {c: seed_interval(rows[c].to_numpy().astype(np.float64)) for c in INTERVAL_COLUMNS}
        intervals = {c: Interval(*bounds[c]) for c in INTERVAL_COLUMNS}
        out[str(policy)] = PolicyIntervals(**intervals, draws=d.height if d is not None else 0)
    return out


def with_intervals(summary: pl.DataFrame, intervals: dict[str, PolicyIntervals]) -> pl.DataFrame:
    """`summary` with every row's policy's COLUMN_lo / COLUMN_hi and interval_from (summary.csv's columns)."""
    import polars as pl

    if not intervals:
        return summary
    first = next(iter(intervals.values()))
    policy = pl.col("policy")
    bounds = [
        policy.replace_strict({p: i.columns()[name] for p, i in intervals.items()}, return_dtype=pl.Float64).alias(name)
        for name in first.columns()
    ]
    source = policy.replace_strict({p: i.source for p, i in intervals.items()}, return_dtype=pl.String)
    return summary.with_columns(*bounds, source.alias("interval_from"))


def prediction_interval(values: np.ndarray, level: float = INTERVAL_LEVEL) -> tuple[float, float]:
    """The order statistics (k, n + 1 - k) of n draws: a new draw falls between them with probability
    (n + 1 - 2k) / (n + 1), k the largest that keeps this at `level` (k = 1, the range, below 19 draws)."""
    x = np.sort(values[np.isfinite(values)])
    n = len(x)
    if n == 0:
        return float("nan"), float("nan")
    k = max(1, int(math.floor((n + 1) * (1 - level) / 2)))
    return float(x[k - 1]), float(x[n - k])


def seed_interval(values: np.ndarray, level: float = INTERVAL_LEVEL) -> tuple[float, float]:
    """mean +- t sd sqrt(1 + 1/n): where one more seed's replay falls with probability `level` (NaN from one seed)."""
    x = values[np.isfinite(values)]
    n = len(x)
    if n < 2:
        return float("nan"), float("nan")
    half = _t_quantile(0.5 + level / 2, n - 1) * float(np.std(x, ddof=1)) * math.sqrt(1 + 1 / n)
    m = float(np.mean(x))
    return m - half, m + half


def _t_quantile(q: float, df: int) -> float:
    """Student's t quantile by bisection on its CDF (regularised incomplete beta by continued fraction)."""
    lo, hi = 0.0, 1e3
    for _ in range(200):
        mid = (lo + hi) / 2
        if _t_cdf(mid, df) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _t_cdf(t: float, df: int) -> float:
    x = df / (df + t * t)
    return 1.0 - 0.5 * _betainc(df / 2, 0.5, x)


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) (Lentz's continued fraction)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x > (a + 1) / (a + b + 2):
        return 1.0 - _betainc(b, a, 1 - x)
    f, c, d = 1.0, 1.0, 0.0
    for i in range(400):
        m = i // 2
        if i == 0:
            num = 1.0
        elif i % 2 == 0:
            num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        else:
            num = -((a + m) * (a + b + m) * x) / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > 1e-300 else 1e-300)
        c = 1.0 + num / (c if abs(c) > 1e-300 else 1e-300)
        f *= c * d
        if abs(1.0 - c * d) < 1e-12:
            break
    return front * (f - 1.0) / a
