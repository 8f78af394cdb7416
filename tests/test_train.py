"""The live trainer: config errors, the GRPO learner, a tiny end-to-end run, kill -9 and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("reasoning_gym")

from dps.train.config import config_from_dict, load_config  # noqa: E402
from dps.train.grpo import GRPOLearner, Sequence, group_advantages  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "seed": 0,
    "steps": 4,
    "model": {"tiny": {"hidden_size": 32, "layers": 1, "heads": 2, "kv_heads": 1, "intermediate_size": 64}},
    "task": {
        "name": "arithmetic",
        "options": {"n_train": 24, "n_test": 12, "n_warmup": 40, "levels": [[2, 1], [3, 1]]},
    },
    "policy": {"name": "uniform", "batch_size": 4},
    "rollout": {"k": 4, "max_new_tokens": 3, "gen_batch_size": 32},
    "grpo": {"lr": 1e-3, "micro_batch_size": 8},
    "warmup": {"steps": 3, "batch_size": 8},
    "log": {"eval_every": 2, "checkpoint_every": 2, "progress": False},
}


def _toml(d: dict, prefix: str = "") -> str:
    """A minimal TOML writer for the test configs (tables, scalars, lists)."""
    lines, tables = [], []
    for k, v in d.items():
        if isinstance(v, dict):
            tables.append((k, v))
        else:
            lines.append(f"{k} = {json.dumps(v)}")
    out = "\n".join(lines) + "\n"
    for k, v in tables:
        name = f"{prefix}{k}"
        out += f"\n[{name}]\n" + _toml(v, name + ".")
    return out


def _write_cfg(path: Path, d: dict) -> Path:
    path.write_text(_toml(d))
    return path


# ---------------------------------------------------------------- config and early errors
def test_config_rejects_unknown_keys_types_and_ranges(tmp_path):
    with pytest.raises(ValueError, match=r"grpo\.clip_hgh: unknown key"):
        config_from_dict({"grpo": {"clip_hgh": 0.3}})
    with pytest.raises(ValueError, match=r"rollout\.k: expected an integer"):
        config_from_dict({"rollout": {"k": "eight"}})
    with pytest.raises(ValueError, match=r"rollout\.k: GRPO needs at least 2"):
        config_from_dict({"rollout": {"k": 1}})
    with pytest.raises(ValueError, match="loss_agg"):
        config_from_dict({"grpo": {"loss_agg": "sum"}})
    p = tmp_path / "bad.toml"
    p.write_text("steps = [")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(p)
    cfg = load_config(_write_cfg(tmp_path / "ok.toml", TINY))
    assert cfg.model.tiny.hidden_size == 32 and cfg.policy.batch_size == 4
    with pytest.raises(ValueError, match=r"grpo\.clip_ratio_c: must be > 1"):
        config_from_dict({"grpo": {"clip_ratio_c": 1.0}})
    with pytest.raises(ValueError, match=r"log\.eval_mode"):
        config_from_dict({"log": {"eval_mode": "best"}})


def _dps(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dps.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, **kw
    )


def test_cli_errors_come_before_model_work(tmp_path):
    bad = dict(TINY, grpo={"lrr": 1.0})
    r = _dps("train", str(_write_cfg(tmp_path / "a.toml", bad)), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "grpo.lrr: unknown key" in r.stderr
    missing = dict(TINY, model={"path": str(tmp_path / "no-such-model")})
    r = _dps("train", str(_write_cfg(tmp_path / "b.toml", missing)), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "does not exist" in r.stderr
    (tmp_path / "data.jsonl").write_text('{"prompt": "x", "answer": "@@ ??"}\n')
    badtask = dict(
        TINY,
        task={
            "name": "dataset",
            "options": {"path": str(tmp_path / "data.jsonl"), "test_path": str(tmp_path / "data.jsonl")},
        },
    )
    r = _dps("train", str(_write_cfg(tmp_path / "c.toml", badtask)), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "does not parse" in r.stderr
    r = _dps("train", "--preset", "tiny-cpu", "--policy", "nope", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "unknown policy" in r.stderr
    r = _dps("train", "--preset", "tiny-cpu", "--policy", "ds", "--check", "--out", str(tmp_path / "o"))
    assert r.returncode == 0 and "ok: task arithmetic" in r.stdout
    assert not (tmp_path / "o").exists()  # --check writes nothing
    # relative paths in a config file are relative to the file (as a scenario's), not to the cwd
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "d.jsonl").write_text("".join(f'{{"prompt": "{i}+1=", "answer": "{i + 1}"}}\n' for i in range(12)))
    rel = dict(
        TINY,
        task={
            "name": "dataset",
            "options": {"path": "d.jsonl", "test_fraction": 0.25, "verifier": "numeric", "answer_format": "plain"},
        },
    )
    r = _dps("train", str(_write_cfg(sub / "rel.toml", rel)), "--check", "--out", str(tmp_path / "o2"))
    assert r.returncode == 0 and "ok: task dataset (9 train / 3 test" in r.stdout, r.stderr
    assert load_config(sub / "rel.toml").task.options["path"] == str(sub / "d.jsonl")


# ---------------------------------------------------------------- the learner
def test_group_advantages():
    a = group_advantages([np.array([1, 1, 1, 1.0]), np.array([0, 1, 0, 1.0]), np.array([1, 0, 0, 0.0])])
    assert np.all(a[0] == 0)
    # unbiased std (verl, TRL): [0,1,0,1] has std sqrt(4 * 0.25 / 3) = 0.57735
    assert np.allclose(a[1], [-0.866025, 0.866025, -0.866025, 0.866025], atol=1e-5)
    # [1,0,0,0]: mean 0.25, std sqrt((0.5625 + 3 * 0.0625) / 3) = 0.5
    assert np.allclose(a[2], [1.5, -0.5, -0.5, -0.5], atol=1e-5)
    pop = group_advantages([np.array([0, 1, 0, 1.0])], unbiased=False)
    assert np.allclose(pop[0], [-1, 1, -1, 1], atol=1e-5)
    b = group_advantages([np.array([0, 1, 0, 1.0])], std_norm=False)
    assert np.allclose(b[0], [-0.5, 0.5, -0.5, 0.5])


def _tiny_lm(seed=0):
    from dps.train.model import char_tokenizer, tiny_model

    tok = char_tokenizer()
    return tiny_model(tok, hidden_size=32, layers=1, heads=2, kv_heads=1, intermediate_size=64, seed=seed), tok


def _grads(agg: str, seqs, **cfg_kw):
    from dps.train.config import GRPOConfig

    model, _ = _tiny_lm()
    cfg = GRPOConfig(loss_agg=agg, lr=1e-3, max_grad_norm=1e9, **cfg_kw)
    learner = GRPOLearner(model, cfg, 0, torch.device("cpu"))
    before = [p.detach().clone() for p in model.parameters()]
    # capture the gradient: one optimizer step of SGD-like size is hard to invert, so hook clip
    grads = {}
    orig = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm):
        params = list(params)
        grads["g"] = torch.cat([p.grad.flatten() for p in params if p.grad is not None])
        return orig(params, max_norm)

    torch.nn.utils.clip_grad_norm_ = spy
    try:
        m = learner.update(seqs)
    finally:
        torch.nn.utils.clip_grad_norm_ = orig
    changed = any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    return grads.get("g"), m, changed


def test_loss_aggregation_dilution_and_zero_advantage_skip():
    rng = np.random.default_rng(0)
    informative = [
        Sequence(list(rng.integers(3, 90, 5)), list(rng.integers(3, 90, 4)), float(a)) for a in (1.0, -1.0, 0.5, -0.5)
    ]
    zero = [Sequence(list(rng.integers(3, 90, 5)), list(rng.integers(3, 90, 4)), 0.0) for _ in range(4)]
    g_tm, m1, changed = _grads("token-mean", informative + zero)
    g_inf, _, _ = _grads("token-mean-informative", informative + zero)
    g_only, _, _ = _grads("token-mean", informative)
    assert changed and m1["update_tokens"] == 32 and m1["forward_tokens"] == 16  # zero-adv rows skipped
    # token-mean keeps the zero-advantage tokens in the denominator: half the gradient here
    assert torch.allclose(g_tm * 2, g_inf, atol=1e-6)
    assert torch.allclose(g_inf, g_only, atol=1e-6)
    # with KL on, zero-advantage rows are forwarded too, and the result is finite
    g_kl, m_kl, _ = _grads("token-mean", informative + zero, kl_coef=0.1, entropy_coef=0.01)
    assert m_kl["forward_tokens"] == 32 and torch.isfinite(g_kl).all()
    # all-zero batch: a zero-gradient optimizer step, as verl takes (nothing moves without decay)
    g0, m0, changed0 = _grads("token-mean", zero)
    assert g0 is not None and not g0.any() and not changed0 and m0["optimizer_steps"] == 1
    _, m0d, changed0d = _grads("token-mean", zero, weight_decay=0.1)  # the decay acts
    assert changed0d and m0d["optimizer_steps"] == 1
    g0s, m0s, changed0s = _grads("token-mean", zero, weight_decay=0.1, step_uninformative=False)
    assert g0s is None and not changed0s and m0s["optimizer_steps"] == 0


def test_clipped_policy_loss_by_hand():
    """verl's vanilla loss: max(-A r, -A clip(r, 0.8, 1.28)), capped at -A c for A < 0; log r in [-20, 20]."""
    from dps.train.grpo import clipped_policy_loss

    #            A     log r          hand value
    cases = [
        (1.0, np.log(0.5), -0.5),  # A > 0, r below 1 - 0.2: no clip (the max keeps -A r)
        (1.0, np.log(2.0), -1.28),  # A > 0, r above 1 + 0.28: clipped
        (1.0, np.log(1.1), -1.1),  # inside the bounds
        (-1.0, np.log(0.5), 0.8),  # A < 0, r low: clipped at 0.8
        (-1.0, np.log(5.0), 5.0),  # A < 0, r high: unclipped, below the dual cap 10
        (-1.0, np.log(50.0), 10.0),  # dual clip: capped at -A * c
        (-2.0, 30.0, 20.0),  # log r clamped to 20, then the dual cap 2 * 10
        (2.0, 30.0, -2.56),
    ]  # A > 0, huge r: clip-high
    adv = torch.tensor([[a] for a, _, _ in cases], dtype=torch.float64)
    logp = torch.tensor([[lr] for _, lr, _ in cases], dtype=torch.float64)
    loss, clipped, dual = clipped_policy_loss(logp, torch.zeros_like(logp), adv, 0.2, 0.28, 10.0)
    assert np.allclose(loss.squeeze(1).numpy(), [h for _, _, h in cases], atol=1e-9)
    assert clipped.squeeze(1).tolist() == [False, True, False, True, False, False, False, True]
    assert dual.squeeze(1).tolist() == [False, False, False, False, False, True, True, False]


def test_k3_kl_by_hand():
    from dps.train.grpo import k3_kl

    ref = torch.tensor([0.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    logp = torch.tensor([0.0, -1.0, 1.0, -5.0], dtype=torch.float64)  # d = ref - logp = 0, 1, -1, 5
    want = [0.0, np.e - 2, np.exp(-1), 10.0]  # exp(d) - d - 1; e^5 - 6 = 142.4 is clamped to 10
    assert np.allclose(k3_kl(logp, ref).numpy(), want)
    far = torch.tensor([40.0, -1000.0], dtype=torch.float64, requires_grad=True)
    kl = k3_kl(far, torch.zeros(2, dtype=torch.float64))
    kl.sum().backward()
    assert kl.tolist() == [10.0, 10.0] and torch.isfinite(far.grad).all()  # d clamped to +-20 before exp


def test_learner_logprobs_use_the_sampling_temperature():
    from dps.train.grpo import token_logprobs

    model, _ = _tiny_lm()
    seq = Sequence([5, 6, 7], [8, 9], 1.0)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[5, 6, 7, 8, 9]])).logits[0].double()
        lp, mask, _ = token_logprobs(model, [seq], 0, torch.device("cpu"), False, temperature=0.6)
    by_hand = [torch.log_softmax(logits[t] / 0.6, -1)[tok].item() for t, tok in ((2, 8), (3, 9))]
    assert mask[0].tolist() == [0, 0, 1, 1]
    assert np.allclose(lp[0, 2:].numpy(), by_hand, atol=1e-5)
    assert not np.allclose(
        by_hand, [torch.log_softmax(logits[2], -1)[8].item(), torch.log_softmax(logits[3], -1)[9].item()]
    )


def test_nonfinite_gradient_skips_the_step():
    from dps.train.config import GRPOConfig

    model, _ = _tiny_lm()
    learner = GRPOLearner(model, GRPOConfig(lr=1e-2), 0, torch.device("cpu"))
    seqs = [Sequence([5, 6, 7], [8, 9], a) for a in (1.0, -1.0)]
    emb = model.get_input_embeddings().weight
    hook = emb.register_hook(lambda g: g.index_fill(0, torch.tensor([3]), float("inf")))
    before = [p.detach().clone() for p in model.parameters()]
    m = learner.update(seqs)
    hook.remove()
    assert m["nonfinite_grad_steps"] == 1 and m["optimizer_steps"] == 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(p.grad is None for p in model.parameters())
    m2 = learner.update(seqs)  # the next step is a normal one and keeps the weights finite
    assert m2["nonfinite_grad_steps"] == 0 and m2["optimizer_steps"] == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_mini_batches_hold_whole_groups():
    from dps.train.grpo import _group_mini_batches

    seqs = [Sequence([1], [2], 0.0, group=g) for g in (0, 0, 1, 1, 2, 2, 3, 3)]
    first = _group_mini_batches(seqs, 2, 1, seed=0)
    assert [mb.tolist() for mb in first] == [[0, 1, 2, 3], [4, 5, 6, 7]]  # in order, as verl
    for mb in _group_mini_batches(seqs, 4, 3, seed=1):
        assert len({seqs[i].group for i in mb}) == 1 and len(mb) == 2


def test_clipping_with_several_minibatches():
    from dps.train.config import GRPOConfig

    model, _ = _tiny_lm()
    rng = np.random.default_rng(1)
    seqs = [
        Sequence(list(rng.integers(3, 90, 5)), list(rng.integers(3, 90, 6)), float(a))
        for a in rng.choice([-1.0, 1.0], 16)
    ]
    learner = GRPOLearner(
        model, GRPOConfig(lr=5e-2, mini_batches=4, epochs=2, micro_batch_size=3), 0, torch.device("cpu")
    )
    m = learner.update(seqs, seed=3)
    assert m["optimizer_steps"] == 8
    assert 0.0 < m["clip_frac"] <= 1.0  # a large lr moves the ratio out of [0.8, 1.28]


# ---------------------------------------------------------------- end to end
def _frame(path):
    import polars as pl

    return pl.read_parquet(path).sort("step", "prompt_id")


def test_tiny_run_uniform_and_ds_logs_replayable(tmp_path):
    from dps.logs import read_log
    from dps.train.trainer import train

    out = {}
    for pol in ("uniform", "ds"):
        cfg = config_from_dict(dict(TINY, policy={"name": pol, "batch_size": 4}))
        summary = train(cfg, tmp_path / pol)
        out[pol] = summary
        log = read_log(tmp_path / pol / "rollouts.parquet")
        assert set(log["step"].unique().to_list()) == set(range(4))
        metrics = [json.loads(x) for x in (tmp_path / pol / "metrics.jsonl").read_text().splitlines()]
        assert [m["step"] for m in metrics] == [0, 1, 2, 3]
        assert sum(m["rollouts"] for m in metrics) == int(log["n_rollouts"].sum())
        evals = [json.loads(x) for x in (tmp_path / pol / "eval.jsonl").read_text().splitlines()]
        assert [e["step"] for e in evals] == [0, 2, 4]
        for key in ("time_select", "time_generate", "time_update", "effective_ratio"):
            assert key in metrics[0]
        assert (tmp_path / pol / "model" / "config.json").exists()
    assert out["uniform"]["rollouts_per_trained_group"] == 4.0
    # DS pays for what it filters: at least k rollouts per trained group, usually more
    assert out["ds"]["rollouts_per_trained_group"] >= 4.0
    # the run's log replays with `dps replay`
    r = _dps(
        "replay",
        str(tmp_path / "ds" / "replay.toml"),
        "--out",
        str(tmp_path / "rep"),
        "--quiet",
        "--no-plots",
        "--workers",
        "1",
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "rep" / "summary.csv").exists()


def test_kill_minus_9_and_resume_loses_and_duplicates_nothing(tmp_path):
    d = dict(TINY, steps=8, log={"eval_every": 2, "checkpoint_every": 2, "progress": False})
    cfg = _write_cfg(tmp_path / "c.toml", d)
    ref = _dps("train", str(cfg), "--out", str(tmp_path / "ref"))
    assert ref.returncode == 0, ref.stderr
    env = dict(os.environ, DPS_TRAIN_STEP_DELAY="0.4")  # widen the window between steps for the kill
    proc = subprocess.Popen(
        [sys.executable, "-m", "dps.cli", "train", str(cfg), "--out", str(tmp_path / "run")],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    time.sleep(0.2)  # somewhere inside a later step
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "run" / "summary.json").exists()
    res = _dps("train", str(cfg), "--out", str(tmp_path / "run"))
    assert res.returncode == 0, res.stderr
    a, b = _frame(tmp_path / "ref" / "rollouts.parquet"), _frame(tmp_path / "run" / "rollouts.parquet")
    assert b.select("step", "prompt_id").is_duplicated().sum() == 0
    assert a.equals(b), "the resumed run's log differs from the uninterrupted run's"
    ma = [json.loads(x)["step"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert ma == list(range(8))
    ea = [json.loads(x)["step"] for x in (tmp_path / "run" / "eval.jsonl").read_text().splitlines()]
    assert ea == [0, 2, 4, 6, 8]


def test_resume_refuses_a_different_config(tmp_path):
    from dps.train.trainer import train

    train(config_from_dict(dict(TINY, steps=2)), tmp_path / "r")
    with pytest.raises(ValueError, match="different configuration"):
        train(config_from_dict(dict(TINY, steps=3, grpo={"lr": 0.5})), tmp_path / "r")
    # more steps with the same config continues the run
    s = train(config_from_dict(dict(TINY, steps=3)), tmp_path / "r")
    assert s["steps"] == 3


def test_config_example_matches_the_preset():
    import argparse

    from dps.train.config import build_config

    def ns(**kw):
        base = dict(
            config=None,
            preset=None,
            policy=None,
            steps=None,
            seed=None,
            out="x",
            engine=None,
            model=None,
            gguf_file=None,
            warmup_cache=None,
            loss_agg=None,
            set=[],
            no_progress=False,
        )
        base.update(kw)
        return argparse.Namespace(**base)

    from_file = build_config(ns(config=str(ROOT / "configs" / "tiny-cpu.toml")))
    from_preset = build_config(ns(preset="tiny-cpu"))
    assert from_file.to_dict() == from_preset.to_dict()
    ds = build_config(ns(preset="tiny-cpu", policy="ds"))
    assert ds.policy.name == "ds" and ds.policy.options == {}


def _user_policy_class():
    """A user's policy in plain Python: always the first batch_size prompts."""
    from dps.policies.base import Policy

    class FirstPrompts(Policy):
        def __init__(self, num_prompts: int, seed: int = 0) -> None:
            self.num_prompts = num_prompts
            self.seen: list[int] = []

        def select(self, batch_size: int) -> np.ndarray:
            return np.arange(batch_size, dtype=np.int64)

        def observe(self, prompt_ids, n_correct, n_rollouts) -> None:
            self.seen.extend(int(i) for i in prompt_ids)

        def state_dict(self):
            return {"seen": np.asarray(self.seen, dtype=np.int64)}

        def load_state_dict(self, state) -> None:
            self.seen = [int(i) for i in state["seen"]]

    return FirstPrompts


def test_user_policy_and_dense_sweep(tmp_path):
    import polars as pl

    from dps.train.trainer import train

    cls = _user_policy_class()
    pol = cls(num_prompts=24)
    d = dict(TINY, steps=2, log={"eval_every": 0, "checkpoint_every": 1, "sweep_every": 2, "progress": False})
    train(config_from_dict(d), tmp_path / "u", policy=pol)
    assert pol.seen == [0, 1, 2, 3, 0, 1, 2, 3]
    log = pl.read_parquet(tmp_path / "u" / "rollouts.parquet")
    assert sorted(set(log["prompt_id"].to_list())) == [0, 1, 2, 3]
    dense = pl.read_parquet(tmp_path / "u" / "dense.parquet")
    # every train prompt, k samples, at steps 0 and 2
    assert dense.group_by("step").len().sort("step")["len"].to_list() == [24, 24]
    assert set(dense["n_rollouts"].to_list()) == {4}
    assert 'log = "dense.parquet"' in (tmp_path / "u" / "replay.toml").read_text()


@pytest.mark.parametrize("name", ["dps", "hr", "mopps", "greso", "bots", "dps+ds"])
def test_every_builtin_policy_trains(tmp_path, name):
    from dps.train.trainer import train

    d = dict(
        TINY,
        steps=3,
        policy={"name": name, "batch_size": 4},
        log={"eval_every": 0, "checkpoint_every": 2, "progress": False},
    )
    s = train(config_from_dict(d), tmp_path / name)
    assert s["steps"] == 3 and s["rollouts_total"] >= 3 * 4 * 4


# ---------------------------------------------------------------- sampling
def _peaked_tiny_model(scale: float = 4.0):
    """A tiny model whose next-token distribution is neither flat nor one-hot (T matters)."""
    from dps.train.model import char_tokenizer, tiny_model

    tok = char_tokenizer()
    model = tiny_model(tok, hidden_size=32, layers=1, heads=2, kv_heads=1, intermediate_size=64, seed=3)
    with torch.no_grad():
        model.model.norm.weight.mul_(scale)
    return model, tok


def test_hf_engine_samples_softmax_of_logits_over_temperature():
    """Sampled first tokens follow softmax(logits / T) over the whole vocabulary: no top-k 50
    (which would cut the 29% of mass outside the 50 likeliest tokens here), T applied."""
    from dps.train.engines import HFEngine
    from sampling_stats import chi2_pvalue

    model, tok = _peaked_tiny_model()
    model.generation_config.top_k = 5  # a model config's defaults must not leak into sampling
    model.generation_config.repetition_penalty = 1.3
    prompt = tok("7+8=", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt])).logits[0, -1].double()
    engine = HFEngine(model, tok, batch_size=1)
    for temp in (1.0, 0.6):
        out = engine.generate([prompt], 4000, max_new_tokens=1, temperature=temp, seed=1)
        counts = np.bincount([r[0] if r else tok.pad_token_id for r in out[0]], minlength=len(logits))
        assert chi2_pvalue(counts, torch.softmax(logits / temp, -1).numpy()) > 1e-3
        wrong_t = 1.0 if temp != 1.0 else 0.6
        assert chi2_pvalue(counts, torch.softmax(logits / wrong_t, -1).numpy()) < 1e-6  # the check has power
        if temp == 1.0:
            assert (counts > 0).sum() > 50
    assert model.generation_config.top_k == 5  # put back


# ---------------------------------------------------------------- the paper's presets
def test_paper_presets_follow_the_released_recipe(tmp_path):
    """paper-countdown / paper-math carry docs/method.md#recipe; the CPU-sized variant
    trains with the same algorithm settings (4 optimizer steps per step, sampled evaluation)."""
    from dps.train.presets import preset
    from dps.train.trainer import train

    for name, mini, decay, tokens in (("paper-countdown", 4, 0.5, 1024), ("paper-math", 2, 0.7, 8192)):
        c = config_from_dict(dict(preset(name), model={"path": "/m"}))
        g = c.grpo
        assert (
            g.lr,
            g.weight_decay,
            g.max_grad_norm,
            g.clip_low,
            g.clip_high,
            g.clip_ratio_c,
            g.entropy_coef,
            g.kl_coef,
            g.loss_agg,
            g.std_unbiased,
        ) == (1e-6, 0.1, 1.0, 0.2, 0.28, 10.0, 0.001, 0.0, "token-mean", True)
        assert (c.policy.batch_size, g.mini_batches, c.policy.options["decay"]) == (256, mini, decay)
        assert (c.rollout.k, c.rollout.temperature, c.rollout.top_p, c.rollout.max_new_tokens) == (8, 1.0, 1.0, tokens)
        assert (c.log.eval_mode, c.log.eval_samples, c.log.eval_temperature) == ("sampled", 16, 0.6)
        cpu = config_from_dict(preset(name + "-cpu"))
        assert cpu.grpo.mini_batches == mini and cpu.grpo.clip_ratio_c == 10.0 and cpu.log.eval_mode == "sampled"
    d = preset("paper-countdown-cpu")
    d.update(steps=2, model=TINY["model"], warmup={"steps": 3, "batch_size": 8})
    d["task"]["options"].update(n_train=24, n_test=6, n_warmup=20)
    d["log"].update(eval_samples=4, progress=False)
    summary = train(config_from_dict(d), tmp_path / "cd")
    metrics = [json.loads(x) for x in (tmp_path / "cd" / "metrics.jsonl").read_text().splitlines()]
    assert summary["steps"] == 2 and all(m["update_optimizer_steps"] == 4 for m in metrics)
    evals = [json.loads(x) for x in (tmp_path / "cd" / "eval.jsonl").read_text().splitlines()]
    assert all("test_accuracy_sampled" in e and "test_accuracy_greedy" not in e for e in evals)


def test_a_checkpoint_holding_a_pickled_object_is_refused(tmp_path):
    import torch

    from dps.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from dps.train.config import GRPOConfig
    from dps.train.grpo import GRPOLearner
    from dps.train.model import char_tokenizer, tiny_model

    tok = char_tokenizer()
    model = tiny_model(tok, 32, 1, 2, 1, 64, 64, seed=0)
    learner = GRPOLearner(model, GRPOConfig(), 0, torch.device("cpu"))
    from dps import DPS

    policy = DPS(num_prompts=8, seed=0)
    save_checkpoint(tmp_path, 3, model, learner, policy, {"rollouts_total": 5}, keep=2)
    step, counters = load_checkpoint(tmp_path / "step-0000003", model, learner, policy, torch.device("cpu"))
    assert step == 3 and counters == {"rollouts_total": 5}
    torch.save({"opt": PickledThing()}, tmp_path / "step-0000003" / "learner.pt")
    with pytest.raises(CheckpointError, match="learner.pt: refused"):
        load_checkpoint(tmp_path / "step-0000003", model, learner, policy, torch.device("cpu"))
    assert not PickledThing.loaded


class PickledThing:
    loaded = False

    def __setstate__(self, state):
        PickledThing.loaded = True
