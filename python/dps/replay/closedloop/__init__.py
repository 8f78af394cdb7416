"""The closed loop: how training on a prompt moves it (`effect`), fitted from a log (`fit`, by the GLM
solver of `glm`), and a world applying it (`world`)."""

from dps.replay.closedloop.effect import (
    TrainingEffect,
    count_label,
    decay_per_step,
    effect_curve,
    parse_half_life,
    parse_saturation,
    partial_trainings,
    trained_level,
)
from dps.replay.closedloop.fit import (
    EFFECT_HALF_LIVES,
    EFFECT_SATURATIONS,
    MAX_GAIN_SE,
    DriftCells,
    choose_shape,
    drift_cells,
    fit_training_effect,
)
from dps.replay.closedloop.glm import LogisticFit, Rows, fit_logistic
from dps.replay.closedloop.world import (
    CLOSED_LOOP_KEYS,
    ClosedLoopSettings,
    ClosedLoopWorld,
    closed_loop_world,
    training_effect,
    training_log,
    training_rows,
)

__all__ = [
    "CLOSED_LOOP_KEYS",
    "EFFECT_HALF_LIVES",
    "EFFECT_SATURATIONS",
    "MAX_GAIN_SE",
    "ClosedLoopSettings",
    "ClosedLoopWorld",
    "DriftCells",
    "LogisticFit",
    "Rows",
    "TrainingEffect",
    "choose_shape",
    "count_label",
    "decay_per_step",
    "drift_cells",
    "closed_loop_world",
    "effect_curve",
    "fit_logistic",
    "fit_training_effect",
    "parse_half_life",
    "parse_saturation",
    "partial_trainings",
    "trained_level",
    "training_effect",
    "training_log",
    "training_rows",
]
