"""The `Task` interface: prompts with stable ids, a binary verifier, an optional format bonus.

A task has three disjoint splits of `Example`s:

* ``train``: the prompts a selection policy chooses from; ``Example.id`` is the prompt id the
  policy sees (0..N-1, stable across runs with the same task options);
* ``test``: held-out prompts, never trained on, for accuracy curves;
* ``warmup``: reference (prompt, answer) pairs for the optional supervised warm-up that teaches
  a fresh model the answer format. Generated tasks draw it apart from train and test.

A prompt is text and zero or more images (``Example.images``, encoded image files such as PNG);
``<image>`` in the text marks where each image goes (``Example.chat_content``).

Correctness is binary and is what the policies see (``verify``). A format bonus
(``format_score`` in [0, 1]) may be added to the reward by the trainer, but it never changes
correctness, so it never turns a wrong group into a "partially solved" one.
"""

from __future__ import annotations

import abc
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

ANSWER_FORMATS = ("plain", "boxed", "tag", "first_int")
#: Where an image goes in a prompt's text (Geometry3k's and verl's marker).
IMAGE_PLACEHOLDER = "<image>"
_VERIFIER_ATTRIBUTE = "_dps_bounded_verifier"  # where dps.tasks.bounded keeps a task's worker


@dataclass(frozen=True)
class Example:
    id: int  # index inside its split: the prompt id of the train split
    key: str  # stable string key (content hash or the dataset's own id)
    prompt: str  # the text given to the model
    answer: str  # the reference answer (verifier input and warm-up target)
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    images: tuple[bytes, ...] = field(default=(), repr=False)  # encoded image files (PNG, JPEG, ...), in order

    def chat_content(self) -> list[dict[str, str]]:
        """The prompt as a chat turn's parts (``{"type": "text", "text": ...}``, ``{"type":
        "image"}``): each image where an ``<image>`` marker stands, or all of them first when
        the text has no marker."""
        if not self.images:
            return [{"type": "text", "text": self.prompt}]
        pieces = self.prompt.split(IMAGE_PLACEHOLDER)
        if len(pieces) == 1:
            pieces = [""] * len(self.images) + pieces
        elif len(pieces) - 1 != len(self.images):
            raise ValueError(
                f"prompt {self.id}: {len(pieces) - 1} {IMAGE_PLACEHOLDER} markers for {len(self.images)} images"
            )
        parts: list[dict[str, str]] = []
        for i, text in enumerate(pieces):
            if i:
                parts.append({"type": "image"})
            if text.strip():
                parts.append({"type": "text", "text": text})
        return parts

    def without_images(self) -> Example:
        """The same example without its image bytes (what a verifier needs)."""
        return replace(self, images=()) if self.images else self


def content_key(*parts: str | bytes) -> str:
    """A stable 16-hex-digit key of text and bytes (a prompt, its answer, its images)."""
    h = hashlib.sha1()
    for i, part in enumerate(parts):
        if i:
            h.update(b"\x1f")
        h.update(part.encode() if isinstance(part, str) else hashlib.sha1(part).digest())
    return h.hexdigest()[:16]


_BOXED = "\\boxed{"


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} in `text`, braces balanced; None if there is none."""
    start = text.rfind(_BOXED)
    if start < 0:
        return None
    i = start + len(_BOXED)
    depth = 1
    for j in range(i, len(text)):
        c = text[j]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[i:j]
    return None


_TAG = re.compile(r"<answer>(.*?)</answer>", re.S)
_INT = re.compile(r"-?\d+")


def extract_answer(response: str, fmt: str) -> str | None:
    """The answer part of a response in the given format, or None when the format is not met."""
    if fmt == "plain":
        s = response.strip()
        return s if s else None
    if fmt == "boxed":
        return last_boxed(response)
    if fmt == "tag":
        found = _TAG.findall(response)
        return found[-1].strip() if found else None
    if fmt == "first_int":  # the first integer anywhere in the response ("The answer is 14.")
        m = _INT.search(response)
        return m.group() if m else None
    raise ValueError(f"unknown answer format {fmt!r}; expected one of {ANSWER_FORMATS}")


def wrap_answer(answer: str, fmt: str) -> str:
    """A reference response carrying `answer` in the given format (the warm-up target)."""
    if fmt == "plain":
        return answer
    if fmt == "boxed":
        return f"\\boxed{{{answer}}}"
    if fmt == "tag":
        return f"<answer>{answer}</answer>"
    if fmt == "first_int":
        return f" {answer}."
    raise ValueError(f"unknown answer format {fmt!r}; expected one of {ANSWER_FORMATS}")


class Task(abc.ABC):
    """A verifiable task. Subclass it for your own."""

    name: str = "task"
    answer_format: str = "plain"
    response_prefix: str = ""  # prefilled start of every answer (the model continues it)
    verify_timeout_s: float = 5.0  # `verify`'s limit per response; 0: in-process, unbounded

    @abc.abstractmethod
    def train(self) -> list[Example]: ...

    @abc.abstractmethod
    def test(self) -> list[Example]: ...

    def warmup(self) -> list[Example]:
        """Examples for the supervised warm-up; by default the train split."""
        return self.train()

    @abc.abstractmethod
    def check(self, example: Example, answer: str) -> bool:
        """Is the extracted `answer` correct for `example`?"""

    def verify(self, example: Example, response: str, *, timeout_s: float | None = None) -> bool:
        """Binary correctness of a whole response, judged within a time limit.

        The check runs in a worker process (`dps.tasks.bounded`, one per task, started on first
        use); a response whose check takes longer than ``timeout_s`` (default
        ``verify_timeout_s``, 5 s) counts as wrong, so an answer such as ``9**9**9`` cannot hang
        the caller (a reward function, say). ``timeout_s=0`` checks in-process, without a limit:
        only for tasks known to be safe."""
        limit = self.verify_timeout_s if timeout_s is None else float(timeout_s)
        if limit < 0:
            raise ValueError(f"timeout_s must be >= 0 (0: in-process, no limit), got {limit}")
        if limit == 0:
            return self.verify_in_process(example, response)
        from dps.tasks.bounded import shared_verifier

        return shared_verifier(self, limit).verify([(example, response)])[0]

    def verify_in_process(self, example: Example, response: str) -> bool:
        """`verify` in the calling process, with no time limit (what the bounded worker runs)."""
        ans = extract_answer(response, self.answer_format)
        if ans is None:
            return False
        try:
            return bool(self.check(example, ans))
        except Exception:  # a verifier must never take the trainer down on odd output
            return False

    def __getstate__(self) -> dict[str, Any]:
        """The task without its verifier worker (`verify`'s), which cannot be pickled."""
        state = dict(self.__dict__)
        state.pop(_VERIFIER_ATTRIBUTE, None)
        return state

    def format_score(self, example: Example, response: str) -> float:
        """1.0 when the response carries an answer in the expected format, else 0.0."""
        return 0.0 if extract_answer(response, self.answer_format) is None else 1.0

    def reference_response(self, example: Example) -> str:
        return wrap_answer(example.answer, self.answer_format)

    def validate(self) -> None:
        """Raise ValueError naming the first bad example (e.g. a reference that fails its own check)."""
        for split, examples in (("train", self.train()), ("test", self.test())):
            if not examples:
                raise ValueError(f"task {self.name!r}: the {split} split is empty")
            ids = [e.id for e in examples]
            if ids != list(range(len(examples))):
                raise ValueError(f"task {self.name!r}: {split} ids must be 0..{len(examples) - 1} in order")

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "train": len(self.train()), "test": len(self.test())}


class SplitTask(Task):
    """A task that builds its splits once, in its constructor (the built-in tasks)."""

    _train: list[Example]
    _test: list[Example]
    _warmup: list[Example] = []

    def train(self) -> list[Example]:
        return self._train

    def test(self) -> list[Example]:
        return self._test

    def warmup(self) -> list[Example]:
        return self._warmup or self._train


#: A generated prompt before it is split: (prompt, answer, meta) or (prompt, answer, meta, images).
Item = tuple[str, str, dict[str, Any]] | tuple[str, str, dict[str, Any], tuple[bytes, ...]]


def split_disjoint(
    items: Sequence[Item],
    n_train: int,
    n_test: int,
    n_warmup: int,
    what: str,
    stratum: str | None = None,
) -> tuple[list[Example], list[Example], list[Example]]:
    """Dedupe (prompt, answer, meta[, images]) items by prompt text and images, and cut them into
    three disjoint splits. An example's key is the content hash of its prompt, answer and images.

    With `stratum` (a meta key such as ``"level"``), the test split takes the strata in turn
    (as many of each as it can), so a stratum with few distinct prompts is not left out of it;
    train and warm-up take the rest in order.
    """
    seen: set[tuple[str, tuple[bytes, ...]]] = set()
    unique: list[tuple[str, str, dict[str, Any], tuple[bytes, ...]]] = []
    for item in items:
        prompt, answer, meta = item[0], item[1], item[2]
        images: tuple[bytes, ...] = item[3] if len(item) > 3 else ()
        if (prompt, images) in seen:
            continue
        seen.add((prompt, images))
        unique.append((prompt, answer, meta, images))
    need = n_train + n_test + n_warmup
    if len(unique) < need:
        raise ValueError(
            f"{what}: only {len(unique)} distinct prompts for {n_train} train + {n_test} test + "
            f"{n_warmup} warm-up; lower the sizes or widen the difficulty range"
        )
    test_idx = _balanced_pick([u[2] for u in unique], n_test, stratum) if stratum else list(range(n_test))
    taken = set(test_idx)
    rest = [i for i in range(len(unique)) if i not in taken]
    parts = (rest[:n_train], test_idx, rest[n_train : n_train + n_warmup])

    def example(j: int, i: int) -> Example:
        prompt, answer, meta, images = unique[i]
        return Example(j, content_key(prompt, answer, *images), prompt, answer, meta, images)

    out = [[example(j, i) for j, i in enumerate(part)] for part in parts]
    return out[0], out[1], out[2]


def _balanced_pick(metas: list[dict[str, Any]], n: int, stratum: str) -> list[int]:
    """n indices taking each stratum in turn (in order of first appearance), each in item order."""
    by: dict[Any, list[int]] = {}
    for i, meta in enumerate(metas):
        by.setdefault(meta.get(stratum), []).append(i)
    queues = list(by.values())
    picked: list[int] = []
    depth = 0
    while len(picked) < n:
        for q in queues:
            if depth < len(q) and len(picked) < n:
                picked.append(q[depth])
        depth += 1
    return sorted(picked)
