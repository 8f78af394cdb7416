"""Arithmetic asked as a question, for a real instruct model: "What is 18 + 8? Reply with only the
final number.", the answer prefilled with "The answer is", rewarded on the first integer of
the continuation.

The format of the real SmolLM2-135M-Instruct run in ``../shared/data/smollm2-arith-lr1e6`` (which
started at accuracy 0.17 with half of its groups partly solved and learned to 0.75). Generated
here with numpy alone, so it runs where reasoning-gym is not installed (a bare GPU machine).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from dps.tasks.base import Example, SplitTask, split_disjoint

# name -> (operator, [(low, high) inclusive range of each operand]); easiest first, as in the
# real run's eight levels.
QUESTION_LEVELS: dict[str, tuple[str, list[tuple[int, int]]]] = {
    "add-1d": ("+", [(1, 9), (1, 9)]),
    "mul-1d": ("*", [(2, 9), (2, 9)]),
    "add-teen-1d": ("+", [(10, 19), (1, 9)]),
    "sub-teen-1d": ("-", [(10, 19), (1, 9)]),
    "add-10to30": ("+", [(10, 30), (10, 30)]),
    "mul-1d-by-10to12": ("*", [(2, 9), (10, 12)]),
    "add-three-1d": ("+", [(1, 9), (1, 9), (1, 9)]),
    "add-20to99": ("+", [(20, 99), (20, 99)]),
}
QUESTION = "What is {expr}? Reply with only the final number."
PREFIX = "The answer is"


def _level_pool(op: str, ranges: list[tuple[int, int]]) -> list[tuple[str, str]]:
    pool = []
    for operands in itertools.product(*[range(lo, hi + 1) for lo, hi in ranges]):
        expr = f" {op} ".join(str(x) for x in operands)
        pool.append((expr, str(eval(expr))))  # noqa: S307 - our own digits and operators only
    return pool


class QuestionArithmeticTask(SplitTask):
    """Graded arithmetic questions (levels of `QUESTION_LEVELS`, all by default).

    Prompts are drawn round-robin over the levels, distinct within and across the splits; a
    level whose pool runs out (``mul-1d`` has 64 prompts) leaves its share to the others.
    ``meta["level"]`` is the level's index in `levels`.
    """

    name = "arithmetic-qa"
    answer_format = "first_int"

    def __init__(
        self,
        n_train: int = 1024,
        n_test: int = 256,
        n_warmup: int = 0,
        levels: list[str] | None = None,
        seed: int = 0,
        question: str = QUESTION,
        response_prefix: str = PREFIX,
    ) -> None:
        names = list(levels) if levels is not None else list(QUESTION_LEVELS)
        unknown = [n for n in names if n not in QUESTION_LEVELS]
        if unknown or not names:
            raise ValueError(f"arithmetic-qa levels {unknown or names!r}: expected names from {list(QUESTION_LEVELS)}")
        if "{expr}" not in question:
            raise ValueError("arithmetic-qa question must contain '{expr}'")
        self.levels = names
        self.response_prefix = response_prefix
        rng = np.random.default_rng(seed)
        pools = []
        for name in names:
            pool = _level_pool(*QUESTION_LEVELS[name])
            pools.append([pool[i] for i in rng.permutation(len(pool))])
        items: list[tuple[str, str, dict[str, Any]]] = []
        seen: set[str] = set()  # "25 + 21" is in two levels: keep its first
        for row in itertools.zip_longest(*pools):
            for li, item in enumerate(row):
                if item is not None and item[0] not in seen:
                    expr, answer = item
                    seen.add(expr)
                    items.append((question.format(expr=expr), answer, {"level": li, "expr": expr}))
        need = n_train + n_test + n_warmup
        items = items[:need]
        items = [items[i] for i in rng.permutation(len(items))]
        self._train, self._test, self._warmup = split_disjoint(items, n_train, n_test, n_warmup, "arithmetic-qa")

    def check(self, example: Example, answer: str) -> bool:
        digits = answer.lstrip("-")
        if len(digits) > 30:  # no answer here is that long; never hand int() a huge string
            return False
        return int(answer) == int(example.answer)
