"""The trainer with a vision-language model: the learner's log-probs with images, the engines
with images, a tiny VLM run end to end (logs that validate and replay, with no image in them),
kill -9 and resume, and a Geometry3k file under `dps train --check`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from importlib.util import find_spec

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from train_configs import TINY_VLM, run_dps, write_config  # noqa: E402

from dps.train.config import config_from_dict  # noqa: E402
from paths import ROOT  # noqa: E402

CONTENT = [{"type": "image"}, {"type": "text", "text": "How many sides?"}]


def _polygon(n: int, size: int = 56, turn: float = 0.0):
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (size, size), "white")
    ImageDraw.Draw(im).regular_polygon((size / 2, size / 2, size / 3), n, rotation=turn, fill="navy")
    return im


def _vlm(seed: int = 0):
    from dps.models.tiny import TinyVision, tiny_vlm

    return tiny_vlm(32, 1, 2, 1, 64, vision=TinyVision(depth=1, width=32, heads=2), seed=seed)


def test_learner_logprobs_with_images_equal_the_models_own_forward():
    """The learner's padded micro-batch (three prompts with different images, responses of
    different lengths) gives, per response token, the log-prob of the model's own forward pass
    on that one sequence: images line up with their rows."""
    from dps.models.vision import model_image_kwargs, placeholder_token_ids
    from dps.train.engines import HFEngine
    from dps.train.grpo import Sequence, token_logprobs

    model, vp = _vlm()
    model.eval()
    prompts = [vp.encode(CONTENT, [_polygon(n, turn=7.0 * n)]) for n in (3, 4, 6)]
    engine = HFEngine(model, vp.tokenizer)
    responses = engine.generate(
        [ids for ids, _ in prompts], 2, max_new_tokens=6, seed=3, images=[im for _, im in prompts]
    )
    # sampled responses cut to different lengths, so that rows are padded differently
    seqs = [
        Sequence(ids, resp[: 2 + (2 * i + j) % 5], 1.0, images=im)
        for i, ((ids, im), group) in enumerate(zip(prompts, responses, strict=True))
        for j, resp in enumerate(group)
    ]
    assert len({len(s.response) for s in seqs}) > 1
    banned = set(placeholder_token_ids(model))
    assert banned and not any(t in banned for s in seqs for t in s.response)  # never sampled
    with torch.no_grad():
        logp, mask, _ = token_logprobs(
            model, seqs, vp.tokenizer.pad_token_id, torch.device("cpu"), False, temperature=0.7
        )
        for row, s in enumerate(seqs):
            ids = torch.tensor([s.prompt + s.response])
            logits = model(input_ids=ids, **model_image_kwargs(model, ids, [s.images])).logits[0, :-1] / 0.7
            logits[:, sorted(banned)] = float("-inf")
            own = torch.log_softmax(logits, -1).gather(-1, ids[0, 1:, None])[:, 0]
            start = len(s.prompt) - 1
            got = logp[row, start : start + len(s.response)]
            assert mask[row].sum() == len(s.response)
            torch.testing.assert_close(got, own[start:], rtol=0, atol=1e-5)


def test_hf_engine_with_images_samples_the_learners_distribution():
    """First tokens sampled for an image prompt follow exp(the learner's log-probs): the engine
    and the learner see the same vocabulary (no image placeholder) and the same inputs."""
    from dps.train.engines import HFEngine
    from dps.train.grpo import Sequence, token_logprobs
    from sampling_stats import chi2_pvalue

    model, vp = _vlm(seed=5)
    with torch.no_grad():
        model.model.language_model.norm.weight.mul_(4.0)  # a peaked, not flat, distribution
    from dps.models.vision import placeholder_token_ids

    ids, images = vp.encode(CONTENT, [_polygon(5)])
    vocab = len(vp.tokenizer)
    tokens = [t for t in range(vocab) if t not in placeholder_token_ids(model)]

    def distribution(temperature):
        """P(first token) from the learner's log-probs of every one-token response."""
        seqs = [Sequence(ids, [t], 0.0, images=images) for t in tokens]
        with torch.no_grad():
            logp, _, _ = token_logprobs(model, seqs, 0, torch.device("cpu"), False, temperature=temperature)
        probs = np.zeros(vocab)
        probs[tokens] = logp[:, len(ids) - 1].exp().numpy()
        return probs

    probs = distribution(1.0)
    assert abs(probs.sum() - 1.0) < 1e-4  # the placeholders hold no mass
    out = HFEngine(model, vp.tokenizer, batch_size=1).generate([ids], 3000, max_new_tokens=1, seed=2, images=[images])
    counts = np.bincount([r[0] if r else vp.tokenizer.pad_token_id for r in out[0]], minlength=vocab)
    assert chi2_pvalue(counts, probs) > 1e-3
    assert chi2_pvalue(counts, distribution(0.6)) < 1e-6  # the check has power


def test_hf_engine_batches_images_with_their_prompts():
    from dps.train.engines import HFEngine

    model, vp = _vlm(seed=1)
    prompts = [vp.encode(CONTENT, [_polygon(n, turn=11.0 * n)]) for n in (3, 4, 5, 6)]
    engine = HFEngine(model, vp.tokenizer, batch_size=3)  # a chunk of 3 and one of 1
    together = engine.generate(
        [p for p, _ in prompts], 1, max_new_tokens=5, greedy=True, images=[im for _, im in prompts]
    )
    alone = [engine.generate([p], 1, max_new_tokens=5, greedy=True, images=[im])[0] for p, im in prompts]
    assert together == alone


def test_vllm_engine_sends_images_as_multi_modal_data():
    """vLLM takes the chat template's one pad token per image and the decoded images (its
    processor widens the pad itself); checked on the request it would get."""
    pytest.importorskip("vllm")
    from dps.train.engines import VLLMEngine, fold_image_runs

    assert fold_image_runs([1, 9, 9, 9, 2, 9, 9, 3], 9) == [1, 9, 2, 9, 3]
    _, vp = _vlm()
    ids, images = vp.encode(CONTENT, [_polygon(3)])
    engine = object.__new__(VLLMEngine)
    engine.image_token_id = vp.image_token_id
    request = engine._request(ids, images)
    assert request["prompt_token_ids"].count(vp.image_token_id) == 1
    assert request["multi_modal_data"]["image"] == list(images.images)
    assert "multi_modal_data" not in engine._request([1, 2, 3], None)


def _frame(path):
    import polars as pl

    return pl.read_parquet(path).sort("step", "prompt_id")


def test_a_tiny_vlm_run_logs_validate_and_replay_without_images(tmp_path):
    from dps.logs import read_log
    from dps.train.trainer import train

    out = tmp_path / "run"
    summary = train(config_from_dict(dict(TINY_VLM, policy={"name": "dps", "batch_size": 4})), out)
    assert summary["steps"] == 4
    warm = json.loads((out / "warmup.json").read_text())
    assert np.isfinite(warm["warmup_loss_first"]) and np.isfinite(warm["warmup_loss_last"])
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(m["update_nonfinite_grad_steps"] == 0 for m in metrics)
    log = read_log(out / "rollouts.parquet")
    assert set(log["step"].unique().to_list()) == set(range(4))
    import polars as pl

    raw = pl.read_parquet(out / "rollouts.parquet")
    assert not any(dtype == pl.Binary for dtype in raw.schema.values())
    assert b"\x89PNG" not in (out / "rollouts.parquet").read_bytes()
    for name in ("preprocessor_config.json", "chat_template.jinja", "model.safetensors"):
        assert (out / "model" / name).exists()
    assert run_dps("validate", str(out / "rollouts.parquet")).returncode == 0
    r = run_dps(
        "replay", str(out / "replay.toml"), "--out", str(tmp_path / "rep"), "--quiet", "--no-plots", "--workers", "1"
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "rep" / "summary.csv").exists()


def test_a_vlm_run_killed_with_sigkill_continues_exactly(tmp_path):
    d = dict(TINY_VLM, steps=8, log={"eval_every": 2, "checkpoint_every": 2, "progress": False})
    cfg = write_config(tmp_path / "c.toml", d)
    ref = run_dps("train", str(cfg), "--out", str(tmp_path / "ref"))
    assert ref.returncode == 0, ref.stderr
    env = dict(os.environ, DPS_TRAIN_STEP_DELAY="0.4")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dps.cli", "train", str(cfg), "--out", str(tmp_path / "run")],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3 or proc.poll() is not None:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "run" / "summary.json").exists()
    res = run_dps("train", str(cfg), "--out", str(tmp_path / "run"))
    assert res.returncode == 0, res.stderr
    a, b = _frame(tmp_path / "ref" / "rollouts.parquet"), _frame(tmp_path / "run" / "rollouts.parquet")
    assert b.select("step", "prompt_id").is_duplicated().sum() == 0
    assert a.equals(b), "the resumed VLM run's log differs from the uninterrupted run's"
    evals = [json.loads(x) for x in (tmp_path / "run" / "eval.jsonl").read_text().splitlines()]
    ref_evals = [json.loads(x) for x in (tmp_path / "ref" / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [0, 2, 4, 6, 8]
    assert [e["test_accuracy"] for e in evals] == [e["test_accuracy"] for e in ref_evals]


def _geometry3k_rows(broken_row: int | None = None):
    """A few rows in Geometry3k's own layout, written here (not by dps): PNG figures, LaTeX answers."""
    from PIL import Image, ImageDraw

    from dps.tasks.images import encode_png

    rows = []
    for i, answer in enumerate(["2 \\sqrt { 221 }", "\\frac { 40 } { 3 }", "8.5", "60", "45", "12"]):
        im = Image.new("RGB", (80, 60), "white")
        ImageDraw.Draw(im).line((5, 55, 75, 5 + 7 * i), fill="black", width=2)
        data = b"not an image" if i == broken_row else encode_png(im)
        rows.append(
            {"images": [{"bytes": data, "path": f"{i}.png"}], "problem": f"<image>Find x ({i}).", "answer": answer}
        )
    return rows


@pytest.mark.skipif(find_spec("math_verify") is None, reason="geometry3k needs math-verify")
def test_a_geometry3k_file_under_train_check_and_a_broken_image_named(tmp_path):
    import polars as pl

    pl.DataFrame(_geometry3k_rows()).write_parquet(tmp_path / "train.parquet")
    pl.DataFrame(_geometry3k_rows()[:3]).write_parquet(tmp_path / "test.parquet")
    d = dict(
        TINY_VLM,
        task={"name": "geometry3k", "options": {"path": "train.parquet", "test_path": "test.parquet"}},
        rollout={"k": 4, "max_new_tokens": 8},
    )
    cfg = write_config(tmp_path / "geo.toml", d)
    ok = run_dps("train", str(cfg), "--check", "--out", str(tmp_path / "out"))
    assert ok.returncode == 0, ok.stderr
    assert "task geometry3k (6 train / 3 test prompts)" in ok.stdout
    assert not (tmp_path / "out").exists()
    pl.DataFrame(_geometry3k_rows(broken_row=4)).write_parquet(tmp_path / "train.parquet")
    for extra in (["--check"], []):
        bad = run_dps("train", str(cfg), *extra, "--out", str(tmp_path / "out"))
        assert bad.returncode == 2
        assert "train.parquet row 4: image 0: the image does not decode" in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
        assert not (tmp_path / "out").exists()


def test_an_image_task_needs_a_vlm_and_names_the_engine_to_use(tmp_path):
    from dps.train.trainer import Trainer

    text_model = dict(TINY_VLM, model={"tiny": {"hidden_size": 32, "layers": 1, "heads": 2, "kv_heads": 1}})
    with pytest.raises(ValueError, match="set model.tiny.vlm = true"):
        Trainer(config_from_dict(text_model), tmp_path / "a").prepare()
    if find_spec("vllm") is not None and find_spec("torchvision") is None:
        vllm = dict(TINY_VLM, rollout={**TINY_VLM["rollout"], "engine": "vllm"})
        with pytest.raises(ValueError, match="use rollout.engine = 'hf'"):
            Trainer(config_from_dict(vllm), tmp_path / "b").prepare()
    with pytest.raises(ValueError, match="model.tiny.vision: image_size 8"):
        bad = {**TINY_VLM["model"]["tiny"], "vision": {"image_size": 8}}
        config_from_dict(dict(TINY_VLM, model={"tiny": bad}))
    long = dict(TINY_VLM, rollout={**TINY_VLM["rollout"], "max_prompt_tokens": 10})
    trainer = Trainer(config_from_dict(long), tmp_path / "c")
    trainer.prepare()
    with pytest.raises(ValueError, match="over rollout.max_prompt_tokens = 10"):
        trainer.run()


def test_paper_geo3k_needs_a_model_and_the_data(tmp_path):
    r = run_dps("train", "--preset", "paper-geo3k", "--check", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "needs --model DIR" in r.stderr
    r = run_dps("train", "--preset", "paper-geo3k", "--model", str(tmp_path), "--check", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "needs --set task.options.path=FILE" in r.stderr
