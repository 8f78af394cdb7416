"""The README's worked example of a custom policy runs, as written, through the same code paths
as the built-ins: run_step, a replay, and save / load; and the replay examples of
docs/policies.md (Python, and a scenario with the class in a module next to it) run with it as
written. (tests/docs/test_docs_examples.py runs every marked block of the README and the docs.)"""

import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from dps import DPS, Policy, run_step
from dps.replay.runner import replay
from dps.replay.worlds import SyntheticWorld, preset_params
from paths import ROOT

README = ROOT / "README.md"
POLICIES_PAGE = ROOT / "docs" / "policies.md"


def code_block(page: Path, marker: str, lang: str = "python") -> str:
    """The block of `page` whose first line is `# MARKER` (e.g. "example: custom policy")."""
    blocks = re.findall(rf"```{lang}\n(.*?)```", page.read_text(), flags=re.S)
    return next(b for b in blocks if b.split("\n", 1)[0] == f"# {marker}")


def readme_block(title: str, lang: str = "python") -> str:
    return code_block(README, f"example: {title}", lang)


@pytest.fixture(scope="module")
def example():
    source = readme_block("custom policy")
    module = types.ModuleType("readme_example")
    exec(compile(source, str(README), "exec"), module.__dict__)
    sys.modules["readme_example"] = module
    yield module
    del sys.modules["readme_example"]


def test_custom_policy_runs_in_the_step_loop(example):
    policy = example.ClosestToHalf(num_prompts=50, seed=1)
    assert isinstance(policy, Policy)
    rng = np.random.default_rng(0)
    p = rng.uniform(size=50)
    for _ in range(10):
        result = run_step(policy, 8, lambda ids: (rng.binomial(8, p[ids]), np.full(len(ids), 8)))
        assert len(np.unique(result.prompt_ids)) == 8
    # after the first steps it prefers prompts whose last rate was near one half
    seen = ~np.isnan(policy.last_rate)
    assert seen.sum() >= 40


def test_custom_policy_and_dps_replay_alike(example):
    world = SyntheticWorld(preset_params("countdown", num_prompts=300, steps=30), seed=0)
    ours = replay(example.ClosestToHalf(num_prompts=300, seed=0), world, steps=30, batch_size=32)
    builtin = replay(DPS(num_prompts=300, seed=0), world, steps=30, batch_size=32)
    assert ours.summary.keys() == builtin.summary.keys()
    assert ours.summary["rollouts"] == builtin.summary["rollouts"] == 30 * 32 * 8
    assert 0 < ours.summary["effective_ratio"] <= 1


def test_custom_policy_saves_and_resumes(example, tmp_path):
    a = example.ClosestToHalf(num_prompts=40, seed=3)
    rng = np.random.default_rng(1)
    p = rng.uniform(size=40)
    outcome = lambda ids: (np.round(p[ids] * 8).astype(int), np.full(len(ids), 8))  # noqa: E731
    for _ in range(5):
        run_step(a, 6, outcome)
    a.save(tmp_path / "mine.npz")
    b = example.ClosestToHalf(num_prompts=40, seed=99)
    b.load(tmp_path / "mine.npz")
    for _ in range(5):
        assert np.array_equal(run_step(a, 6, outcome).prompt_ids, run_step(b, 6, outcome).prompt_ids)


def test_docs_replay_block_runs_with_the_readme_class(example, capsys):
    sys.modules["my_policies"] = example  # "the class above, saved as my_policies.py"
    try:
        exec(compile(code_block(POLICIES_PAGE, "example: custom policy in replay"), str(POLICIES_PAGE), "exec"), {})
    finally:
        del sys.modules["my_policies"]
    ratio, rollouts = capsys.readouterr().out.split()
    assert int(rollouts) == 120 * 256 * 8 and 0.3 < float(ratio) <= 1


def test_docs_scenario_block_imports_the_module_next_to_it(tmp_path, monkeypatch, capsys):
    from dps.cli import main

    (tmp_path / "sc").mkdir()
    (tmp_path / "sc" / "my_policies.py").write_text(readme_block("custom policy"))
    (tmp_path / "sc" / "mine.toml").write_text(code_block(POLICIES_PAGE, "file: mine.toml", "toml"))
    monkeypatch.chdir(tmp_path)  # not the scenario's folder; no PYTHONPATH
    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.delitem(sys.modules, "my_policies", raising=False)
    out = tmp_path / "out"
    argv = ["replay", "sc/mine.toml", "--steps", "20", "--out", str(out), "--quiet", "--no-plots", "--workers", "2"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| closest to half | 2 |" in printed and "| DPS | 2 |" in printed
    # --no-plots writes no PNG and announces none
    assert "PNG" not in printed and ".png" not in printed and not list(out.glob("*.png"))
    assert str((tmp_path / "sc").resolve()) not in sys.path  # the search path is left as it was


def test_docs_show_the_readme_class_unchanged():
    """docs/policies.md shows the README's class as my_policies.py: the two stay one text."""
    body = lambda block: block.split("\n", 1)[1]  # noqa: E731  (without the marker line)
    assert body(code_block(POLICIES_PAGE, "file: my_policies.py")) == body(readme_block("custom policy"))


def test_readme_replay_commands_run_on_a_small_log(tmp_path, monkeypatch, capsys):
    """The README's scenario, and its synth / validate / replay commands, on a log of 600 prompts."""
    from dps.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "my-log.toml").write_text(code_block(README, "file: my-log.toml", "toml"))
    log = "runs/logs/math-every5.parquet"
    synth = ["synth", "--preset", "math", "--every", "5", "--num-prompts", "600", "--steps", "40"]
    assert main([*synth, "--out", log]) == 0
    assert main(["validate", log]) == 0
    assert main(["replay", "my-log.toml", "--seeds", "1", "--workers", "1", "--no-plots", "--out", "runs/my-log"]) == 0
    printed = capsys.readouterr().out
    assert "| US | 1 |" in printed and "| DPS | 1 |" in printed
