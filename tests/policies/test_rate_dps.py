"""The built-in RateDPS (rust/ratedps/) against its numpy reference (tests/reference_rate_dps.py),
the oracle: on several worlds and step counts the same ids, exactly, and the same predictions,
rate distributions, metrics and fitted switch rate, to rounding."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from dps import RateDPS
from dps._core import RateDpsCore
from dps.policies import make_policy
from dps.policies.base import save_state
from dps.replay.runner import replay
from dps.replay.worlds import SyntheticWorld, preset_params
from paths import ROOT
from reference_rate_dps import ReferenceRateDPS

TOL = {"rtol": 1e-9, "atol": 1e-12}


def agree(port: RateDPS, ref: ReferenceRateDPS, ids: np.ndarray, sizes: np.ndarray) -> None:
    np.testing.assert_allclose(port.predicted_rates(), ref.main.prior, **TOL)
    np.testing.assert_allclose(port.predicted_states(ids, sizes), ref.predicted_states(ids, sizes), **TOL)
    np.testing.assert_allclose(port.scores(), ref.scores(), **TOL)
    got, want = port.metrics(), ref.metrics()
    assert got.keys() == want.keys()
    assert got["switch_rate"] == want["switch_rate"]
    np.testing.assert_allclose([got[k] for k in want], [want[k] for k in want], **TOL)


def run_both(options: dict, n: int, steps: int, batch: int, seed: int, sizes=(8,), rounds: int = 1) -> RateDPS:
    """Both policies on one world; each step's selections must be equal id for id."""
    port, ref = RateDPS(n, seed=seed, **options), ReferenceRateDPS(n, seed=seed, **options)
    rng = np.random.default_rng(seed)
    rates = rng.beta(0.6, 0.6, n)
    for step in range(steps):
        ids = []
        for r in range(rounds if step % 3 == 1 else 1):
            got = port.select(batch // (r + 1))
            np.testing.assert_array_equal(got, ref.select(batch // (r + 1)), err_msg=f"step {step} round {r}")
            ids.append(got)
        picked = np.concatenate(ids)
        k = rng.choice(sizes, len(picked))
        c = rng.binomial(k, rates[picked])
        agree(port, ref, picked, k)
        port.observe(picked, c, k)
        ref.observe(picked, c, k)
        rates = np.clip(rates + rng.normal(0, 0.03, n), 0, 1)  # the world drifts
    agree(port, ref, np.arange(n), np.full(n, 8))
    return port


@pytest.mark.parametrize(
    "options, n, steps, batch",
    [
        ({}, 200, 80, 16),
        ({"revisit": 0.25}, 120, 60, 24),
        ({"switch_rate": 0.05}, 150, 50, 16),
        ({"fit_sample": 80}, 400, 60, 32),  # the shadows follow a hashed sample
        ({"grid": 8, "logit_max": 5.0, "switch_rates": (0.01, 0.1)}, 100, 40, 10),
        ({"group_size": 4}, 100, 40, 10),
        ({"selection": "sample"}, 200, 80, 16),
        ({"selection": "sample", "revisit": 0.25, "switch_rate": 0.05}, 120, 50, 24),
        ({"selection": "thompson"}, 200, 80, 16),
        ({"selection": "thompson", "revisit": 0.25, "switch_rate": 0.05}, 120, 50, 24),
        ({"revisit_by": "age"}, 200, 80, 16),
        ({"revisit_by": "stranding", "revisit": 0.5, "group_size": 1}, 100, 30, 10),  # every value 0
    ],
)
def test_the_port_selects_and_predicts_what_the_reference_does(options, n, steps, batch):
    run_both(options, n, steps, batch, seed=3)


SELECTION_X_REVISIT_BY = [(s, by) for s in RateDpsCore.SELECTIONS for by in RateDpsCore.REVISIT_BYS]


@pytest.mark.parametrize("selection, revisit_by", SELECTION_X_REVISIT_BY)
def test_every_selection_and_revisit_rule_agree_with_the_reference(selection, revisit_by):
    options = {"selection": selection, "revisit_by": revisit_by, "revisit": 0.25, "switch_rate": 0.05}
    run_both(options, 160, 60, 24, seed=11, rounds=2)


@pytest.mark.parametrize("selection, revisit_by", SELECTION_X_REVISIT_BY)
def test_groups_of_several_sizes_and_several_rounds_a_step(selection, revisit_by):
    options = {"selection": selection, "revisit_by": revisit_by}
    port = run_both(options, 150, 50, 20, seed=5, sizes=(4, 8, 16), rounds=2)
    assert port._core.group_size in (4, 8, 16)


@pytest.mark.parametrize("selection, revisit_by", SELECTION_X_REVISIT_BY)
def test_families_agree_with_the_reference(selection, revisit_by):
    families = np.arange(120) % 7
    run_both({"families": families, "selection": selection, "revisit_by": revisit_by}, 120, 40, 12, seed=2)


def test_a_log_observed_into_a_fresh_policy_agrees():
    """Groups never selected (a log replayed, a warm start), prompts observed twice in a row."""
    n, rng = 90, np.random.default_rng(8)
    port, ref = RateDPS(n, seed=1), ReferenceRateDPS(n, seed=1)
    for _ in range(30):
        ids = rng.choice(n, 25, replace=False)
        c = rng.binomial(8, 0.4, 25)
        port.observe(ids, c, np.full(25, 8))
        ref.observe(ids, c, np.full(25, 8))
    agree(port, ref, np.arange(n), np.full(n, 8))
    np.testing.assert_array_equal(port.select(20), ref.select(20))


@pytest.mark.parametrize("selection, revisit_by", SELECTION_X_REVISIT_BY)
def test_a_replay_scores_the_same_as_the_reference(selection, revisit_by):
    world = SyntheticWorld(preset_params("countdown", num_prompts=400, steps=40), seed=0)
    options = {"seed": 0, "selection": selection, "revisit_by": revisit_by}
    a = replay(RateDPS(400, **options), world, steps=40, batch_size=32, seed=0).summary
    b = replay(ReferenceRateDPS(400, **options), world, steps=40, batch_size=32, seed=0).summary
    for key in ("effective_ratio", "brier", "ece", "pred_groups"):
        assert a[key] == pytest.approx(b[key], rel=1e-9), key
    assert a["ece"] < 0.1 and a["brier"] < (0.2 if selection == "top" else 0.25)  # a sample takes less sure prompts


def test_options_are_checked_and_the_registry_knows_it():
    assert isinstance(make_policy("ratedps", 10, seed=2, revisit=0.0), RateDPS)
    with pytest.raises(ValueError, match="switch_rate"):
        RateDPS(10, switch_rate="fast")
    with pytest.raises(ValueError, match="switch_rate"):
        RateDPS(10, switch_rate=1.0)
    with pytest.raises(TypeError, match="grid"):
        RateDPS(10, grid=16.5)
    with pytest.raises(ValueError, match="revisit"):
        RateDPS(10, revisit=2)
    with pytest.raises(ValueError, match="families"):
        RateDPS(10, families=np.zeros(9))
    with pytest.raises(ValueError, match="selection must be 'top', 'sample' or 'thompson', got 'best'"):
        RateDPS(10, selection="best")
    with pytest.raises(TypeError, match="selection"):
        RateDPS(10, selection=1)  # type: ignore[arg-type]
    assert RateDPS(10).config()["selection"] == "thompson" == RateDpsCore.SELECTION  # one default, in the core
    assert make_policy("ratedps", 10).config()["selection"] == "thompson"
    assert make_policy("ratedps", 10, selection="top").config()["selection"] == "top"
    assert make_policy("ratedps", 10, selection="sample").config()["selection"] == "sample"
    assert make_policy("ratedps", 10, selection="thompson").config()["selection"] == "thompson"
    assert RateDPS(10).config()["revisit_by"] == "stranding" == RateDpsCore.REVISIT_BY  # one default, in the core
    assert RateDPS.REVISIT_BYS == ("stranding", "age") == tuple(RateDpsCore.REVISIT_BYS)
    assert make_policy("ratedps", 10, revisit_by="age").config()["revisit_by"] == "age"
    with pytest.raises(ValueError, match="revisit_by must be 'stranding' or 'age', got 'oldest'"):
        RateDPS(10, revisit_by="oldest")
    with pytest.raises(TypeError, match="revisit_by"):
        RateDPS(10, revisit_by=None)  # type: ignore[arg-type]
    config = RateDPS(10, families=["a", "b"] * 5).config()
    assert config["switch_rate"] == "auto" and config["families"].startswith("sha256:")
    assert RateDPS(10, switch_rate=0.05).config()["switch_rate"] == 0.05


def test_a_state_saved_with_other_families_or_options_is_refused(tmp_path):
    a = RateDPS(20, families=np.arange(20) % 2)
    a.observe([1, 2], [3, 4], [8, 8])
    a.save(tmp_path / "s.npz")
    for other in (
        RateDPS(20, families=np.arange(20) % 3),
        RateDPS(20),
        RateDPS(20, families=np.arange(20) % 2, revisit=0),
        RateDPS(20, families=np.arange(20) % 2, selection="sample"),
        RateDPS(20, families=np.arange(20) % 2, selection="top"),
        RateDPS(20, families=np.arange(20) % 2, revisit_by="age"),
    ):
        with pytest.raises(ValueError, match="options"):
            other.load(tmp_path / "s.npz")
    b = RateDPS(20, families=np.arange(20) % 2)
    b.load(tmp_path / "s.npz")
    np.testing.assert_array_equal(a.select(5), b.select(5))


def test_bad_groups_are_refused_and_change_nothing():
    policy = RateDPS(5)
    policy.observe([1], [2], [8])
    before = policy.state_dict()
    for ids, correct, total in [
        ([0, 0], [1, 1], [8, 8]),
        ([0], [9], [8]),
        ([7], [1], [8]),
        ([0], [-1], [8]),
        ([0], [0], [0]),
    ]:
        with pytest.raises(ValueError):
            policy.observe(ids, correct, total)
        after = policy.state_dict()
        for key, value in before.items():
            np.testing.assert_array_equal(after[key], value)


@pytest.mark.parametrize(
    ("option", "then", "refusers"),
    [
        ("selection", "top", ({}, {"selection": "sample"})),  # top-B was the default then
        ("revisit_by", "age", ({},)),  # the age revisits were the rule then
    ],
)
def test_a_state_saved_before_an_option_existed_loads_as_its_rule_then_and_not_into_the_default(
    tmp_path, option, then, refusers
):
    """Such a state was made by the rule of its time: it loads into RateDPS(option=that rule),
    from a dict or a file, and continues exactly; the default policy (and the other rules named)
    refuse it with an error that names the option, and load nothing."""
    a = RateDPS(30, seed=4, **{option: then})
    a.observe([1, 2, 3], [3, 4, 8], [8, 8, 8])
    old = a.state_dict()
    del old["config"][option]
    save_state(tmp_path / "old.npz", "RateDPS", old)
    want = a.select(6)
    for load in (lambda p: p.load_state_dict(old), lambda p: p.load(tmp_path / "old.npz")):
        b = RateDPS(30, seed=4, **{option: then})
        load(b)
        np.testing.assert_array_equal(b.select(6), want)
        for options in refusers:
            other = RateDPS(30, seed=4, **options)
            with pytest.raises(ValueError, match=rf"saved with options .*they differ in {option}: '{then}' saved"):
                load(other)
            assert (other.state_dict()["last_step"] == -1).all()  # refused, nothing loaded


def test_sampling_spreads_the_batch_over_more_prompts_than_the_best_scores():
    """Without revisits, the best scores keep returning to the same prompts; a sample by score
    and Thompson sampling train on many more of them."""
    rng = np.random.default_rng(0)
    rates = rng.beta(0.6, 0.6, 400)
    trained = {}
    for selection in ("top", "sample", "thompson"):
        policy, counts = RateDPS(400, seed=0, revisit=0.0, selection=selection), np.zeros(400, np.int64)
        for _ in range(60):
            ids = policy.select(16)
            counts[ids] += 1
            policy.observe(ids, rng.binomial(8, rates[ids]), np.full(len(ids), 8))
        trained[selection] = int((counts >= 3).sum())
    assert trained["sample"] > 1.5 * trained["top"], trained
    assert trained["thompson"] > 1.5 * trained["top"], trained


def run_train_check(out, *options: str) -> subprocess.CompletedProcess:
    args = ["train", "--preset", "tiny-cpu", "--policy", "ratedps", *options, "--check", "--out", str(out)]
    return subprocess.run(
        [sys.executable, "-m", "dps.cli", *args], capture_output=True, text=True, timeout=300, cwd=ROOT
    )


def test_train_takes_the_selection_option_and_refuses_a_bad_one(tmp_path):
    ok = run_train_check(tmp_path / "o", "--set", "policy.options.selection=sample")
    assert ok.returncode == 0 and "ok:" in ok.stdout, ok.stderr
    ok = run_train_check(tmp_path / "t", "--set", "policy.options.selection=thompson")
    assert ok.returncode == 0 and "ok:" in ok.stdout, ok.stderr
    bad = run_train_check(tmp_path / "o", "--set", "policy.options.selection=best")
    assert bad.returncode == 2, bad.stderr
    assert "selection must be 'top', 'sample' or 'thompson', got 'best'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr


@pytest.mark.parametrize("revisit_by", RateDpsCore.REVISIT_BYS)
def test_a_state_round_trip_continues_exactly(tmp_path, revisit_by):
    a = RateDPS(50, seed=2, revisit=0.5, revisit_by=revisit_by)
    rng = np.random.default_rng(0)
    for _ in range(5):
        ids = a.select(8)
        a.observe(ids, rng.binomial(8, 0.3, 8), np.full(8, 8))
    first = a.select(4)  # saved mid-step: the second call must continue it
    a.save(tmp_path / "s.npz")
    b = RateDPS(50, seed=2, revisit=0.5, revisit_by=revisit_by)
    b.load(tmp_path / "s.npz")
    assert b.config()["revisit_by"] == revisit_by
    np.testing.assert_array_equal(b.select(6), a.select(6))
    assert not set(first) & set(b.select(2))


def test_a_bad_revisit_by_is_refused_and_the_state_is_unchanged():
    policy = RateDPS(20, revisit_by="age")
    policy.observe([1, 2], [3, 4], [8, 8])
    before = policy.state_dict()
    with pytest.raises(ValueError, match="revisit_by must be 'stranding' or 'age', got 'rand'"):
        RateDPS(20, revisit_by="rand")
    with pytest.raises(ValueError, match="differ in revisit_by: 'oldest' saved, 'age' here"):
        policy.load_state_dict({**before, "config": {**before["config"], "revisit_by": "oldest"}})
    after = policy.state_dict()
    assert after["config"] == before["config"]
    for key, value in before.items():
        if key != "config":
            np.testing.assert_array_equal(after[key], value)
