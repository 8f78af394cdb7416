"""The trainer's config: unknown keys, types and ranges refused before any model work; the presets."""

from __future__ import annotations

from importlib.util import find_spec

import pytest
from train_configs import TINY, run_dps, train_args, write_config

from dps.train.config import build_config, config_from_dict, load_config
from paths import ROOT

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


# ---------------------------------------------------------------- whose policy options
TINY_CPU = str(ROOT / "configs" / "tiny-cpu.toml")  # policy dps, [policy.options] decay = 0.5


@pytest.mark.parametrize(
    "given, policy, options",
    [
        (dict(config=TINY_CPU), "dps", {"decay": 0.5}),
        (dict(config=TINY_CPU, policy="uniform"), "uniform", {}),
        (dict(config=TINY_CPU, policy="mopps"), "mopps", {}),  # MoPPS at its own default decay, not DPS's 0.5
        (dict(config=TINY_CPU, policy="DPS"), "DPS", {"decay": 0.5}),
        (dict(config=TINY_CPU, policy="dps+ds"), "dps+ds", {"decay": 0.5}),  # the selector's options
        (dict(config=TINY_CPU, policy="mopps", set=["policy.options.decay=0.9"]), "mopps", {"decay": 0.9}),
        (dict(preset="tiny-cpu", policy="uniform"), "uniform", {}),
        (dict(preset="tiny-cpu", policy="dps+ds"), "dps+ds", {"decay": 0.5}),
    ],
)
def test_policy_options_go_to_the_policy_they_were_written_for(given, policy, options):
    notes: list[str] = []
    cfg = build_config(train_args(**given), notes)
    assert (cfg.policy.name, cfg.policy.options) == (policy, options)
    if given.get("policy", "dps").lower() in ("uniform", "mopps"):
        assert len(notes) == 1 and "(decay) are for dps, not " in notes[0] and "not used" in notes[0]
    else:
        assert notes == []


def test_a_config_files_options_for_the_preset_policy_merge_with_the_presets(tmp_path):
    path = write_config(tmp_path / "c.toml", {"policy": {"options": {"prior_alpha": 2.0}}})  # no name: the preset's
    cfg = build_config(train_args(preset="tiny-cpu", config=str(path)))
    assert cfg.policy.name == "dps" and cfg.policy.options == {"decay": 0.5, "prior_alpha": 2.0}
    path = write_config(tmp_path / "d.toml", {"policy": {"name": "mopps", "options": {"target": 0.4}}})
    cfg = build_config(train_args(preset="tiny-cpu", config=str(path)))
    assert cfg.policy.name == "mopps" and cfg.policy.options == {"target": 0.4}
    path = write_config(tmp_path / "e.toml", {"policy": {"name": "mopps", "options": 3}})
    with pytest.raises(ValueError, match=r"policy\.options: expected a table"):
        build_config(train_args(config=str(path)))


@NEEDS_GYM
def test_a_config_file_with_another_policy_checks_on_the_command_line(tmp_path):
    """The issue's reproduction: `dps train configs/tiny-cpu.toml --policy uniform --check` said "bad options"."""
    r = run_dps("train", TINY_CPU, "--policy", "uniform", "--check", "--out", str(tmp_path / "o"))
    assert r.returncode == 0 and "policy uniform" in r.stdout, r.stderr
    assert "note: the policy options of" in r.stderr


@NEEDS_GYM
def test_train_finds_a_policy_module_in_the_current_folder(tmp_path):
    """`dps train --policy my_module:Class` looks in the current folder, as `dps replay` does (the
    `dps` command, unlike `python -m`, does not put the current folder on sys.path)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "my_first_policy.py").write_text(
        "import numpy as np\nfrom dps import Policy\n\n"
        "class First(Policy):\n"
        "    def __init__(self, num_prompts, seed=0):\n        self.num_prompts = num_prompts\n"
        "    def select(self, batch_size):\n        return np.arange(batch_size)\n"
        "    def observe(self, prompt_ids, n_correct, n_rollouts):\n        pass\n"
        "    def state_dict(self):\n        return {}\n"
        "    def load_state_dict(self, state):\n        pass\n"
    )
    command = [str(Path(sys.executable).parent / "dps"), "train", "--preset", "tiny-cpu", "--check", "--out", "o"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run(
        [*command, "--policy", "my_first_policy:First"], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert r.returncode == 0 and "policy my_first_policy:First" in r.stdout, r.stderr
    r = subprocess.run(
        [*command, "--policy", "no_such_module:X"], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert r.returncode == 2 and "no_such_module" in r.stderr and "current folder" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@NEEDS_GYM
@pytest.mark.parametrize(
    "policies, words",
    [("uniform,,dps", "an empty policy name"), ("uniform,nope", "unknown policy 'nope'"), ("dps,dps", "twice")],
)
def test_compare_checks_every_run_before_training_any(tmp_path, policies, words):
    """`--policies uniform,,dps` trained DPS (the preset's) into OUT/token-mean/ itself; `uniform,nope` trained
    uniform for minutes, then failed."""
    out = tmp_path / "c"
    r = run_dps("compare", "--policies", policies, "--steps", "1", "--out", str(out), timeout=120)
    assert r.returncode == 2 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not out.exists() or not any(out.rglob("*.json"))  # nothing trained
