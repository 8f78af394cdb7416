"""Tasks from data: a user's Parquet/JSONL file of (prompt, answer), and \\boxed{} math.

Verifiers:
* ``"math"``: math-verify compares the extracted answer with the reference symbolically;
  every reference answer must parse, checked up front (``validate``);
* ``"numeric"``: both parse as numbers and agree to 1e-6 (relative);
* ``"exact"``: equal after stripping whitespace and case-folding.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from dps.tasks.base import ANSWER_FORMATS, Example, SplitTask, content_key

VERIFIERS = ("math", "numeric", "exact")


def _math_verify():
    try:
        import math_verify
    except ImportError as e:  # pragma: no cover - the train extra installs it
        raise ImportError("the 'math' verifier needs math-verify: pip install 'dps[train]'") from e
    return math_verify


def parse_math(text: str) -> list[Any]:
    """math-verify's parse without its raw-string fallback: [] when nothing mathematical parses.

    LaTeX (a backslash or a brace in the text: ``2 \\sqrt { 221 }``) is parsed as math mode
    first, since math-verify's plain-text reading of it takes one number (``221``); other text is
    parsed plainly first (``9**9**9`` stays a power)."""
    mv = _math_verify()
    tries = [f"${text}$", text] if ("\\" in text or "{" in text) and "$" not in text else [text, f"${text}$"]
    for attempt in tries:
        parsed = mv.parse(attempt, fallback_mode="no_fallback")
        if parsed:
            return parsed
    return []


def _number(text: str) -> float:
    return float(text.strip().replace(",", ""))


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a .parquet, .jsonl or .json(-lines) file as dicts, each with ``"__where__"``: how
    an error names it (``file.jsonl line 41``, ``file.parquet row 40``)."""
    import polars as pl

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"dataset file {p} does not exist")
    suffix = p.suffix.lower()
    try:
        if suffix == ".parquet":
            df = pl.read_parquet(p)
        elif suffix in (".jsonl", ".json", ".ndjson"):
            df = pl.read_ndjson(p)
        else:
            raise ValueError(f"dataset file {p}: expected .parquet or .jsonl, got {suffix!r}")
    except (pl.exceptions.PolarsError, OSError) as e:
        raise ValueError(f"dataset file {p}: cannot be read ({e})") from e
    rows = df.to_dicts()
    if suffix == ".parquet":
        places = [f"{p} row {i}" for i in range(len(rows))]
    else:  # JSON lines: the line number, blank lines counted as an editor counts them
        with open(p, "rb") as f:
            lines = [n for n, line in enumerate(f, start=1) if line.strip()]
        places = (
            [f"{p} line {n}" for n in lines]
            if len(lines) == len(rows)
            else [f"{p} record {i + 1}" for i in range(len(rows))]
        )
    for r, where in zip(rows, places, strict=True):
        r["__where__"] = where
    return rows


class DatasetTask(SplitTask):
    """A user's dataset: one row per prompt with a reference answer.

    ``test_path`` gives a separate held-out file; otherwise ``test_fraction`` of the rows
    (a seeded shuffle) is held out. Prompt ids follow the file order of the train rows, so they
    are stable for a fixed file and seed. ``prompt_template`` may wrap the prompt
    (``"{prompt}"`` placeholder).
    """

    name = "dataset"

    def __init__(
        self,
        path: str | Path,
        test_path: str | Path | None = None,
        test_fraction: float = 0.1,
        prompt_field: str = "prompt",
        answer_field: str = "answer",
        id_field: str | None = None,
        verifier: str = "math",
        answer_format: str = "boxed",
        prompt_template: str = "{prompt}",
        seed: int = 0,
        max_train: int | None = None,
        max_test: int | None = None,
    ) -> None:
        if verifier not in VERIFIERS:
            raise ValueError(f"unknown verifier {verifier!r}; expected one of {VERIFIERS}")
        if answer_format not in ANSWER_FORMATS:
            raise ValueError(f"unknown answer_format {answer_format!r}; expected one of {ANSWER_FORMATS}")
        if "{prompt}" not in prompt_template:
            raise ValueError("prompt_template must contain '{prompt}'")
        if not 0.0 <= test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
        self.verifier = verifier
        self.answer_format = answer_format
        self.path = str(path)
        rows = read_records(path)
        train_rows, test_rows = rows, []
        if test_path is not None:
            test_rows = read_records(test_path)
        elif test_fraction > 0:
            order = np.random.default_rng(seed).permutation(len(rows))
            n_test = max(1, int(round(len(rows) * test_fraction)))
            held = set(order[:n_test].tolist())
            test_rows = [r for i, r in enumerate(rows) if i in held]
            train_rows = [r for i, r in enumerate(rows) if i not in held]
        if max_train is not None:
            train_rows = train_rows[:max_train]
        if max_test is not None:
            test_rows = test_rows[:max_test]
        self._train = self._examples(train_rows, prompt_field, answer_field, id_field, prompt_template, "train")
        self._test = self._examples(test_rows, prompt_field, answer_field, id_field, prompt_template, "test")
        self._gold: dict[tuple[str, int], Any] = {}

    def _examples(self, rows, pf, af, idf, template, split) -> list[Example]:
        out = []
        for i, r in enumerate(rows):
            where = r["__where__"]
            for col in (pf, af):
                if col not in r:
                    columns = sorted(k for k in r if k != "__where__")
                    raise ValueError(f"{where} ({split} prompt {i}): no {col!r} column (columns: {columns})")
                if r[col] is None or str(r[col]).strip() == "":
                    raise ValueError(f"{where} ({split} prompt {i}): {col!r} is empty")
            prompt, answer = template.format(prompt=str(r[pf])), str(r[af])
            key = str(r[idf]) if idf and r.get(idf) is not None else content_key(prompt, answer)
            out.append(Example(i, key, prompt, answer, {"split": split, "where": where}))
        return out

    def _gold_of(self, example: Example) -> Any:
        k = (example.meta.get("split", "train"), example.id)
        if k not in self._gold:
            self._gold[k] = parse_math(example.answer)
        return self._gold[k]

    def check(self, example: Example, answer: str) -> bool:
        if self.verifier == "exact":
            return " ".join(answer.split()).casefold() == " ".join(example.answer.split()).casefold()
        if self.verifier == "numeric":
            try:
                a, b = _number(answer), _number(example.answer)
            except ValueError:
                return False
            return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
        mv = _math_verify()
        pred = parse_math(answer)
        return bool(pred) and bool(mv.verify(self._gold_of(example), pred))

    def validate(self) -> None:
        super().validate()
        for split, exs in (("train", self._train), ("test", self._test)):
            for ex in exs:
                if self.verifier == "numeric":
                    try:
                        _number(ex.answer)
                    except ValueError:
                        raise ValueError(
                            f"{ex.meta['where']} ({split} prompt {ex.id}): answer {ex.answer!r} is not a number"
                        ) from None
                elif self.verifier == "math" and not self._gold_of(ex):
                    raise ValueError(
                        f"{ex.meta['where']} ({split} prompt {ex.id}): answer {ex.answer!r} does not parse as math "
                        "(use verifier = 'exact' for non-mathematical answers)"
                    )


class BoxedMathTask(DatasetTask):
    """Math with \\boxed{} answers checked by math-verify.

    From a file (``path``), or, with ``path=None``, generated by a reasoning-gym dataset
    (``gym_dataset``, e.g. ``"basic_arithmetic"``) so that it runs with no data at hand.
    """

    name = "math"

    def __init__(
        self,
        path: str | Path | None = None,
        gym_dataset: str = "basic_arithmetic",
        n_train: int = 500,
        n_test: int = 100,
        prompt_template: str = "{prompt}\nPut the final answer in \\boxed{{}}.",
        seed: int = 0,
        **kw: Any,
    ) -> None:
        if path is None:
            import tempfile

            import polars as pl
            import reasoning_gym as rg

            ds = rg.create_dataset(gym_dataset, size=n_train + n_test, seed=seed)
            rows = [{"prompt": ds[i]["question"], "answer": str(ds[i]["answer"])} for i in range(n_train + n_test)]
            tmp = Path(tempfile.mkdtemp(prefix="dps-math-")) / f"{gym_dataset}.jsonl"
            pl.DataFrame(rows).write_ndjson(tmp)
            path = tmp
            kw.setdefault("test_fraction", n_test / (n_train + n_test))
        super().__init__(path, prompt_template=prompt_template, verifier="math", answer_format="boxed", seed=seed, **kw)
