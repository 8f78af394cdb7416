"""What a new user tripped on: seeds, wrong-typed scenario values, a policy module beside the
scenario or in the current folder, --no-plots, and curves that hide each other in the plot."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from dps.cli import main

SCENARIO = """name = "tiny"
[world]
preset = "countdown"
num_prompts = 120
steps = 6
[run]
batch_size = 8
seeds = 1
workers = 1
[[policies]]
name = "US"
type = "uniform"
[[policies]]
name = "DPS"
type = "dps"
decay = 0.7
"""


def run(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str, text: str = SCENARIO) -> tuple[int, str, str]:
    sc = tmp_path / "sc.toml"
    sc.write_text(text)
    code = main(["replay", str(sc), "--out", str(tmp_path / "out"), "--quiet", "--no-plots", *args])
    got = capsys.readouterr()
    return code, got.out, got.err


@pytest.mark.parametrize("seeds", ["0", "-1", "1,-2", ",", "x"])
def test_bad_seeds_on_the_command_line_are_a_clear_error(tmp_path, capsys, seeds):
    code, _, err = run(tmp_path, capsys, "--seeds", seeds)
    assert code == 2 and "--seeds must be a count >= 1" in err and repr(seeds) in err


def test_good_seeds_on_the_command_line(tmp_path, capsys):
    code, out, _ = run(tmp_path, capsys, "--seeds", "2")
    assert code == 0 and "| US | 2 |" in out
    code, out, _ = run(tmp_path, capsys, "--seeds", "3,5")
    assert code == 0 and "| DPS | 2 |" in out


@pytest.mark.parametrize(
    "old, new, words",
    [
        ("steps = 6\n[run]", 'steps = "twenty"\n[run]', "world.steps: expected an integer >= 1, got 'twenty'"),
        ("batch_size = 8", 'batch_size = "eight"', "run.batch_size: expected an integer >= 1, got 'eight'"),
        ("batch_size = 8", "batch_size = 8\nsteps = 2.5", "run.steps: expected an integer >= 1, got 2.5"),
        ("seeds = 1", "seeds = 0", "run.seeds: expected a count >= 1"),
        ("seeds = 1", "seeds = [-1]", "run.seeds: expected a count >= 1"),
        ("workers = 1", "workers = true", "run.workers: expected an integer >= 1, got True"),
        ("decay = 0.7", 'decay = "high"', "policies[1].decay: expected a number, got 'high'"),
        ("num_prompts = 120", 'num_prompts = 120\nbase_mean = "low"', "world.base_mean: expected a number, got 'low'"),
        (
            "num_prompts = 120",
            "num_prompts = 120\nwobble_period = [1]",
            "world.wobble_period: expected a list of 2 values",
        ),
        (
            'type = "uniform"',
            'type = "ds"\nmax_rounds = 2.5',
            "policies[0].max_rounds: expected an integer, got 2.5",
        ),
    ],
)
def test_wrong_typed_scenario_values_name_file_table_and_key(tmp_path, capsys, old, new, words):
    assert old in SCENARIO
    code, _, err = run(tmp_path, capsys, text=SCENARIO.replace(old, new, 1))
    assert code == 2 and f"sc.toml: {words}" in err, err


@pytest.mark.parametrize(
    "setting, words",
    [
        ("run.steps=abc", "run.steps: expected an integer >= 1, got 'abc' (from --set run.steps=abc)"),
        ("world.seed=-3", "world.seed: expected an integer >= 0, got -3 (from --set world.seed=-3)"),
        (
            "world.train_gain=high",
            "world.train_gain: expected a number, got 'high' (from --set world.train_gain=high)",
        ),
    ],
)
def test_wrong_typed_set_values_name_the_setting(tmp_path, capsys, setting, words):
    code, _, err = run(tmp_path, capsys, "--set", setting)
    assert code == 2 and f"sc.toml: {words}" in err, err


def test_log_world_values_are_checked_too(tmp_path, capsys):
    ids = [f"q{i}" for i in range(20)]
    pl.DataFrame(
        {"step": [0] * 20 + [1] * 20, "prompt_id": ids * 2, "n_rollouts": [4] * 40, "n_correct": list(range(5)) * 8}
    ).write_csv(tmp_path / "l.csv")
    text = SCENARIO.replace('preset = "countdown"\nnum_prompts = 120\nsteps = 6', 'log = "l.csv"\nswitch_rate = "soon"')
    code, _, err = run(tmp_path, capsys, text=text)
    assert code == 2 and "sc.toml: world.switch_rate: expected a number in [0, 1) or \"auto\", got 'soon'" in err
    code, _, err = run(tmp_path, capsys, text=text.replace('"soon"', "0.05").replace("[run]", 'threshold = "x"\n[run]'))
    assert code == 2 and "sc.toml: world.threshold: expected a number" in err
    code, out, _ = run(tmp_path, capsys, text=text.replace('"soon"', "0.05"))
    assert code == 0 and "| DPS | 1 |" in out


MODULE = """
import numpy as np
from dps import Policy


class FirstFew(Policy):
    def __init__(self, num_prompts, seed=0, offset=0):
        self.num_prompts, self.offset = num_prompts, offset

    def select(self, batch_size):
        return (np.arange(batch_size) + self.offset) % self.num_prompts

    def observe(self, prompt_ids, n_correct, n_rollouts):
        pass

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass
"""


@pytest.mark.parametrize("where", ["beside the scenario", "in the current folder"])
def test_python_policy_module_imports_without_pythonpath(tmp_path, capsys, monkeypatch, where):
    name = "mod_" + where.replace(" ", "_")  # a fresh module name per case
    folder = tmp_path / "sc" if where == "beside the scenario" else tmp_path / "cwd"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(MODULE)
    (tmp_path / "cwd").mkdir(exist_ok=True)
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.delenv("PYTHONPATH", raising=False)
    path_before = list(sys.path)
    text = SCENARIO + f'[[policies]]\nname = "mine"\ntype = "python"\nclass = "{name}:FirstFew"\noffset = 3\n'
    (tmp_path / "sc").mkdir(exist_ok=True)
    sc = tmp_path / "sc" / "sc.toml"
    sc.write_text(text)
    assert main(["replay", str(sc), "--out", str(tmp_path / "out"), "--quiet", "--no-plots"]) == 0
    assert "| mine | 1 |" in capsys.readouterr().out
    assert sys.path == path_before
    sys.modules.pop(name, None)


BROKEN = MODULE.replace("class FirstFew", "class AllZeros").replace(
    "return (np.arange(batch_size) + self.offset) % self.num_prompts", "return np.zeros(batch_size, np.int64)"
) + MODULE.replace("class FirstFew", "class Sizeless").replace("self.num_prompts, self.offset", "self.n, self.offset")


@pytest.mark.parametrize(
    "cls, words",
    [
        ("AllZeros", "AllZeros.select(8) repeats id 0"),
        ("Sizeless", "Sizeless has no num_prompts: set self.num_prompts"),
    ],
)
def test_a_broken_policy_in_a_replay_is_one_line_naming_its_own_class(tmp_path, capsys, monkeypatch, cls, words):
    """The issue's reproductions through `dps replay`: no num_prompts was an AttributeError traceback,
    and a policy returning [0, 0, ..., 0] was named by the replay's timing wrapper (Instrumented)."""
    name = f"broken_{cls.lower()}"
    (tmp_path / f"{name}.py").write_text(BROKEN)
    monkeypatch.chdir(tmp_path)
    text = SCENARIO + f'[[policies]]\nname = "mine"\ntype = "python"\nclass = "{name}:{cls}"\n'
    code, _, err = run(tmp_path, capsys, text=text)
    assert code == 2 and err.startswith("dps replay: error: ") and len(err.strip().splitlines()) == 1, err
    assert words in err and "Instrumented" not in err, err
    sys.modules.pop(name, None)


def test_no_plots_announces_no_pngs_and_plots_do(tmp_path, capsys):
    code, out, _ = run(tmp_path, capsys)
    assert (
        code == 0
        and "(manifest.json, meta.json, reliability.csv, report.md, steps.parquet, summary.csv, summary.parquet)" in out
        and ".png" not in out
    )
    assert not list((tmp_path / "out").glob("*.png"))
    sc = tmp_path / "sc.toml"
    assert main(["replay", str(sc), "--out", str(tmp_path / "out2"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "effective_ratio.png" in out and (tmp_path / "out2" / "effective_ratio.png").exists()
    assert "reliability.png" in out and (tmp_path / "out2" / "reliability.png").exists()


def test_coinciding_curves_are_named_in_the_legend(tmp_path):
    from dps.replay.report.plots import curve_label, plot_all

    flat, other = np.ones(50), np.linspace(0.5, 0.9, 50)
    drawn = {"DS": flat, "US": other}
    assert curve_label("GRESO", flat.copy(), drawn) == "GRESO (same as DS)"
    assert curve_label("DPS", other + 0.05, drawn) == "DPS"
    steps = pl.DataFrame(
        {
            "policy": ["DS"] * 50 + ["GRESO"] * 50 + ["US"] * 50,
            "step": list(range(50)) * 3,
            "effective_ratio": [1.0] * 100 + list(other),
            "cum_rollouts": list(range(150)),
            "cum_effective_prompts": list(range(150)),
        }
    )
    paths = plot_all(steps, tmp_path)
    assert paths["effective_ratio_png"].stat().st_size > 0


def many_policies_steps(names: list[str], predictive: set[str], steps: int = 12) -> pl.DataFrame:
    """A report's steps table for `names` (two seeds each); the `predictive` ones carry confusion counts."""
    rng = np.random.default_rng(0)
    rows = []
    for i, name in enumerate(names):
        for seed in range(2):
            for t in range(steps):
                row = {"policy": name, "seed": seed, "step": t, "effective_ratio": float(0.4 + 0.04 * i + 0.01 * seed)}
                row |= {"cum_rollouts": (t + 1) * 64, "cum_effective_prompts": (t + 1) * (4 + i)}
                for c in range(9):
                    row[f"conf_{c // 3}{c % 3}"] = int(rng.integers(0, 9)) if name in predictive else None
                rows.append(row)
    return pl.DataFrame(rows)


def saved_figures(monkeypatch) -> dict:
    """Every figure a plot saves, by file name (to look at its panels after it is written)."""
    from matplotlib.figure import Figure

    saved: dict = {}
    original = Figure.savefig

    def record(fig, fname, *args, **kwargs):
        saved[Path(fname).name] = fig
        return original(fig, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    return saved


LEADERBOARD_NAMES = [
    "US", "HR", "DS", "GRESO", "MoPPS decay=1 (default)", "MoPPS decay=0.5", "MoPPS decay=0.9",
    "BOTS forgetting=0.1 (default)", "BOTS forgetting=0.03", "BOTS forgetting=0.01",
    "DPS decay=0.7 (default)", "DPS decay=0.5", "DPS decay=0.9", "oracle",
]  # fmt: skip
PREDICTIVE = {n for n in LEADERBOARD_NAMES if n.split()[0] in ("GRESO", "MoPPS", "BOTS", "DPS")}


def test_the_confusion_plot_shows_every_predictive_policy(tmp_path, monkeypatch):
    """A leaderboard's report drew the first four predictive policies (GRESO and MoPPS): no DPS."""
    from dps.replay.report.plots import plot_all

    saved = saved_figures(monkeypatch)
    plot_all(many_policies_steps(LEADERBOARD_NAMES, PREDICTIVE), tmp_path)
    labels = [ax.get_ylabel() for ax in saved["dps_confusion.png"].axes if ax.get_ylabel()]
    shown = {label.split("\n")[0] for label in labels}
    assert shown == PREDICTIVE, sorted(PREDICTIVE - shown)


def test_the_effective_ratio_of_many_policies_gets_a_panel_each(tmp_path, monkeypatch):
    """14 curves on one plot could not be told apart: past a few policies, a panel per policy (best first),
    the others in grey behind it; a few policies stay on one plot."""
    from dps.replay.report.plots import plot_all

    saved = saved_figures(monkeypatch)
    plot_all(many_policies_steps(LEADERBOARD_NAMES, PREDICTIVE), tmp_path)
    panels = [ax for ax in saved["effective_ratio.png"].axes if ax.get_visible()]
    titles = [ax.get_title() for ax in panels]
    assert len(panels) == len(LEADERBOARD_NAMES), titles
    assert titles[0].startswith("oracle") and titles[-1].startswith("US"), titles  # by mean ratio, best first
    assert all(len(ax.get_lines()) == len(LEADERBOARD_NAMES) for ax in panels)  # its own, and the others
    plot_all(many_policies_steps(LEADERBOARD_NAMES[:3], set()), tmp_path)
    assert len([ax for ax in saved["effective_ratio.png"].axes if ax.get_visible()]) == 1


def test_a_rerun_into_a_report_folder_leaves_only_its_own_files(tmp_path, capsys):
    """A rerun with --no-plots kept the earlier run's PNGs beside the new files, and nothing said which
    run wrote which."""
    import json

    sc = tmp_path / "sc.toml"
    sc.write_text(SCENARIO)
    out = tmp_path / "out"
    assert main(["replay", str(sc), "--out", str(out), "--quiet", "--write-logs"]) == 0
    assert list(out.glob("*.png")) and (out / "logs").is_dir()
    (out / "notes.txt").write_text("mine")
    assert main(["replay", str(sc), "--out", str(out), "--quiet", "--no-plots", "--seeds", "2"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert not list(out.glob("*.png")) and not (out / "logs").exists()
    assert sorted(p.name for p in out.iterdir()) == sorted([*manifest["files"], "manifest.json", "notes.txt"])
    assert "--no-plots" in manifest["command"] and "notes.txt" not in manifest["files"]
    capsys.readouterr()
