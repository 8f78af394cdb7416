"""Verifiable tasks for the trainer: the `Task` interface and the built-in tasks."""

from __future__ import annotations

from typing import Any

from dps.tasks.base import IMAGE_PLACEHOLDER, Example, SplitTask, Task, extract_answer, last_boxed, wrap_answer
from dps.tasks.data import BoxedMathTask, DatasetTask
from dps.tasks.figures import FiguresTask
from dps.tasks.geometry3k import Geometry3kTask
from dps.tasks.gym import ArithmeticTask, CountdownTask
from dps.tasks.questions import QuestionArithmeticTask

TASKS: dict[str, type[Task]] = {
    "arithmetic": ArithmeticTask,
    "countdown": CountdownTask,
    "math": BoxedMathTask,
    "dataset": DatasetTask,
    "arithmetic-qa": QuestionArithmeticTask,
    "figures": FiguresTask,
    "geometry3k": Geometry3kTask,
}


def make_task(name: str, **options: Any) -> Task:
    """Build a built-in task by name; unknown names or options raise ValueError."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; expected one of {sorted(TASKS)}")
    cls = TASKS[name]
    try:
        return cls(**options)
    except TypeError as e:
        raise ValueError(f"task {name!r}: {e}") from e


__all__ = [
    "Example",
    "Task",
    "SplitTask",
    "TASKS",
    "make_task",
    "extract_answer",
    "last_boxed",
    "wrap_answer",
    "ArithmeticTask",
    "CountdownTask",
    "QuestionArithmeticTask",
    "BoxedMathTask",
    "DatasetTask",
    "FiguresTask",
    "Geometry3kTask",
    "IMAGE_PLACEHOLDER",
]
