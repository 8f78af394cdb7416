"""Tasks generated and scored by reasoning-gym: graded arithmetic and Countdown."""

from __future__ import annotations

from typing import Any

import numpy as np

from dps.tasks.base import Example, SplitTask, split_disjoint


def _rg():
    try:
        import reasoning_gym
    except ImportError as e:  # pragma: no cover - the train extra installs it
        raise ImportError("this task needs reasoning-gym: pip install 'dps[train]'") from e
    return reasoning_gym


class _GymTask(SplitTask):
    """Keeps each example's reasoning-gym entry so that its own scorer judges answers."""

    _datasets: dict[str, Any]

    def check(self, example: Example, answer: str) -> bool:
        ds = self._datasets[example.meta["dataset"]]
        return float(ds.score_answer(answer, example.meta["entry"])) >= 1.0

    def validate(self) -> None:
        super().validate()
        for split, exs in (("train", self._train), ("test", self._test)):
            for ex in exs:
                if not self.check(ex, ex.answer):
                    raise ValueError(f"task {self.name!r}: {split} example {ex.id} fails its own verifier")


# (terms, digits) per difficulty level, easiest first.
DEFAULT_LEVELS: list[tuple[int, int]] = [(2, 1), (2, 2), (3, 1), (3, 2), (2, 3), (4, 2)]


class ArithmeticTask(_GymTask):
    """Sums and differences of integers at graded difficulty (reasoning-gym's ``chain_sum``).

    Level l has ``levels[l] = (terms, digits)``. Prompts are compact (``"12-7+40="``) when
    ``template="compact"`` (for tiny character-level models) or reasoning-gym's own question
    text (``template="question"``), possibly wrapped in a prompt template with ``{question}``.
    """

    name = "arithmetic"

    def __init__(
        self,
        n_train: int = 500,
        n_test: int = 200,
        n_warmup: int = 1000,
        levels: list[tuple[int, int]] | list[list[int]] | None = None,
        seed: int = 0,
        template: str = "compact",
        answer_format: str = "plain",
    ) -> None:
        rg = _rg()
        levels_t = [tuple(int(x) for x in lv) for lv in (levels or DEFAULT_LEVELS)]
        for lv in levels_t:
            if len(lv) != 2 or lv[0] < 2 or lv[1] < 1:
                raise ValueError(f"arithmetic level {lv!r}: expected [terms >= 2, digits >= 1]")
        if template not in ("compact", "question") and "{question}" not in template:
            raise ValueError(f"arithmetic template {template!r}: 'compact', 'question' or a string with {{question}}")
        self.answer_format = answer_format
        need = n_train + n_test + n_warmup
        per_level = max(64, 2 * need // len(levels_t) + 16)
        self._datasets: dict[str, Any] = {}
        items: list[tuple[str, str, dict[str, Any]]] = []
        for li, (terms, digits) in enumerate(levels_t):
            key = f"chain_sum-{li}"
            ds = rg.create_dataset(
                "chain_sum",
                size=per_level,
                seed=seed * 1000 + li,
                min_terms=terms,
                max_terms=terms,
                min_digits=digits,
                max_digits=digits,
            )
            self._datasets[key] = ds
            for i in range(per_level):
                entry = ds[i]
                expr = entry["metadata"]["expression"]
                if template == "compact":
                    prompt = expr.replace(" ", "") + "="
                elif template == "question":
                    prompt = entry["question"]
                else:
                    prompt = template.format(question=entry["question"])
                items.append((prompt, str(entry["answer"]), {"dataset": key, "entry": entry, "level": li}))
        order = np.random.default_rng(seed).permutation(len(items))
        items = [items[i] for i in order]
        self._train, self._test, self._warmup = split_disjoint(
            items, n_train, n_test, n_warmup, "arithmetic", stratum="level"
        )


class CountdownTask(_GymTask):
    """Countdown (the paper's planning task): reach the target with the given numbers.

    Generated and scored by reasoning-gym's ``countdown``. The compact template reads
    ``"3 19 9>13:"`` and expects an expression such as ``19+3-9``.
    """

    name = "countdown"

    def __init__(
        self,
        n_train: int = 500,
        n_test: int = 200,
        n_warmup: int = 1000,
        min_numbers: int = 3,
        max_numbers: int = 4,
        max_value: int = 20,
        min_target: int = 10,
        max_target: int = 100,
        seed: int = 0,
        template: str = "compact",
        answer_format: str = "plain",
    ) -> None:
        rg = _rg()
        self.answer_format = answer_format
        need = n_train + n_test + n_warmup
        size = int(need * 1.3) + 32
        try:
            ds = rg.create_dataset(
                "countdown",
                size=size,
                seed=seed,
                min_numbers=min_numbers,
                max_numbers=max_numbers,
                min_value=1,
                max_value=max_value,
                min_target=min_target,
                max_target=max_target,
            )
        except AssertionError as e:
            raise ValueError(f"countdown options: {e}") from e
        self._datasets = {"countdown": ds}
        items: list[tuple[str, str, dict[str, Any]]] = []
        for i in range(size):
            entry = ds[i]
            md = entry["metadata"]
            if template == "compact":
                prompt = " ".join(str(n) for n in md["numbers"]) + f">{md['target']}:"
            elif template == "question":
                prompt = entry["question"]
            else:
                prompt = template.format(question=entry["question"])
            answer = str(entry["answer"]).replace(" ", "") if template == "compact" else str(entry["answer"])
            items.append((prompt, answer, {"dataset": "countdown", "entry": entry}))
        self._train, self._test, self._warmup = split_disjoint(items, n_train, n_test, n_warmup, "countdown")
