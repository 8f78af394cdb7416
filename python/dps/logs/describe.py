"""What a log holds, in numbers and in words: `dps validate`'s report."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from dps.logs.schema import LoadedLog, _pl
from dps.outcomes import SPREAD_TOL, partial_share

if TYPE_CHECKING:
    import polars as pl


def describe(df: pl.DataFrame, num_prompts: int | None = None) -> dict[str, Any]:
    """Facts about a per-group log, for `dps validate`.

    coverage: share of the (logged step x prompt) cells that hold at least one group, over the
    steps the log has and its `num_prompts` prompts (default: those it names).
    """
    pl = _pl()
    c, n = df["n_correct"].to_numpy(), df["n_rollouts"].to_numpy()
    steps = int(df["step"].n_unique())
    prompts = int(df["prompt_id"].n_unique())
    cells = df.select(pl.struct("step", "prompt_id").n_unique()).item()
    pair_counts = df.group_by("step", "prompt_id").len()
    repeated = pair_counts.filter(pl.col("len") > 1)
    facts: dict[str, Any] = {
        "groups": df.height,
        "steps": steps,
        "step_range": (int(df["step"].min()), int(df["step"].max())),  # type: ignore[arg-type]
        "prompts": prompts,
        "max_prompt_id": int(df["prompt_id"].max()),  # type: ignore[arg-type]
        "rollouts": int(n.sum()),
        "accuracy": float(c.sum() / n.sum()),
        "partial_share": partial_share(c, n),
        "coverage": float(cells / (steps * (num_prompts or prompts))),
        "repeated_pairs": repeated.height,
        "repeated_rows": int(repeated["len"].sum()) - repeated.height if repeated.height else 0,
        "group_sizes": dict(sorted(zip(*np.unique(n, return_counts=True), strict=True))),
        "kinds": {},
    }
    if {"reward_mean", "reward_std"} <= set(df.columns):
        facts["rewards"] = reward_facts(df["reward_mean"].to_numpy(), df["reward_std"].to_numpy())
    if "kind" in df.columns:
        facts["repeated_within_kind"] = df.group_by("step", "prompt_id", "kind").len().filter(pl.col("len") > 1).height
        for kind, part in df.group_by("kind", maintain_order=True):
            pc, pn = part["n_correct"].to_numpy(), part["n_rollouts"].to_numpy()
            facts["kinds"][str(kind[0])] = {
                "groups": part.height,
                "steps": int(part["step"].n_unique()),
                "step_range": (int(part["step"].min()), int(part["step"].max())),  # type: ignore[arg-type]
                "prompts": int(part["prompt_id"].n_unique()),
                "partial_share": partial_share(pc, pn),
            }
    return facts


def reward_facts(mean: np.ndarray, std: np.ndarray) -> dict[str, Any]:
    """What a log's graded groups hold: the range of their mean rewards, how many have every
    reward equal (and of those, how many at a reward other than 0 or 1), and the share effective
    by spread (docs/method.md#graded-rewards)."""
    equal = std <= SPREAD_TOL
    return {
        "mean_range": (float(mean.min()), float(mean.max())),
        "all_equal": int(equal.sum()),
        "all_equal_not_0_1": int((equal & (mean != 0) & (mean != 1)).sum()),
        "effective_share": float((~equal).mean()),
    }


def _key_text(keys: pl.Series, i: int) -> str:
    v = keys[i]
    s = repr(v) if isinstance(v, str) else str(v)
    return s if len(s) <= 40 else s[:37] + "...'"


#: The most group sizes `dps validate` lists one by one.
LISTED_SIZES = 6


def group_size_lines(sizes: dict[int, int], layout: str) -> list[str]:
    """How many responses the groups hold; in a per-response log, a word on groups of a multiple
    of the usual size (one (step, prompt)'s responses logged twice merge into one group)."""
    if len(sizes) == 1:
        return [f"  responses per group: {next(iter(sizes))}"]
    common = max(sizes, key=lambda k: sizes[k])
    if len(sizes) <= LISTED_SIZES:
        listed = ", ".join(f"{k} ({c:,} group{'s' if c != 1 else ''})" for k, c in sizes.items())
    else:
        listed = f"{min(sizes)} to {max(sizes)} ({len(sizes)} sizes), most often {common} ({sizes[common]:,} groups)"
    lines = [f"  responses per group: {listed}"]
    multiples = sum(c for k, c in sizes.items() if k > common and k % common == 0)
    if layout == "response" and multiples:
        lines.append(
            f"  note: {multiples:,} group(s) hold a multiple of the usual {common} responses: the responses of one "
            "(step, prompt) logged twice, or rolled out in two rounds, merge into one group; a column that tells "
            "them apart (a round or a generation id), given as --group-by COLUMN, keeps them apart"
        )
    return lines


def reward_lines(source: str | None, facts: dict[str, Any] | None, groups: int) -> list[str]:
    """`dps validate`'s lines on the graded rewards a log carries (none for counts alone)."""
    if source is None or facts is None:
        return []
    lo, hi = facts["mean_range"]
    return [
        f"  rewards: {source}; group means {lo:g}..{hi:g}; {facts['all_equal']:,} of {groups:,} groups with every "
        f"reward equal ({facts['all_equal_not_0_1']:,} of them at a reward other than 0 or 1), effective by spread "
        f'{facts["effective_share"]:.3f}; a replay\'s policies observe them with [world] rewards = "graded"'
    ]


def explain(log: LoadedLog) -> str:
    """A few lines on what was read and how: `dps validate`'s report."""
    info, keys = log.info, log.keys
    d = describe(log.groups, info.num_prompts)
    layout = "one row per (step, prompt) group" if info.layout == "group" else "one row per response, grouped"
    files = f" ({info.files} files)" if info.files > 1 else ""
    renamed = [f"{name} <- {col}" for name, col in info.columns.items() if name != col]
    lines = [
        f"{info.path}: ok. {info.format}{files}, {info.rows:,} rows, {layout}"
        + (f"; columns mapped: {', '.join(renamed)}" if renamed else ""),
    ]
    n = info.num_prompts
    span = f"{_key_text(keys, 0)} .. {_key_text(keys, n - 1)}" if n else "-"
    how = {
        "identity": "already 0..N-1, kept as they are",
        "dense": f"mapped to dense ids 0..{n - 1} in sorted order (the user's id is kept as prompt_key)",
        "index": f"taken as dataset indices 0..{n - 1} (ids never logged are prompts the log knows nothing about)",
    }[info.id_mapping]
    lines.append(f"  prompt ids: {info.id_type}, {n:,} distinct ({span}); {how}")
    lines.append(
        f"  steps: {d['step_range'][0]}..{d['step_range'][1]}, {d['steps']} distinct, as logged (not shifted or padded)"
    )
    lines.append(
        f"  correct: {info.correctness}" + ("" if info.threshold is None else f" (threshold {info.threshold:g})")
    )
    lines += reward_lines(info.rewards, d.get("rewards"), d["groups"])
    for kind, k in d["kinds"].items():
        lines.append(
            f"  kind {kind!r}: {k['groups']:,} groups, steps {k['step_range'][0]}..{k['step_range'][1]} "
            f"({k['steps']} distinct), "
            f"{k['prompts']:,} prompts, partially solved {k['partial_share']:.3f}"
        )
    if info.kinds is not None:
        lines.append(f"  kept only kind(s): {', '.join(info.kinds)}")
    lines += group_size_lines(d["group_sizes"], info.layout)
    if d["repeated_pairs"]:
        within = d.get("repeated_within_kind")
        note = "" if within is None else f"; {within:,} of them within one kind"
        lines.append(
            f"  repeated groups: {d['repeated_pairs']:,} (step, prompt) pairs appear more than once "
            f"({d['repeated_rows']:,} extra rows{note}); each is kept as its own group"
        )
    else:
        lines.append("  repeated groups: none")
    lines.append(
        f"  {d['groups']:,} groups, {d['rollouts']:,} rollouts, accuracy {d['accuracy']:.3f}, "
        f"partially solved {d['partial_share']:.3f}, coverage {d['coverage']:.3f} of logged steps x prompts"
    )
    return "\n".join(lines)
