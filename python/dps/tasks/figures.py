"""`figures`: visual geometry drawn locally with Pillow, at graded difficulty, whose answers need
the picture (the question text is the same for every prompt of a level).

Levels (``levels``, easiest first by default), each ``KIND`` or ``KIND:LOW-HIGH``:

* ``sides:3-6``: a filled regular polygon with 3 to 6 sides, turned, sized, placed and coloured
  at random; "How many sides does the polygon have?";
* ``angle-sum:3-6``: the same polygons; the sum of their interior angles, (n - 2) x 180;
* ``triangle``: a triangle with two of its angles written at their corners; the third angle;
* ``hypotenuse``: a right triangle with its legs' lengths written beside them (Pythagorean
  triples); the hypotenuse.

Telling 3 from 4 sides is easy for a tiny vision tower at 56 x 56 pixels, 5 from 6 harder and 7
from 8 harder still; reading the written numbers needs a real VLM. So one task holds prompts a
model solves, partly solves and fails, as GRPO's selection needs. Images are drawn at four times
their size and scaled down (anti-aliased), stored as PNG; prompts are deduplicated by their
image, split disjointly (the test split takes the levels in turn) and keyed by a content hash.
`dps figures DIR` writes the task as Geometry3k-layout Parquet (`dps.tasks.geometry3k`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from dps.tasks.base import ANSWER_FORMATS, Example, Item, SplitTask, split_disjoint
from dps.tasks.images import encode_png

SCALE = 4  # drawn at SCALE x the image size, then scaled down
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#ff7f0e", "#17becf"]
QUESTIONS = {
    "sides": "How many sides does the polygon have?",
    "angle-sum": "What is the sum of the interior angles of the polygon, in degrees?",
    "triangle": "Two angles of the triangle are marked. What is the third angle, in degrees?",
    "hypotenuse": "The legs of the right triangle are marked. How long is the hypotenuse?",
}
POLYGON_KINDS = ("sides", "angle-sum")
DEFAULT_LEVELS = ["sides:3-4", "sides:3-6", "angle-sum:3-6", "sides:3-8", "triangle", "hypotenuse"]
# Legs and hypotenuse of the right triangles of `hypotenuse`.
TRIPLES = [(3, 4, 5), (6, 8, 10), (5, 12, 13), (9, 12, 15), (8, 15, 17), (12, 16, 20), (7, 24, 25), (20, 21, 29)]


@dataclass(frozen=True)
class Level:
    kind: str
    low: int = 3  # sides, for the polygon kinds
    high: int = 6

    @classmethod
    def parse(cls, spec: str) -> Level:
        kind, _, span = str(spec).partition(":")
        if kind not in QUESTIONS:
            raise ValueError(f"figures level {spec!r}: unknown kind {kind!r}; expected one of {sorted(QUESTIONS)}")
        if kind not in POLYGON_KINDS:
            if span:
                raise ValueError(f"figures level {spec!r}: {kind} takes no range")
            return cls(kind, 0, 0)
        try:
            low, high = (int(x) for x in span.split("-")) if span else (3, 6)
        except ValueError:
            raise ValueError(f"figures level {spec!r}: expected {kind}:LOW-HIGH, e.g. {kind}:3-6") from None
        if not 3 <= low <= high <= 12:
            raise ValueError(f"figures level {spec!r}: sides must satisfy 3 <= LOW <= HIGH <= 12")
        return cls(kind, low, high)


def _font(px: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=px)
    except TypeError:  # Pillow < 10.1 or no FreeType: the fixed bitmap font
        return ImageFont.load_default()


class _Canvas:
    """A white square drawn at SCALE x `size`, handed back at `size` (anti-aliased)."""

    def __init__(self, size: int) -> None:
        from PIL import Image, ImageDraw

        self.size, self.big = size, size * SCALE
        self.image = Image.new("RGB", (self.big, self.big), "white")
        self.draw = ImageDraw.Draw(self.image)

    def text(self, xy: tuple[float, float], text: str) -> None:
        self.draw.text(xy, text, fill="black", font=_font(int(self.big * 0.16)), anchor="mm")

    def done(self) -> bytes:
        from PIL import Image

        return encode_png(self.image.resize((self.size, self.size), Image.Resampling.LANCZOS))


def _polygon(rng: np.random.Generator, size: int, n: int, jitter: bool) -> bytes:
    """A filled regular n-gon, turned at random; with `jitter` also sized, placed and coloured
    at random (else centred, one colour, its size in a narrow band)."""
    c = _Canvas(size)
    radius = rng.uniform(0.28, 0.44) * c.big if jitter else rng.uniform(0.36, 0.42) * c.big
    room = c.big / 2 - radius - 0.03 * c.big if jitter else 0.0
    cx, cy = c.big / 2 + rng.uniform(-room, room, size=2)
    colour = PALETTE[int(rng.integers(len(PALETTE)))] if jitter else PALETTE[0]
    c.draw.regular_polygon((float(cx), float(cy), float(radius)), n, rotation=float(rng.uniform(0, 360)), fill=colour)
    return c.done()


def _fit(points: list[tuple[float, float]], big: int, margin: float) -> list[tuple[float, float]]:
    """Points scaled and centred into the square [margin, big - margin]^2."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    span = max(max(xs) - min(xs), max(ys) - min(ys))
    k = (big - 2 * margin) / span
    ox = (big - k * (max(xs) - min(xs))) / 2 - k * min(xs)
    oy = (big - k * (max(ys) - min(ys))) / 2 - k * min(ys)
    return [(ox + k * x, oy + k * y) for x, y in points]


def _triangle(rng: np.random.Generator, size: int) -> tuple[bytes, int]:
    while True:
        a, b = (int(x) for x in rng.integers(6, 21, size=2) * 5)  # 30..100 degrees
        if 180 - a - b >= 25:
            break
    # base from (0, 0) to (1, 0); the apex where the rays at angles a and b meet (y down)
    ta, tb = math.tan(math.radians(a)), math.tan(math.radians(b))
    x = tb / (ta + tb)
    pts = _fit([(0.0, 0.0), (1.0, 0.0), (x, -x * ta)], size * SCALE, 0.12 * size * SCALE)
    if rng.integers(2):  # mirrored
        pts = [(size * SCALE - px, py) for px, py in pts]
    c = _Canvas(size)
    c.draw.polygon(pts, outline="black", width=SCALE * 2)
    for i, value in enumerate((a, b)):
        c.text(_inside_corner(pts, i, 0.2 * c.big), str(value))
    return c.done(), 180 - a - b


def _inside_corner(pts: list[tuple[float, float]], i: int, depth: float) -> tuple[float, float]:
    """The point `depth` from corner i along its angle's bisector (inside the triangle)."""
    (px, py), others = pts[i], [pts[j] for j in range(3) if j != i]
    units = []
    for qx, qy in others:
        d = math.hypot(qx - px, qy - py)
        units.append(((qx - px) / d, (qy - py) / d))
    bx, by = units[0][0] + units[1][0], units[0][1] + units[1][1]
    norm = math.hypot(bx, by)
    return px + depth * bx / norm, py + depth * by / norm


def _hypotenuse(rng: np.random.Generator, size: int) -> tuple[bytes, int]:
    legs_a, legs_b, hyp = TRIPLES[int(rng.integers(len(TRIPLES)))]
    if rng.integers(2):
        legs_a, legs_b = legs_b, legs_a
    big = size * SCALE
    pts = _fit([(0.0, 0.0), (0.0, float(legs_a)), (float(legs_b), float(legs_a))], big, 0.2 * big)
    c = _Canvas(size)
    c.draw.polygon(pts, outline="black", width=SCALE * 2)
    (x0, y0), (x1, y1), (x2, y2) = pts
    mark = 0.08 * big
    c.draw.rectangle((x1, y1 - mark, x1 + mark, y1), outline="black", width=SCALE)
    c.text((x0 - 0.1 * big, (y0 + y1) / 2), str(legs_a))
    c.text(((x1 + x2) / 2, y1 + 0.1 * big), str(legs_b))
    return c.done(), hyp


def draw(level: Level, rng: np.random.Generator, size: int, jitter: bool = True) -> tuple[bytes, int, dict[str, Any]]:
    """One figure of `level`: (PNG bytes, answer, what was drawn)."""
    if level.kind in POLYGON_KINDS:
        n = int(rng.integers(level.low, level.high + 1))
        answer = n if level.kind == "sides" else (n - 2) * 180
        return _polygon(rng, size, n, jitter), answer, {"sides": n}
    if level.kind == "triangle":
        png, answer = _triangle(rng, size)
        return png, answer, {}
    png, answer = _hypotenuse(rng, size)
    return png, answer, {}


def parse_number(text: str) -> float | None:
    """A number with an optional degree sign (``540``, ``540°``, ``540^\\circ``, `` 540 degrees``)."""
    s = text.strip().replace(" ", "")
    for unit in ("^{\\circ}", "^\\circ", "°", "degrees", "degree"):
        s = s.removesuffix(unit)
    try:
        return float(s)
    except ValueError:
        return None


class FiguresTask(SplitTask):
    """Visual geometry drawn with Pillow (see the module's docstring for the levels).

    ``meta["level"]`` is a prompt's level index in `levels`; every prompt has one image, which
    the question's answer needs. ``jitter=False`` draws the polygons centred, in one colour and
    nearly one size (only turned): less for a tiny vision tower to learn to ignore.
    """

    name = "figures"

    def __init__(
        self,
        n_train: int = 512,
        n_test: int = 128,
        n_warmup: int = 1024,
        levels: list[str] | None = None,
        image_size: int = 56,
        seed: int = 0,
        answer_format: str = "boxed",
        jitter: bool = True,
    ) -> None:
        if answer_format not in ANSWER_FORMATS:
            raise ValueError(f"unknown answer_format {answer_format!r}; expected one of {ANSWER_FORMATS}")
        if not 28 <= image_size <= 1024:
            raise ValueError(f"figures image_size {image_size}: expected 28 to 1024 pixels")
        self.answer_format = answer_format
        self.levels = [Level.parse(spec) for spec in (levels or DEFAULT_LEVELS)]
        if not self.levels:
            raise ValueError("figures: levels is empty")
        need = n_train + n_test + n_warmup
        per_level = need // len(self.levels) + 16
        items: list[Item] = []
        for li, level in enumerate(self.levels):
            rng = np.random.default_rng([seed, li])
            for _ in range(per_level + need // 8):  # a few more than needed: duplicates are dropped
                png, answer, drawn = draw(level, rng, image_size, jitter)
                items.append((QUESTIONS[level.kind], str(answer), {"level": li, **drawn}, (png,)))
        order = np.random.default_rng(seed).permutation(len(items))
        self._train, self._test, self._warmup = split_disjoint(
            [items[i] for i in order], n_train, n_test, n_warmup, "figures", stratum="level"
        )

    def check(self, example: Example, answer: str) -> bool:
        value = parse_number(answer)
        return value is not None and abs(value - float(example.answer)) < 1e-6

    def validate(self) -> None:
        super().validate()
        for split, exs in (("train", self._train), ("test", self._test)):
            for ex in exs:
                if not self.check(ex, ex.answer):
                    raise ValueError(f"task figures: {split} example {ex.id} fails its own verifier")
