"""verl 0.9.1's own loop with DPS on CPUs, end to end (`make verl-demo`; about 6 minutes here).

No stub: verl's `run_ppo` and `fit()` with its FSDP worker (gloo), the hf rollout generating
with the policy's synced weights, its reward loop, GRPO advantages, actor updates and
checkpoints; a second run killed after its step-2 checkpoint and resumed.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("verl.trainer.ppo.v1", reason="verl is tested in its own venv: make test-verl")

from dps.logs import LogSpec, read_log  # noqa: E402
from paths import ROOT


def test_verls_loop_trains_with_dps_and_a_killed_run_resumes_to_the_same_prompts(tmp_path):
    out = tmp_path / "demo"
    dps = ROOT / ".venv" / "bin" / "dps"  # `make test-verl` builds it first; .venv-verl has dps without metadata
    command = [sys.executable, "-m", "dps.integrations.verl.demo", "--out", str(out), "--steps", "4", "--resume-check"]
    if dps.exists():
        command += ["--dps", str(dps)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert [m["step"] for m in summary["step_metrics"]] == [1, 2, 3, 4]  # verl logged 4 steps of fit()
    assert all(m["update_actor_s"] > 0 for m in summary["step_metrics"])
    log = read_log(out / "rollouts.parquet", LogSpec(prompt_ids="index"))
    assert log["step"].unique().sort().to_list() == [1, 2, 3, 4]
    assert log.height == 4 * 4 and set(log["n_rollouts"].to_list()) == {8}
    assert summary["log_replays_the_selection"]  # a fresh DPS fed the log picks what verl rolled out
    assert summary["replay"]["returncode"] == 0  # dps replay accepts the log
    assert summary["killed_after_checkpoint"] == 2
    assert summary["resume_matches"]  # steps 3 and 4 of the resumed run: the same prompts and outcomes
    assert (out / "resumed" / "global_step_4" / "dps_policy.npz").exists()
