"""The trainer's config: unknown keys, types and ranges refused before any model work; the presets."""

from __future__ import annotations

from importlib.util import find_spec

import pytest
from train_configs import TINY, run_dps, write_config

from dps.train.config import config_from_dict, load_config

NEEDS_GYM = pytest.mark.skipif(find_spec("reasoning_gym") is None, reason="the arithmetic task needs reasoning-gym")


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
    cfg = load_config(write_config(tmp_path / "ok.toml", TINY))
    assert cfg.model.tiny.hidden_size == 32 and cfg.policy.batch_size == 4
    with pytest.raises(ValueError, match=r"grpo\.clip_ratio_c: must be > 1"):
        config_from_dict({"grpo": {"clip_ratio_c": 1.0}})
    with pytest.raises(ValueError, match=r"log\.eval_mode"):
        config_from_dict({"log": {"eval_mode": "best"}})


@NEEDS_GYM
def test_cli_errors_come_before_model_work(tmp_path):
    bad = dict(TINY, grpo={"lrr": 1.0})
    r = run_dps("train", str(write_config(tmp_path / "a.toml", bad)), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "grpo.lrr: unknown key" in r.stderr
    missing = dict(TINY, model={"path": str(tmp_path / "no-such-model")})
    r = run_dps("train", str(write_config(tmp_path / "b.toml", missing)), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "does not exist" in r.stderr
    (tmp_path / "data.jsonl").write_text('{"prompt": "x", "answer": "@@ ??"}\n')
    badtask = dict(
        TINY,
        task={
            "name": "dataset",
            "options": {"path": str(tmp_path / "data.jsonl"), "test_path": str(tmp_path / "data.jsonl")},
        },
    )
    r = run_dps("train", str(write_config(tmp_path / "c.toml", badtask)), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "does not parse" in r.stderr
    r = run_dps("train", "--preset", "tiny-cpu", "--policy", "nope", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "unknown policy" in r.stderr
    r = run_dps("train", "--preset", "tiny-cpu", "--policy", "ds", "--check", "--out", str(tmp_path / "o"))
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
    r = run_dps("train", str(write_config(sub / "rel.toml", rel)), "--check", "--out", str(tmp_path / "o2"))
    assert r.returncode == 0 and "ok: task dataset (9 train / 3 test" in r.stdout, r.stderr
    assert load_config(sub / "rel.toml").task.options["path"] == str(sub / "d.jsonl")
