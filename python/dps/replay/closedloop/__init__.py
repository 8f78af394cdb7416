"""The closed loop: how training on a prompt moves it, fitted from a log (`fit`), and a world applying it (`world`)."""

from dps.replay.closedloop.fit import (
    EFFECT_HALF_LIVES,
    EFFECT_SATURATIONS,
    MAX_GAIN_SE,
    TrainingEffect,
    choose_shape,
    effect_curve,
    fit_training_effect,
    parse_half_life,
    parse_saturation,
    partial_trainings,
    trained_level,
)
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
    "TrainingEffect",
    "choose_shape",
    "closed_loop_world",
    "effect_curve",
    "fit_training_effect",
    "parse_half_life",
    "parse_saturation",
    "partial_trainings",
    "trained_level",
    "training_effect",
    "training_log",
    "training_rows",
]
