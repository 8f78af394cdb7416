"""verl 0.9.1's own loop with DPS choosing the prompts, on CPUs: `make verl-demo OUT=DIR`.

    python -m dps.integrations.verl.demo --out DIR [--steps 4] [--workers 1] [--resume-check] [--mode async]

Writes a tiny Qwen2 and its tokenizer (DIR/model) and one-digit arithmetic prompts
(DIR/data/*.parquet, `dps.integrations.tiny`), or with ``--task figures`` the tiny Qwen2-VL and
its processor and `figures` prompts (a drawn polygon: how many sides?) in verl's multimodal
layout (``images``, read with ``data.image_key=images``), then runs `python -m dps.integrations.verl` (verl's
`run_ppo` and `fit()`: the hf rollout, the rule reward, GRPO advantages, the FSDP actor update on
gloo, a checkpoint every step) for ``--steps`` steps into DIR: DIR/rollouts.parquet is the DPS
rollout log, DIR/global_step_N the checkpoints, DIR/metrics.jsonl verl's metrics.

``--mode async`` runs verl's ``colocate_async`` trainer instead (trainer mode ``dps_async``):
generation one batch ahead of the update, the policy selecting while groups are in flight; the
log then has each group's ``selected_step`` beside the ``step`` that observed it.

``--resume-check`` then runs the same training into DIR/resumed, kills it (SIGKILL, the whole
process group) once the checkpoint of step ``--kill-after`` is written, resumes it, and compares
the prompts each step selected with the uninterrupted run's. ``--address`` runs on an existing
Ray cluster (``ray start``; its nodes declare worker slots with ``--num-gpus``, see
`dps.integrations.verl.cpu`) instead of a local one. DIR/summary.json holds what was measured.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

N_TRAIN, N_VAL = 32, 8
#: The demo's --mode and the trainer mode each runs.
MODES = {"sync": "dps", "async": "dps_async"}


@dataclass(frozen=True)
class Setting:
    """What a demo task changes in verl's config (its data and model are written by `prepare`)."""

    reward: str  # the reward function in dps.integrations.tiny
    prompt_length: int  # data.max_prompt_length (tokens)
    response_length: int  # data.max_response_length (tokens)
    overrides: tuple[str, ...] = ()


SETTINGS = {
    "arithmetic": Setting("compute_score", prompt_length=8, response_length=4),
    # a prompt is 55 tokens: 16 image tokens between two markers and the question's 37 characters;
    # verl's processor is the model folder's code (dps.models.processor)
    "figures": Setting(
        "figures_compute_score",
        prompt_length=64,
        response_length=16,
        overrides=("data.image_key=images", "actor_rollout_ref.model.trust_remote_code=True"),
    ),
}


def prepare(out: Path, model: str | None, task: str = "arithmetic") -> tuple[Path, Path, Path]:
    from dps.integrations import tiny

    data = out / "data"
    if task == "figures":
        train, val = tiny.write_figures_parquet(data, N_TRAIN, N_VAL, seed=0)
        return train, val, Path(model) if model else tiny.save_vlm_folder(out / "model")
    train = tiny.write_verl_parquet(data / "train.parquet", N_TRAIN, seed=0)
    val = tiny.write_verl_parquet(data / "val.parquet", N_VAL, seed=1)
    folder = Path(model) if model else tiny.save_model_folder(out / "model")
    return train, val, folder


def overrides(args: argparse.Namespace, out: Path, train: Path, val: Path, model: Path) -> list[str]:
    """The Hydra overrides of one run: verl's loop at the size of a 2-core machine."""
    from dps.integrations import tiny

    batch, k, setting = args.batch_size, args.k, SETTINGS[args.task]
    settings = [
        f"data.train_files={train}",
        f"data.val_files={val}",
        f"data.train_batch_size={batch}",
        f"data.max_prompt_length={args.prompt_length or setting.prompt_length}",
        f"data.max_response_length={args.response_length or setting.response_length}",
        "data.filter_overlong_prompts=False",
        "data.dataloader_num_workers=0",
        f"actor_rollout_ref.model.path={model}",
        "actor_rollout_ref.model.use_remove_padding=False",
        "actor_rollout_ref.actor.strategy=fsdp2",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={batch}",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8",
        "actor_rollout_ref.actor.use_kl_loss=False",
        "actor_rollout_ref.actor.optim.lr=1e-3",
        "actor_rollout_ref.actor.fsdp_config.dtype=float32",
        "actor_rollout_ref.actor.fsdp_config.use_torch_compile=False",
        "actor_rollout_ref.rollout.name=hf",
        f"actor_rollout_ref.rollout.n={k}",
        "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8",
        "actor_rollout_ref.rollout.agent.num_workers=1",
        "algorithm.adv_estimator=grpo",
        "algorithm.use_kl_in_reward=False",
        f"reward.custom_reward_function.path={Path(tiny.__file__).resolve()}",
        f"reward.custom_reward_function.name={setting.reward}",
        "reward.num_workers=1",
        "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
        f"trainer.device={args.device}",
        "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
        f"trainer.n_gpus_per_node={args.workers}",
        f"trainer.nnodes={args.nodes}",
        f"trainer.total_training_steps={args.steps}",
        "trainer.save_freq=1",
        "trainer.test_freq=-1",
        "trainer.val_before_train=False",
        "trainer.logger=[console,file]",
        f"trainer.default_local_dir={out}",
        "trainer.project_name=dps",
        f"trainer.experiment_name=verl-cpu-demo-{args.task}",
        f"+ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH={out / 'metrics.jsonl'}",
        f"trainer.v1.trainer_mode={MODES[args.mode]}",
        f"dps.policy={args.policy}",
        "dps.correct_key=acc",
        f"dps.seed={args.seed}",
        f"hydra.run.dir={out / 'hydra'}",
    ]
    settings += list(setting.overrides)
    if args.address:
        settings.append(f"+ray_kwargs.ray_init.address={args.address}")
    else:
        settings += [
            "+ray_kwargs.ray_init.address=local",
            f"ray_kwargs.ray_init.num_cpus={max(8, os.cpu_count() or 1)}",
        ]
    return settings + list(args.extra)


def launch(settings: list[str], log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        "TOKENIZERS_PARALLELISM": "false",
        "HYDRA_FULL_ERROR": "1",
    }
    handle = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "dps.integrations.verl", *settings],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )


def run(settings: list[str], log: Path, watch: ClusterWatch | None = None) -> float:
    started = time.perf_counter()
    process = launch(settings, log)
    while process.poll() is None:
        if watch is not None:
            watch.poll()
        time.sleep(watch.interval_s if watch is not None else 0.5)
    if process.returncode != 0:
        raise SystemExit(f"verl exited with status {process.returncode}{refusal(log)}; its output: {log}")
    return time.perf_counter() - started


def refusal(log: Path) -> str:
    """The one-line error `dps verl` ended with (a cluster without room, say), if any."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("dps verl: error:")]
    return f" ({lines[-1]})" if lines else ""


class ClusterWatch:
    """Which node each live actor of a Ray cluster runs on, polled with Ray's state CLI while
    the run lasts (the evidence that a multi-node run placed its workers on every node)."""

    def __init__(self, api: str | None, interval_s: float = 3.0) -> None:
        self.api, self.interval_s = api, interval_s
        self.ray = str(Path(sys.executable).with_name("ray"))
        self.actors: dict[str, set[str]] = {}  # actor class -> node ids
        self.nodes = self._list("nodes")

    def _list(self, what: str) -> list[dict[str, Any]]:
        # Ray's state CLI finds the cluster this machine joined (its API server, not the GCS address)
        result = subprocess.run(
            [self.ray, "list", what, "--format", "json", "--limit", "10000", "--filter", "state=ALIVE"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            return []
        try:
            return json.loads(result.stdout)
        except json.JSONDecodeError:
            return []

    def poll(self) -> None:
        if not self.nodes:  # Ray's state API may not answer yet when the run starts
            self.nodes = self._list("nodes")
        for actor in self._list("actors"):
            self.actors.setdefault(actor.get("class_name", "?"), set()).add(actor.get("node_id", "?"))

    def summary(self) -> dict[str, Any]:
        names = {n.get("node_id", "?"): n.get("node_name", "") for n in self.nodes}
        return {
            "nodes": [
                {"node_id": n.get("node_id"), "head": n.get("is_head_node"), "resources": n.get("resources_total")}
                for n in self.nodes
            ],
            "actors_by_class": {
                cls: sorted(f"{node[:12]} ({names.get(node, '')})" for node in nodes)
                for cls, nodes in sorted(self.actors.items())
            },
        }


def checkpointed(out: Path) -> int:
    """The last step verl marked as checkpointed in `out` (0 if none)."""
    marker = out / "latest_checkpointed_iteration.txt"
    try:
        return int(marker.read_text().strip())
    except (FileNotFoundError, ValueError):
        return 0


def run_and_kill(settings: list[str], log: Path, out: Path, after: int, timeout_s: float = 1800) -> int:
    """Run until the checkpoint of step `after` is complete, then SIGKILL the whole run."""
    process = launch(settings, log)
    deadline = time.monotonic() + timeout_s
    while checkpointed(out) < after:
        if process.poll() is not None:
            raise SystemExit(f"verl ended (status {process.returncode}) before the checkpoint of step {after}: {log}")
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            raise SystemExit(f"no checkpoint of step {after} within {timeout_s:.0f} s: {log}")
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return checkpointed(out)


def selections(log_path: Path) -> dict[int, list[tuple[int, int]]]:
    """Per step, the (dataset row, responses correct) of every rolled-out group, sorted."""
    from dps.logs import LogSpec, read_log

    log = read_log(log_path, LogSpec(prompt_ids="index"))
    steps: dict[int, list[tuple[int, int]]] = {}
    for step, prompt, correct in zip(log["step"], log["prompt_id"], log["n_correct"], strict=True):
        steps.setdefault(int(step), []).append((int(prompt), int(correct)))
    return {step: sorted(groups) for step, groups in sorted(steps.items())}


def policy_replays_the_log(
    log: dict[int, list[tuple[int, int]]], policy: str, seed: int, num_prompts: int, k: int
) -> bool:
    """A fresh policy fed the logged outcomes selects, step by step, exactly the logged prompts:
    the prompts verl rolled out were the policy's."""
    import numpy as np

    from dps.policies.registry import make_policy

    fresh = make_policy(policy, num_prompts=num_prompts, seed=seed)
    for groups in log.values():
        ids = np.array([p for p, _ in groups], np.int64)
        if sorted(fresh.select(len(ids)).tolist()) != ids.tolist():
            return False
        fresh.observe(ids, np.array([c for _, c in groups], np.int64), np.full(len(ids), k, np.int64))
    return True


def policy_replays_the_async_log(
    log_path: Path, policy: str, seed: int, num_prompts: int, batch: int, steps: int, warmup_batches: int = 1
) -> bool:
    """An async run's log fed to a fresh policy in the run's order (step 1: the warm-up batches
    and step 1's batch selected, then per step: that step's groups observed in flight, the next
    step's batch selected) reproduces the run's selections: every logged group's prompt is in the
    batch the fresh policy selects at its `selected_step`. For a policy without a gate (no refills)."""
    import numpy as np
    import polars as pl

    from dps.outcomes import GroupOutcomes
    from dps.policies.registry import make_policy

    log = pl.read_parquet(log_path)
    fresh = make_policy(policy, num_prompts=num_prompts, seed=seed)
    if fresh.max_rounds > 1:
        raise ValueError(f"policy {policy} has a gate: its refills are not in the log")
    selected: dict[int, set[int]] = {1: set()}
    for _ in range(warmup_batches + 1):
        selected[1] |= set(fresh.select(batch).tolist())
    for step in range(1, steps + 1):
        rows = log.filter(pl.col("step") == step)
        ids, correct, sizes = (rows[c].to_numpy().astype(np.int64) for c in ("prompt_id", "n_correct", "n_rollouts"))
        fresh.observe_groups(GroupOutcomes.counts(ids, correct, sizes), in_flight=True)
        if step < steps:
            selected[step + 1] = set(fresh.select(batch).tolist())
    return all(prompt in selected[at] for prompt, at in zip(log["prompt_id"], log["selected_step"], strict=True))


def in_flight_record(log_path: Path) -> dict[str, Any]:
    """An async run's log: per observing step, how many groups it observed and the steps that
    selected them; the share of groups observed at a later step than they were selected at."""
    import polars as pl

    log = pl.read_parquet(log_path)
    steps = {
        str(step): sorted(log.filter(pl.col("step") == step)["selected_step"].to_list())
        for step in sorted(set(log["step"].to_list()))
    }
    late = float((log["step"] > log["selected_step"]).sum()) / log.height if log.height else 0.0
    return {"selected_steps_by_observing_step": steps, "observed_later_share": late}


def step_metrics(path: Path) -> list[dict[str, float]]:
    """verl's per-step timings and the policy's share, from its file logger."""
    rows = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        data = record.get("data", record)
        if "timing_s/step" not in data:
            continue
        rows.append(
            {
                "step": int(record.get("step", data.get("training/global_step", 0))),
                "step_s": float(data["timing_s/step"]),
                "gen_s": float(data.get("timing_s/gen", 0.0)),
                "update_actor_s": float(data.get("timing_s/update_actor", 0.0)),
                "policy_s": float(data.get("dps/policy_seconds", 0.0)),
                "policy_share": float(data.get("dps/policy_share_of_step", 0.0)),
                "staleness_mean": float(data.get("training/off_policy/trajectory_staleness/mean", 0.0)),
                "groups_in_flight": float(data.get("dps/groups_in_flight", 0.0)),
                "effective_share": float(data.get("dps/partial_share_rolled_out", 0.0)),
            }
        )
    return rows


def replay_check(out: Path, batch: int, dps_cli: list[str]) -> dict[str, Any]:
    """`dps replay` on the run's log: US and DPS against the logged rewards."""
    scenario = out / "replay.toml"
    scenario.write_text(
        'name = "verl-cpu-demo"\n[world]\nlog = "rollouts.parquet"\n'
        f"[run]\nbatch_size = {batch}\nseeds = [0]\n"
        '[[policies]]\nname = "US"\ntype = "uniform"\n[[policies]]\nname = "DPS"\ntype = "dps"\ndecay = 0.7\n'
    )
    result = subprocess.run(
        [*dps_cli, "replay", str(scenario), "--out", str(out / "replay"), "--no-plots", "--quiet", "--workers", "1"],
        capture_output=True,
        text=True,
    )
    return {"returncode": result.returncode, "output": (result.stdout + result.stderr)[-2000:]}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=4, help="prompts per step (B)")
    parser.add_argument("--k", type=int, default=8, help="responses per prompt")
    parser.add_argument("--workers", type=int, default=1, help="training workers per node (trainer.n_gpus_per_node)")
    parser.add_argument("--nodes", type=int, default=1, help="trainer.nnodes")
    parser.add_argument("--address", default=None, help="an existing Ray cluster (default: a local one)")
    parser.add_argument("--dashboard", default=None, help="with --address: its dashboard, for the placement record")
    parser.add_argument(
        "--mode", default="sync", choices=sorted(MODES), help="verl's sync trainer, or colocate_async (one batch ahead)"
    )
    parser.add_argument("--policy", default="dps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=None, help="a Hugging Face folder instead of the tiny Qwen2")
    parser.add_argument(
        "--device", default="cpu", choices=["cpu", "cuda"], help="trainer.device (cuda: verl's GPU path)"
    )
    parser.add_argument(
        "--task",
        choices=sorted(SETTINGS),
        default="arithmetic",
        help="arithmetic (a tiny Qwen2) or figures (image prompts, a tiny Qwen2-VL)",
    )
    parser.add_argument("--prompt-length", type=int, default=None, help="data.max_prompt_length (tokens)")
    parser.add_argument("--response-length", type=int, default=None, help="data.max_response_length (tokens)")
    parser.add_argument("--resume-check", action="store_true", help="also kill a second run and resume it")
    parser.add_argument("--kill-after", type=int, default=2, help="the step whose checkpoint the kill waits for")
    parser.add_argument("--no-replay", action="store_true")
    parser.add_argument("--dps", default=None, help="the dps command for the replay check (default: dps on PATH)")
    parser.add_argument("extra", nargs="*", help="more Hydra overrides")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.resume_check and args.mode != "sync":
        parser.error("--resume-check runs with --mode sync (the async resume is tested in tests/integrations/verl)")
    if args.resume_check and not 0 < args.kill_after < args.steps:
        parser.error(f"--kill-after must be between 1 and --steps - 1, got {args.kill_after}")
    out = args.out.resolve()
    if (out / "rollouts.parquet").exists() or checkpointed(out):
        parser.error(f"{out} holds a run already: give an empty or new folder")
    out.mkdir(parents=True, exist_ok=True)
    train, val, model = prepare(out, args.model, args.task)
    summary: dict[str, Any] = {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "k": args.k,
        "workers": args.workers,
        "nodes": args.nodes,
        "policy": args.policy,
        "task": args.task,
        "mode": args.mode,
    }
    watch = ClusterWatch(args.dashboard) if args.address else None
    summary["wall_s"] = run(overrides(args, out, train, val, model), out / "verl.log", watch)
    if watch is not None:
        summary["cluster"] = watch.summary()
    summary["step_metrics"] = step_metrics(out / "metrics.jsonl")
    straight = selections(out / "rollouts.parquet")
    summary["selected"] = {str(step): [p for p, _ in groups] for step, groups in straight.items()}
    if args.mode == "sync":
        summary["log_replays_the_selection"] = policy_replays_the_log(straight, args.policy, args.seed, N_TRAIN, args.k)
    else:
        summary["in_flight"] = in_flight_record(out / "rollouts.parquet")
        summary["log_replays_the_selection"] = policy_replays_the_async_log(
            out / "rollouts.parquet", args.policy, args.seed, N_TRAIN, args.batch_size, args.steps
        )
    if not args.no_replay:
        dps_cli = [args.dps] if args.dps else [shutil.which("dps") or "dps"]
        summary["replay"] = replay_check(out, args.batch_size, dps_cli)
    if args.resume_check:
        resumed_dir = out / "resumed"
        resumed_dir.mkdir(exist_ok=True)
        settings = overrides(args, resumed_dir, train, val, model)
        summary["killed_after_checkpoint"] = run_and_kill(
            settings, resumed_dir / "verl.log", resumed_dir, args.kill_after
        )
        summary["resume_wall_s"] = run(settings + ["trainer.resume_mode=auto"], resumed_dir / "verl.log")
        resumed = selections(resumed_dir / "rollouts.parquet")
        summary["resumed_selected"] = {str(step): [p for p, _ in groups] for step, groups in resumed.items()}
        summary["resume_matches"] = resumed == straight
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k not in ("selected", "resumed_selected")}, indent=1))
    if not summary.get("log_replays_the_selection", True):
        raise SystemExit("a fresh policy fed the log selects other prompts than the run did (see summary.json)")
    if args.resume_check and not summary["resume_matches"]:
        raise SystemExit("the resumed run selected other prompts than the uninterrupted run (see summary.json)")
    if not args.no_replay and summary["replay"]["returncode"] != 0:
        raise SystemExit("dps replay refused the run's log (see summary.json)")


if __name__ == "__main__":
    main()
