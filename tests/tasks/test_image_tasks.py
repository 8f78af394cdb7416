"""Prompts with images: the figures task, the geometry3k reader (both layouts), and figures
written as Geometry3k-layout Parquet and read back."""

from __future__ import annotations

import io
from importlib.util import find_spec

import pytest

from dps.tasks import Example, FiguresTask, Geometry3kTask, make_task
from dps.tasks.figures import Level, parse_number
from dps.tasks.geometry3k import write_parquet
from dps.tasks.images import decode_image, encode_png

NEEDS_MATH_VERIFY = pytest.mark.skipif(find_spec("math_verify") is None, reason="geometry3k needs math-verify")


def _png(colour: str = "white", size: int = 24) -> bytes:
    from PIL import Image

    return encode_png(Image.new("RGB", (size, size), colour))


def test_a_text_prompt_is_unchanged_and_images_go_where_the_marker_stands():
    text = Example(0, "k", "What is 2+2?", "4")
    assert text.images == () and text.chat_content() == [{"type": "text", "text": "What is 2+2?"}]
    first = Example(0, "k", "Find x.", "4", images=(b"a", b"b"))
    assert first.chat_content() == [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Find x."}]
    marked = Example(0, "k", "In <image> find x.", "4", images=(b"a",))
    assert marked.chat_content() == [
        {"type": "text", "text": "In "},
        {"type": "image"},
        {"type": "text", "text": " find x."},
    ]
    with pytest.raises(ValueError, match="2 <image> markers for 1 images"):
        Example(0, "k", "<image><image>", "4", images=(b"a",)).chat_content()
    assert marked.without_images().images == () and marked.without_images().prompt == marked.prompt
    assert "images" not in repr(marked) or "b'a'" not in repr(marked)


def test_figures_splits_are_stable_disjoint_graded_and_need_the_picture():
    levels = ["sides:3-4", "sides:3-6", "angle-sum:3-6"]
    a = FiguresTask(n_train=60, n_test=24, n_warmup=30, levels=levels, seed=2)
    b = FiguresTask(n_train=60, n_test=24, n_warmup=30, levels=levels, seed=2)
    assert [e.key for e in a.train()] == [e.key for e in b.train()]
    assert [e.images for e in a.test()] == [e.images for e in b.test()]
    assert [e.id for e in a.train()] == list(range(60))
    keys = [{e.key for e in split} for split in (a.train(), a.test(), a.warmup())]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    assert sorted({e.meta["level"] for e in a.test()}) == [0, 1, 2]  # the test split takes the levels in turn
    a.validate()
    # the text is the same for every prompt of a level, the answers are not: they need the image
    for level in range(3):
        exs = [e for e in a.train() if e.meta["level"] == level]
        assert len({e.prompt for e in exs}) == 1 and len({e.answer for e in exs}) > 1
    for ex in a.train():
        assert len(ex.images) == 1 and decode_image(ex.images[0]).size == (56, 56)
        sides = ex.meta["sides"]
        assert ex.answer == (str(sides) if ex.meta["level"] < 2 else str((sides - 2) * 180))
    other = FiguresTask(n_train=60, n_test=24, n_warmup=30, levels=levels, seed=3)
    assert {e.key for e in other.train()} != keys[0]


def test_figures_without_jitter_draws_centred_polygons_in_one_colour():
    """jitter=False: every polygon filled with the first colour, its centre at the image's centre,
    and still distinct figures (turned at random) in disjoint splits."""
    import numpy as np

    from dps.tasks.figures import PALETTE

    task = FiguresTask(n_train=40, n_test=16, n_warmup=16, levels=["sides:3-6"], jitter=False, seed=1)
    keys = [{e.key for e in split} for split in (task.train(), task.test(), task.warmup())]
    assert len(keys[0]) == 40 and not (keys[0] & keys[1]) and not (keys[0] & keys[2])
    fill = tuple(int(PALETTE[0][i : i + 2], 16) for i in (1, 3, 5))
    for ex in task.train():
        px = np.asarray(decode_image(ex.images[0]).convert("RGB")).astype(int)
        inside = np.abs(px - fill).sum(axis=2) < 60
        ys, xs = np.nonzero(inside)
        assert inside.sum() > 200, "the polygon is not in the first colour"
        assert abs(ys.mean() - 27.5) < 4 and abs(xs.mean() - 27.5) < 4, "the polygon is not centred"
    jittered = FiguresTask(n_train=40, n_test=16, n_warmup=16, levels=["sides:3-6"], seed=1)
    assert {e.key for e in jittered.train()} != keys[0]


def test_figures_verifier_and_formats():
    t = FiguresTask(n_train=8, n_test=4, n_warmup=0, levels=["angle-sum:5-5"])
    ex = t.train()[0]
    assert ex.answer == "540"
    assert t.verify(ex, "\\boxed{540}") and t.verify(ex, "so \\boxed{540^\\circ}") and t.verify(ex, "\\boxed{540°}")
    assert not t.verify(ex, "540") and not t.verify(ex, "\\boxed{541}") and not t.verify(ex, "\\boxed{}")
    assert t.reference_response(ex) == "\\boxed{540}"
    plain = FiguresTask(n_train=8, n_test=4, n_warmup=0, levels=["sides:3-3"], answer_format="plain")
    assert plain.verify(plain.train()[0], " 3 ") and not plain.verify(plain.train()[0], "three")
    assert parse_number("7 degrees") == 7.0 and parse_number("x") is None


def test_figures_text_levels_and_bad_options():
    t = FiguresTask(n_train=6, n_test=4, n_warmup=0, levels=["triangle", "hypotenuse"], image_size=112)
    t.validate()
    for ex in t.train() + t.test():
        answer = int(ex.answer)
        assert (25 <= answer <= 120) if ex.meta["level"] == 0 else answer in (5, 10, 13, 15, 17, 20, 25, 29)
    assert Level.parse("sides:3-8") == Level("sides", 3, 8)
    for bad, match in (
        ("circles", "unknown kind"),
        ("sides:2-5", "3 <= LOW"),
        ("sides:x", "LOW-HIGH"),
        ("triangle:3-4", "no range"),
    ):
        with pytest.raises(ValueError, match=match):
            FiguresTask(n_train=4, n_test=2, n_warmup=0, levels=[bad])
    with pytest.raises(ValueError, match="image_size"):
        FiguresTask(image_size=8)
    assert isinstance(make_task("figures", n_train=4, n_test=2, n_warmup=0), FiguresTask)


# ---------------------------------------------------------------- geometry3k
ANSWERS = ["2 \\sqrt { 221 }", "\\frac { 40 } { 3 }", "8.5", "60", "45"]


def _original_rows():
    colours = ["white", "red", "green", "blue", "black"]
    return [
        {"images": [{"bytes": _png(c), "path": f"{i}.png"}], "problem": f"<image>Find x in figure {i}.", "answer": a}
        for i, (c, a) in enumerate(zip(colours, ANSWERS, strict=True))
    ]


def _write(path, rows):
    import polars as pl

    pl.DataFrame(rows).write_parquet(path)
    return path


@NEEDS_MATH_VERIFY
def test_geometry3k_original_layout_written_by_hand(tmp_path):
    path = _write(tmp_path / "train.parquet", _original_rows())
    t = Geometry3kTask(path, test_path=path, instruction="Put the final answer in \\boxed{}.")
    t.validate()
    assert len(t.train()) == 5 and t.name == "geometry3k"
    ex = t.train()[0]
    assert ex.prompt == "<image>Find x in figure 0. Put the final answer in \\boxed{}."
    assert ex.chat_content()[0] == {"type": "image"} and decode_image(ex.images[0]).size == (24, 24)
    assert t.verify(ex, "thus \\boxed{2\\sqrt{221}}") and t.verify(ex, "\\boxed{\\sqrt{884}}")
    assert not t.verify(ex, "\\boxed{221}") and not t.verify(ex, "\\boxed{2}") and not t.verify(ex, "2\\sqrt{221}")
    assert t.verify(t.train()[1], "\\boxed{40/3}") and t.verify(t.train()[2], "\\boxed{8.50}")
    # stable content-hash keys: text, answer and image bytes
    again = Geometry3kTask(path, test_path=path, instruction="Put the final answer in \\boxed{}.")
    assert [e.key for e in again.train()] == [e.key for e in t.train()]
    rows = _original_rows()
    rows[0]["images"] = [{"bytes": _png("yellow"), "path": None}]
    changed = Geometry3kTask(_write(tmp_path / "other.parquet", rows), test_path=path)
    assert changed.train()[0].key != t.train()[0].key and changed.train()[1].key == t.train()[1].key
    # a held-out fraction when there is no test file, disjoint from train
    split = Geometry3kTask(path, test_fraction=0.4, seed=1)
    assert len(split.train()) == 3 and len(split.test()) == 2
    assert not {e.key for e in split.train()} & {e.key for e in split.test()}


@NEEDS_MATH_VERIFY
def test_geometry3k_verl_layout_and_path_only_images(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(_png("red"))
    rows = [
        {
            "data_source": "hiyouga/geometry3k",
            "prompt": [{"role": "user", "content": f"<image>Find y {i}. Answer in \\boxed{{}}."}],
            "images": [{"bytes": None, "path": "img/a.png"}],
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": a},
            "extra_info": {"index": i},
        }
        for i, a in enumerate(ANSWERS)
    ]
    path = _write(tmp_path / "verl.parquet", rows)
    t = Geometry3kTask(path, test_path=path)
    ex = t.train()[0]
    assert ex.prompt == "<image>Find y 0. Answer in \\boxed{}." and ex.answer == ANSWERS[0]
    assert ex.images == (_png("red"),)
    assert t.verify(t.train()[3], "\\boxed{60}")


@NEEDS_MATH_VERIFY
def test_geometry3k_bad_rows_are_named_with_file_and_row(tmp_path):
    cases = {
        "broken": ({"images": [{"bytes": b"\x89PNG", "path": "x.png"}]}, "row 2: image 0: the image does not decode"),
        "missing": ({"images": []}, "row 2: no image"),
        "nothing": ({"images": [{"bytes": None, "path": None}]}, "row 2: image 0 is missing"),
        "gone": ({"images": [{"bytes": None, "path": "nowhere.png"}]}, "row 2: image 0 has no bytes and its file"),
        "answer": ({"answer": "@@@ ???"}, "row 2: the answer '@@@ \\?\\?\\?' does not parse"),
        "markers": ({"problem": "<image> and <image>"}, "row 2: 2 <image> markers for 1 images"),
    }
    for name, (change, match) in cases.items():
        rows = _original_rows()
        rows[2].update(change)
        path = _write(tmp_path / f"{name}.parquet", rows)
        with pytest.raises(ValueError, match=f"{name}.parquet {match}"):
            Geometry3kTask(path, test_path=path)
    path = _write(tmp_path / "cols.parquet", [{"question": "x", "solution": "1"}])
    with pytest.raises(ValueError, match="neither Geometry3k's columns"):
        Geometry3kTask(path, test_path=path)


@NEEDS_MATH_VERIFY
@pytest.mark.parametrize("layout", ["geometry3k", "verl"])
def test_figures_written_as_parquet_read_by_geometry3k(tmp_path, layout):
    figures = FiguresTask(n_train=30, n_test=10, n_warmup=0, levels=["sides:3-6", "angle-sum:3-6"], seed=1)
    train, test = write_parquet(figures, tmp_path, layout)
    read = Geometry3kTask(train, test_path=test)
    read.validate()
    for mine, theirs in ((figures.train(), read.train()), (figures.test(), read.test())):
        assert [e.answer for e in theirs] == [e.answer for e in mine]
        assert [e.images for e in theirs] == [e.images for e in mine]
        assert all(e.prompt.startswith("<image>") and "\\boxed{}" in e.prompt for e in theirs)
    ex = read.test()[0]
    assert read.verify(ex, f"\\boxed{{{ex.answer}}}") and not read.verify(ex, "\\boxed{1000}")
    import polars as pl

    columns = set(pl.read_parquet(train).columns)
    assert columns == (
        {"images", "problem", "answer"}
        if layout == "geometry3k"
        else {"data_source", "prompt", "images", "ability", "reward_model", "extra_info"}
    )
    with pytest.raises(ValueError, match="without images"):
        write_parquet(make_task("arithmetic-qa", n_train=4, n_test=2), tmp_path / "text")


def test_dps_figures_writes_parquet_and_refuses_to_overwrite(tmp_path, capsys):
    from dps.cli import main

    assert main(["figures", str(tmp_path / "f"), "--n-train", "12", "--n-test", "4", "--levels", "sides:3-5"]) == 0
    import polars as pl

    assert pl.read_parquet(tmp_path / "f" / "train.parquet").height == 12
    assert pl.read_parquet(tmp_path / "f" / "test.parquet").height == 4
    assert main(["figures", str(tmp_path / "f")]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["figures", str(tmp_path / "g"), "--levels", "ovals"]) == 2


def test_decode_image_refuses_non_images():
    with pytest.raises(ValueError, match="does not decode"):
        decode_image(b"GIF89a broken")
    with pytest.raises(ValueError, match="no image bytes"):
        decode_image(b"")
    assert decode_image(io.BytesIO(_png()).getvalue()).mode == "RGB"
