"""`geometry3k`: visual geometry problems from Parquet, in either layout people have them.

* **Geometry3k's own** (``hiyouga/geometry3k``): ``images`` (a list of images, each
  ``{bytes, path}``), ``problem`` (with ``<image>`` where the figure goes) and ``answer`` (LaTeX,
  such as ``2 \\sqrt { 221 }``). `instruction` is appended to the problem.
* **verl's preprocessed** (``examples/data_preprocess/geo3k.py``): ``prompt`` (chat messages, one
  user turn with ``<image>``; its instruction is already in it), ``images`` and
  ``reward_model.ground_truth``.

Every image is decoded and every reference answer parsed by math-verify when the task is built,
so a row with a missing or broken image, or an answer that does not parse, is one ValueError
naming the file and the row before any model work. Responses are judged by math-verify on their
last ``\\boxed{}``. A prompt's key is the content hash of its text, answer and image bytes.

`write_parquet` writes any task with images (such as `figures`) in either layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dps.tasks.base import IMAGE_PLACEHOLDER, Example, Task, content_key
from dps.tasks.data import DatasetTask, read_records
from dps.tasks.images import decode_image

DEFAULT_INSTRUCTION = "Put the final answer in \\boxed{}."
LAYOUTS = ("geometry3k", "verl")
DATA_SOURCE = "dps/figures"


def _layout(row: dict[str, Any]) -> str:
    if {"problem", "answer", "images"} <= row.keys():
        return "geometry3k"
    if {"prompt", "reward_model", "images"} <= row.keys():
        return "verl"
    columns = sorted(k for k in row if k != "__where__")
    raise ValueError(
        f"{row['__where__']}: neither Geometry3k's columns (images, problem, answer) nor verl's "
        f"(prompt, images, reward_model); the file has {columns}"
    )


def _user_text(prompt: Any, where: str) -> str:
    turns = [m for m in (prompt or []) if isinstance(m, dict) and m.get("role") == "user"]
    if len(turns) != 1 or not isinstance(turns[0].get("content"), str):
        raise ValueError(f"{where}: 'prompt' must hold one user message with text content")
    return turns[0]["content"]


def _image_bytes(image: Any, folder: Path, where: str, i: int) -> bytes:
    """An image cell's bytes: ``{bytes, path}`` (a path relative to the file's folder when the
    bytes are null) or raw bytes."""
    if isinstance(image, (bytes, bytearray)):
        return bytes(image)
    if isinstance(image, dict):
        if image.get("bytes"):
            return bytes(image["bytes"])
        if image.get("path"):
            path = Path(image["path"])
            path = path if path.is_absolute() else folder / path
            if path.exists():
                return path.read_bytes()
            raise ValueError(f"{where}: image {i} has no bytes and its file {path} does not exist")
    raise ValueError(f"{where}: image {i} is missing (no bytes and no path)")


def read_row(row: dict[str, Any], folder: Path, instruction: str) -> tuple[str, str, tuple[bytes, ...]]:
    """(prompt text, reference answer, image bytes) of one row, every image decoded to check it."""
    where = row["__where__"]
    if _layout(row) == "geometry3k":
        text, answer = row["problem"], row["answer"]
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{where}: 'problem' is empty")
        text = f"{text} {instruction}" if instruction else text
    else:
        text = _user_text(row["prompt"], where)
        answer = (row["reward_model"] or {}).get("ground_truth")
    if answer is None or not str(answer).strip():
        raise ValueError(f"{where}: the reference answer is empty")
    cells = row["images"] or []
    if not cells:
        raise ValueError(f"{where}: no image (the 'images' list is empty)")
    images = tuple(_image_bytes(cell, folder, where, i) for i, cell in enumerate(cells))
    for i, data in enumerate(images):
        try:
            decode_image(data)
        except ValueError as e:
            raise ValueError(f"{where}: image {i}: {e}") from None
    markers = text.count(IMAGE_PLACEHOLDER)
    if markers and markers != len(images):
        raise ValueError(f"{where}: {markers} {IMAGE_PLACEHOLDER} markers for {len(images)} images")
    return text, str(answer), images


class Geometry3kTask(DatasetTask):
    """Geometry3k (or any Parquet in its layout or verl's): prompts of text and images, ``\\boxed{}``
    answers checked by math-verify.

    ``test_path`` gives the held-out file; otherwise ``test_fraction`` of the rows (a seeded
    shuffle) is held out. Prompt ids follow the train rows' file order.
    """

    name = "geometry3k"

    def __init__(
        self,
        path: str | Path,
        test_path: str | Path | None = None,
        test_fraction: float = 0.1,
        instruction: str = DEFAULT_INSTRUCTION,
        seed: int = 0,
        max_train: int | None = None,
        max_test: int | None = None,
    ) -> None:
        if not 0.0 <= test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
        self.verifier, self.answer_format, self.path = "math", "boxed", str(path)
        rows = read_records(path)
        train_rows, test_rows = rows, []
        if test_path is not None:
            test_rows = read_records(test_path)
        elif test_fraction > 0:
            order = np.random.default_rng(seed).permutation(len(rows))
            held = set(order[: max(1, int(round(len(rows) * test_fraction)))].tolist())
            test_rows = [r for i, r in enumerate(rows) if i in held]
            train_rows = [r for i, r in enumerate(rows) if i not in held]
        self._train = self._read(train_rows[:max_train], Path(path).parent, instruction, "train")
        folder = Path(test_path).parent if test_path is not None else Path(path).parent
        self._test = self._read(test_rows[:max_test], folder, instruction, "test")
        self._gold: dict[tuple[str, int], Any] = {}
        for ex in self._train + self._test:  # every answer parsed now: a bad one is named before any model work
            if not self._gold_of(ex):
                raise ValueError(f"{ex.meta['where']}: the answer {ex.answer!r} does not parse as math (math-verify)")

    @staticmethod
    def _read(rows: list[dict[str, Any]], folder: Path, instruction: str, split: str) -> list[Example]:
        out = []
        for i, row in enumerate(rows):
            text, answer, images = read_row(row, folder, instruction)
            meta = {"split": split, "where": row["__where__"]}
            out.append(Example(i, content_key(text, answer, *images), text, answer, meta, images))
        return out


def write_parquet(task: Task, out: str | Path, layout: str = "geometry3k", instruction: str = DEFAULT_INSTRUCTION):
    """The task's train and test splits as ``OUT/train.parquet`` and ``OUT/test.parquet`` in
    Geometry3k's layout or verl's; returns the two paths. Answers are written as they are
    (plain numbers or LaTeX), the images as ``{bytes, path}``."""
    import polars as pl

    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for split, examples in (("train", task.train()), ("test", task.test())):
        if any(not ex.images for ex in examples):
            raise ValueError(f"task {task.name!r}: its {split} split has prompts without images")
        rows = [_row(ex, split, layout, instruction) for ex in examples]
        path = folder / f"{split}.parquet"
        pl.DataFrame(rows).write_parquet(path)
        paths.append(path)
    return paths


def _row(ex: Example, split: str, layout: str, instruction: str) -> dict[str, Any]:
    text = ex.prompt if IMAGE_PLACEHOLDER in ex.prompt else IMAGE_PLACEHOLDER * len(ex.images) + ex.prompt
    images = [{"bytes": data, "path": f"{split}-{ex.id}-{i}.png"} for i, data in enumerate(ex.images)]
    if layout == "geometry3k":
        return {"images": images, "problem": text, "answer": ex.answer}
    return {
        "data_source": DATA_SOURCE,
        "prompt": [{"role": "user", "content": f"{text} {instruction}" if instruction else text}],
        "images": images,
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": ex.answer},
        "extra_info": {"split": split, "index": ex.id, "answer": ex.answer, "question": text},
    }
