"""Tasks: stable ids, disjoint splits, verifiers, format bonus apart from correctness, bad data."""

from __future__ import annotations

import json
from importlib.util import find_spec

import pytest

from dps.tasks import (
    ArithmeticTask,
    BoxedMathTask,
    CountdownTask,
    DatasetTask,
    Example,
    FiguresTask,
    Geometry3kTask,
    extract_answer,
    last_boxed,
    make_task,
)
from dps.tasks.geometry3k import write_parquet

NEEDS_GYM = pytest.mark.skipif(find_spec("reasoning_gym") is None, reason="this task needs reasoning-gym")


@NEEDS_GYM
def test_arithmetic_splits_are_stable_disjoint_and_graded():
    a = ArithmeticTask(n_train=60, n_test=30, n_warmup=40, seed=3)
    b = ArithmeticTask(n_train=60, n_test=30, n_warmup=40, seed=3)
    assert [e.prompt for e in a.train()] == [e.prompt for e in b.train()]
    assert [e.id for e in a.train()] == list(range(60))
    prompts = [set(e.prompt for e in s) for s in (a.train(), a.test(), a.warmup())]
    assert not (prompts[0] & prompts[1]) and not (prompts[0] & prompts[2]) and not (prompts[1] & prompts[2])
    assert len({e.meta["level"] for e in a.train()}) > 1
    a.validate()
    ex = a.train()[0]
    assert ex.prompt.endswith("=") and " " not in ex.prompt
    assert a.verify(ex, ex.answer) and a.verify(ex, f" {ex.answer} ")
    assert not a.verify(ex, str(int(ex.answer) + 1))
    assert not a.verify(ex, "")


@NEEDS_GYM
def test_arithmetic_bad_options():
    with pytest.raises(ValueError, match="level"):
        ArithmeticTask(n_train=5, n_test=5, n_warmup=5, levels=[[1, 1]])
    with pytest.raises(ValueError, match="distinct prompts"):
        ArithmeticTask(n_train=500, n_test=10, n_warmup=0, levels=[[2, 1]])


@NEEDS_GYM
def test_countdown_scoring_and_format_bonus_is_apart_from_correctness():
    c = CountdownTask(n_train=20, n_test=10, n_warmup=5, seed=1)
    c.validate()
    ex = c.train()[0]
    assert c.verify(ex, ex.answer)
    assert not c.verify(ex, "1+1")
    # A well-formed wrong answer earns the format bonus but stays incorrect.
    assert c.format_score(ex, "1+1") == 1.0 and not c.verify(ex, "1+1")
    assert c.format_score(ex, "   ") == 0.0


def test_answer_extraction():
    assert last_boxed(r"x \boxed{\frac{1}{2}} and \boxed{3}") == "3"
    assert last_boxed(r"\boxed{\frac{1}{2}}") == r"\frac{1}{2}"
    assert last_boxed(r"\boxed{unclosed") is None
    assert extract_answer("<answer> 7 </answer>", "tag") == "7"
    assert extract_answer("no tag", "tag") is None
    with pytest.raises(ValueError):
        extract_answer("x", "nope")


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_dataset_task_jsonl_math_verify(tmp_path):
    rows = [{"prompt": f"What is {i}/2?", "answer": f"\\frac{{{i}}}{{2}}"} for i in range(1, 21)]
    t = DatasetTask(_jsonl(tmp_path / "d.jsonl", rows), test_fraction=0.25, seed=0)
    t.validate()
    assert len(t.train()) == 15 and len(t.test()) == 5
    ex = t.train()[0]
    num = int(ex.answer.split("{")[1].split("}")[0])
    assert t.verify(ex, f"so \\boxed{{{num / 2}}}")  # 0.5 == \frac{1}{2} symbolically
    assert not t.verify(ex, f"\\boxed{{{num + 1}}}")
    assert not t.verify(ex, f"{num / 2}")  # boxed format required
    # stable ids: same file, same seed -> same train order
    t2 = DatasetTask(tmp_path / "d.jsonl", test_fraction=0.25, seed=0)
    assert [e.key for e in t2.train()] == [e.key for e in t.train()]


def test_dataset_task_parquet_and_test_file(tmp_path):
    import polars as pl

    pl.DataFrame({"q": ["a", "b", "c"], "a": ["1", "2", "3"]}).write_parquet(tmp_path / "tr.parquet")
    pl.DataFrame({"q": ["d"], "a": ["4"]}).write_parquet(tmp_path / "te.parquet")
    t = DatasetTask(
        tmp_path / "tr.parquet",
        test_path=tmp_path / "te.parquet",
        prompt_field="q",
        answer_field="a",
        verifier="numeric",
        answer_format="plain",
    )
    t.validate()
    assert [e.prompt for e in t.train()] == ["a", "b", "c"] and t.test()[0].answer == "4"
    assert t.verify(t.train()[1], "2.0") and not t.verify(t.train()[1], "two")


def test_dataset_bad_input_is_named(tmp_path):
    with pytest.raises(FileNotFoundError):
        DatasetTask(tmp_path / "missing.jsonl")
    p = _jsonl(tmp_path / "nocol.jsonl", [{"question": "x", "answer": "1"}])
    with pytest.raises(ValueError, match="'prompt'"):
        DatasetTask(p, test_fraction=0.0)
    p = _jsonl(tmp_path / "bad.jsonl", [{"prompt": "x", "answer": "1"}, {"prompt": "y", "answer": "@@@ ???"}])
    t = DatasetTask(p, test_fraction=0.0, test_path=p)
    with pytest.raises(ValueError, match="bad.jsonl line 2 .*does not parse"):
        t.validate()
    # the error names the line of the file, not the row of the split (41 here, train prompt 35)
    rows = [{"prompt": f"q{i}", "answer": str(i)} for i in range(50)]
    rows[40]["answer"] = "@@@ ???"
    t = DatasetTask(_jsonl(tmp_path / "many.jsonl", rows), test_fraction=0.1, seed=0)
    with pytest.raises(ValueError, match=r"many.jsonl line 41 \((train|test) prompt \d+\)"):
        t.validate()
    p = _jsonl(tmp_path / "num.jsonl", [{"prompt": "x", "answer": "abc"}])
    t = DatasetTask(p, test_path=p, verifier="numeric")
    with pytest.raises(ValueError, match="not a number"):
        t.validate()
    with pytest.raises(ValueError, match="verifier"):
        DatasetTask(p, verifier="fuzzy")


@NEEDS_GYM
def test_boxed_math_generated_and_make_task():
    m = BoxedMathTask(n_train=12, n_test=4)
    m.validate()
    ex = m.train()[0]
    assert "\\boxed" in ex.prompt
    assert m.verify(ex, f"The answer is \\boxed{{{ex.answer}}}.")
    assert m.reference_response(ex) == f"\\boxed{{{ex.answer}}}"
    with pytest.raises(ValueError, match="unknown task"):
        make_task("chess")
    with pytest.raises(ValueError, match="arithmetic"):
        make_task("arithmetic", n_trian=3)


# ---------------------------------------------------------------- hostile answers
HOSTILE = ["9**9**9", "2**10**8", "9^{9^{9^{9}}}", "(" * 3000 + "1" + ")" * 3000, "1+" * 50_000 + "1"]


def _hostile_tasks(tmp_path):
    rows = [{"prompt": f"What is {i}/2?", "answer": f"\\frac{{{i}}}{{2}}"} for i in range(1, 9)]
    path = _jsonl(tmp_path / "m.jsonl", rows)
    numeric = _jsonl(tmp_path / "n.jsonl", [{"prompt": f"What is {i}/2?", "answer": str(i / 2)} for i in range(1, 9)])
    figures = FiguresTask(n_train=8, n_test=4, n_warmup=0, levels=["sides:3-6"])
    return [
        figures,
        Geometry3kTask(*write_parquet(figures, tmp_path / "g3k")),  # math-verify on image prompts
        ArithmeticTask(n_train=8, n_test=4, n_warmup=4),
        CountdownTask(n_train=8, n_test=4, n_warmup=4),
        DatasetTask(path, test_path=path),  # math-verify
        DatasetTask(numeric, test_path=numeric, verifier="numeric", answer_format="plain"),
    ]


@NEEDS_GYM
def test_every_verifier_is_bounded_in_time_on_hostile_answers(tmp_path):
    """A huge power, nesting 3000 deep, 10^5 characters: each is judged wrong within the limit,
    counted, and the verifier goes on (countdown's scorer alone never returns on 9**9**9)."""
    import time

    from dps.tasks.bounded import BoundedVerifier

    limit = 1.0
    for task in _hostile_tasks(tmp_path):
        ex = task.train()[0]
        good = task.reference_response(ex)
        pairs = [(ex, good)] + [(ex, task.reference_response(Example(0, "", "", h))) for h in HOSTILE] + [(ex, good)]
        with BoundedVerifier(task, timeout_s=limit) as v:
            v.verify([(ex, good)])  # started
            t0 = time.monotonic()
            got = v.verify(pairs)
            took = time.monotonic() - t0
        assert got == [True] + [False] * len(HOSTILE) + [True], type(task).__name__
        # each hostile answer costs at most the limit plus a worker restart (well under a second)
        assert took < len(HOSTILE) * (limit + 3.0), (type(task).__name__, took)
        assert v.timeouts <= len(HOSTILE)
        if isinstance(task, CountdownTask):
            assert v.timeouts >= 1  # 9**9**9 did hang and was cut off


@NEEDS_GYM
def test_a_direct_verify_is_bounded_by_default():
    """`Task.verify` called as a reward function would: 9**9**9 is wrong within the limit (the
    shared worker is replaced and goes on); timeout_s=0 is the explicit in-process path."""
    import pickle
    import time

    task = CountdownTask(n_train=8, n_test=4, n_warmup=4)
    ex = task.train()[0]
    good = task.reference_response(ex)
    assert task.verify(ex, good)  # starts the task's worker
    t0 = time.monotonic()
    assert not task.verify(ex, "9**9**9", timeout_s=1.0)
    assert time.monotonic() - t0 < 1.0 + 3.0
    t0 = time.monotonic()
    assert not task.verify(ex, "9**9**9")  # the default limit, verify_timeout_s
    assert time.monotonic() - t0 < task.verify_timeout_s + 3.0
    assert task.verify(ex, good) and not task.verify(ex, "1+1")  # the replacement worker judges on
    assert task.verify(ex, good, timeout_s=0)  # in-process, unbounded: asked for by name
    assert pickle.loads(pickle.dumps(task)).verify(ex, good)  # the worker is not pickled with the task
    with pytest.raises(ValueError, match="timeout_s must be >= 0"):
        task.verify(ex, good, timeout_s=-1)
