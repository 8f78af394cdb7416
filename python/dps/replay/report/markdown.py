"""The report's words: report.md, and the summary `dps replay` prints, from the sweep's typed results."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from dps.replay.closedloop.effect import count_label
from dps.replay.runner import lag_words

if TYPE_CHECKING:
    import polars as pl

    from dps.replay.calibration import Calibration
    from dps.replay.closedloop import TrainingEffect
    from dps.replay.intervals import PolicyIntervals
    from dps.replay.sweep import SweepResult, WorldFacts

#: What the table's columns mean, said under the intervals.
COLUMNS_EXPLAINED = (
    "Mean over seeds (± standard deviation where shown). `effective ratio`: share of the trained batch "
    "whose group was partially solved; `rollouts`: every generated response, rejected groups included; "
    "`count CV`: coefficient of variation of per-prompt sample counts; `pred`: the predictive policy's "
    "argmax prediction against the observed state, over the selected groups; `Brier`, `ECE`: its predicted "
    "probability that a selected group is partially solved against whether it was (ECE over 10 equal-width bins; "
    "reliability.csv and reliability.png hold the bins)."
)


def report(result: SweepResult, table: str, images: list[tuple[str, str]]) -> str:
    """report.md: the scenario, the world, the closed loop and the intervals in words, the table, the
    log world's calibration and the `images` written ((alt text, file name), in order)."""
    sc, world = result.scenario, result.world
    steps = int(result.steps["step"].to_numpy().max()) + 1
    md = [f"# Replay report: {sc.name}", ""]
    if sc.description:
        md += [sc.description, ""]
    md += [
        f"World: {world.kind} with {world.num_prompts} prompts, k = {world.k}; "
        f"{steps} steps of batch {sc.batch_size}; seeds {sc.seeds}; {lag_words(sc.lag)}; "
        f"sweep wall time {result.wall_s:.1f} s.",
        "",
        *closed_loop_lines(world),
        *interval_lines(result.intervals, world),
        COLUMNS_EXPLAINED,
        "",
        table,
        "",
    ]
    if result.calibration is not None:
        md += calibration_section(result.calibration)
    for alt, name in images:
        md += [f"![{alt}]({name})", ""]
    return "\n".join(md)


def console_summary(result: SweepResult, agg: pl.DataFrame) -> str:
    """What `dps replay` prints: the table, then the closed loop and the intervals in words."""
    from dps.replay.report.tables import markdown_table

    lines = [*closed_loop_lines(result.world), *interval_lines(result.intervals, result.world)]
    return "\n\n".join([markdown_table(agg, result.intervals), *filter(None, lines)])


def _logits(v: float) -> str:
    return "inf" if math.isinf(v) else f"{v:.3f}"


def _steps(half_life: float) -> str:
    return "inf" if math.isinf(half_life) else f"{half_life}"


def closed_loop_lines(world: WorldFacts) -> list[str]:
    """The closed loop's effect in words (none without a closed loop)."""
    e = world.effect
    if e is None:
        return []
    return [
        f"Closed loop fitted from the log: a prompt's first trained, partially solved group moves it by "
        f"{e.first_training():+.4f} logits (the effect's initial rate {e.gain:+.4f} per training, standard error "
        f"{e.gain_se:.4f}; at most {_logits(e.most())} logits in all; half-life {_steps(e.half_life)} steps), minus "
        f'the log run\'s own trainings. Rows named "(open loop)" replay the same log without it.',
        "",
        f"Effect of repeated trainings: {shape_sentence(e)}.",
        "",
    ]


def interval_lines(intervals: dict[str, PolicyIntervals], world: WorldFacts) -> list[str]:
    """What the 90% intervals hold, and, in words, what the log could not tell."""
    if not intervals:
        return []
    drawn = next((i for i in intervals.values() if i.draws), None)
    if drawn is not None:
        lines = [
            f"90% intervals: where one more replay falls 9 times in 10. Closed-loop rows: from {drawn.draws} "
            "replays, each with its own seed and an effect drawn from what the log allows (a shape by its weight, "
            "the gain from its standard error): seed noise, the fit's uncertainty and the shapes the log cannot tell "
            "apart. Other rows: from their seeds alone (replay noise only; an open-loop row's interval says nothing "
            "of how far the open loop is off). Neither holds the log world's own error, nor what the log cannot show "
            "at all: how the prompts a policy leaves untrained would have moved under it."
        ]
    else:
        lines = [
            "90% intervals: from the seeds alone (where one more seed's replay falls 9 times in 10; replay noise only)."
        ]
    lines.append("")
    if drawn is not None and world.effect is not None and world.effect.candidates:
        lines += [identification_sentence(world.effect), ""]
    return lines


def identification_sentence(effect: TrainingEffect) -> str:
    """Whether the log pinned the closed loop down, in words (weights of the shapes it cannot rule out)."""
    weights = effect.shape_weights()
    kept = {c: x for c, x in weights.items() if x >= 0.01}
    top = max(weights.values()) if weights else 1.0
    how = (
        f"A training counts for every prompt with the same {effect.spillover} (similar_by)"
        if effect.spillover
        else "Each prompt's trainings count for it alone (no similar_by)"
    )
    drift_by = effect.drift_by
    how += f"; the drift is fitted per {drift_by} (drift_by)." if drift_by else "; one drift for all prompts."
    shapes = ", ".join(f"saturation {c}: {x:.2f}" for c, x in kept.items())
    if top >= 0.9:
        verdict = (
            f"The log identifies how the effect of repeated trainings levels off ({shapes}); the interval is narrow "
            "because the log pins the effect down, not because the effect is small."
        )
    else:
        verdict = (
            f"The log cannot tell how the effect of repeated trainings levels off: the shapes it allows ({shapes}) "
            "predict different futures for a policy that trains some prompts far more often than the log did, and the "
            "interval is wide because of it. More evidence would narrow it: sweeps of every prompt, prompts logged "
            "under several ids (similar_by), or a longer log."
        )
    return (
        f"{how} {verdict} The log's groups vary {effect.dispersion:.2f} times as much as binomial noise around the "
        "fit (its likelihoods are divided by that), and the gain's standard error counts each unit of prompts "
        "sharing trainings once, however many rows it holds."
    )


def shape_sentence(effect: TrainingEffect) -> str:
    """How the effect of a prompt's n-th training shrinks, and why this shape (see closedloop.fit.choose_shape)."""
    saturation = count_label(effect.saturation)
    shape = (
        "linear: every training adds the same"
        if math.isinf(effect.saturation)
        else f"saturating after about {saturation} trainings"
    )
    scores = {count_label(c): v for c, v in effect.shape_scores.items()}
    if effect.shape_reason == "given" or not scores:
        return f"shape {shape}, as given"
    default = count_label(effect.shape_default)
    best = max(scores, key=scores.__getitem__)
    ref = scores.get(default, 0.0)
    lik = ", ".join(f"{c}: {v - ref:+.1f}" for c, v in scores.items())
    margin = round(effect.shape_margin(), 2)
    why = (
        f"the log prefers it over the default, saturation at the log's own {default} trainings per prompt, "
        f"by more than BIC's margin of {margin}"
        if effect.shape_reason == "fitted"
        else f"the default, saturation at the log's own {default} trainings per prompt: the log cannot tell the shapes "
        f"apart (the best, saturation {best}, beats it by less than BIC's margin of {margin}); "
        f'[world] effect_saturation = "linear" replays the other end, an effect that never saturates'
    )
    return f"shape {shape}; {why}; log-likelihood by saturation count, relative to the default: {lik}"


def calibration_section(cal: Calibration) -> list[str]:
    from dps.replay.calibration import markdown

    return [
        "## How well the log world predicts its own log",
        "",
        "Each logged group predicted with its (step, prompt) cell held out (calibration.csv, calibration.json): "
        + cal.line()
        + ". Trust a replay of this log about as far as the predicted and observed columns agree.",
        "",
        *([cal.population[0].upper() + cal.population[1:] + ".", ""] if cal.population else []),
        markdown(cal),
        "",
    ]
