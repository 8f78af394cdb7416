"""The launcher on a real Ray cluster (run by `make test-verl`): a cluster without room for a
worker group is refused with one line before anything starts, and a placement group or actor
left waiting for resources ends the run after ``dps.placement_timeout_s``.

The two-node case itself (docs/results.md#verl-two-nodes) takes minutes of two `ray start`
nodes; the decision it needs is tested without Ray in tests/integrations/test_verl_placement.py.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("verl.trainer.ppo.v1", reason="verl is tested in its own venv: make test-verl")

import ray  # noqa: E402
from ray.exceptions import RayActorError  # noqa: E402
from ray.util.placement_group import placement_group, remove_placement_group  # noqa: E402
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # noqa: E402

from dps.integrations.verl import demo  # noqa: E402
from dps.integrations.verl.cluster import Watch, run_driver, run_worker_groups  # noqa: E402
from dps.integrations.verl.placement import worker_groups  # noqa: E402


@ray.remote(num_cpus=0)
class Idle:
    def ping(self) -> int:
        return 1


@pytest.fixture(scope="module")
def cluster():
    """One node of 2 CPUs and one worker slot: too small for a worker group ({CPU: 3, GPU: 1})."""
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().get_node_id()
    ray.shutdown()


def composed(*overrides: str):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(Path(demo.__file__).with_name("config")), version_base=None):
        return compose("dps_trainer", overrides=list(overrides))


def test_the_launcher_reads_the_run_as_verl_and_transfer_queue_will_place_it(cluster):
    """The worker groups are verl's own resource pools (its `_init_resource_pool_mgr` on the same
    config), and the storage units sit where TransferQueue's own rule puts them."""
    from dps.integrations.verl.trainer import DPSTrainer

    config = composed(
        "trainer.nnodes=2",
        "trainer.n_gpus_per_node=2",
        "reward.reward_model.enable_resource_pool=true",
        "reward.reward_model.nnodes=1",
        "reward.reward_model.n_gpus_per_node=1",
        "transfer_queue.backend.SimpleStorage.num_data_storage_units=3",
    )
    verls = DPSTrainer.__new__(DPSTrainer)  # verl's own _init_resource_pool_mgr
    verls.config = config
    verls._init_resource_pool_mgr()
    assert run_worker_groups(config) == worker_groups(verls.resource_pool_manager.resource_pool_spec, 3, "GPU")
    assert [g.name for g in run_worker_groups(config)] == ["global_pool[0]", "global_pool[1]", "reward_pool[0]"]
    driver = run_driver(config)
    assert driver.controller == {"CPU": 1.0}
    assert [(g.node_id, g.need) for g in driver.storage] == [(cluster, {"CPU": 1.0})] * 3


def test_a_placement_group_waiting_past_the_timeout_ends_the_run(cluster):
    someone_elses = placement_group([{"CPU": 3, "GPU": 1}], strategy="STRICT_PACK", name="not-this-run")
    runner = Idle.remote()
    watch = Watch(runner, timeout_s=2, poll_s=0.2)
    watch.start()
    time.sleep(3)
    assert watch.failure is None  # a group that waited before the run began is not the run's
    ours = placement_group([{"CPU": 3, "GPU": 1}], strategy="STRICT_PACK", name="global_poolverl_group_1:0")
    watch.join(timeout=30)
    try:
        assert watch.failure is not None
        assert watch.failure.startswith(
            "placement group global_poolverl_group_1:0 ({CPU: 3, GPU: 1}, STRICT_PACK) waited 2 s for resources"
        )
        assert f"free now: node {cluster[:12]} (head) {{CPU: 2, GPU: 1}} running Idle" in watch.failure
        with pytest.raises(RayActorError):  # the task runner is killed: the driver's ray.get ends
            ray.get(runner.ping.remote(), timeout=60)
    finally:
        remove_placement_group(ours)
        remove_placement_group(someone_elses)


def test_an_actor_waiting_past_the_timeout_ends_the_run(cluster):
    """A storage unit pinned to a node whose CPUs are taken waits for ever in verl."""
    runner = Idle.remote()
    holder = Idle.options(num_cpus=2).remote()
    ray.get(holder.ping.remote())
    waiting = Idle.options(num_cpus=1, scheduling_strategy=NodeAffinitySchedulingStrategy(cluster, soft=False)).remote()
    watch = Watch(runner, timeout_s=2, poll_s=0.2)
    watch.start()
    watch.join(timeout=30)
    try:
        assert watch.failure is not None and watch.failure.startswith("actor Idle waited 2 s for resources")
    finally:
        ray.kill(waiting)
        ray.kill(holder)


def test_a_cluster_without_room_for_a_worker_group_is_refused_in_one_line(tmp_path):
    """`python -m dps.integrations.verl` on a local Ray cluster of 2 CPUs, where the worker group
    needs 3: exit status 2 and one line naming what is missing, before any worker starts."""
    out = tmp_path / "run"
    train, val, model = demo.prepare(out, None)
    args = demo.build_parser().parse_args(["--out", str(out)])
    settings = [
        "ray_kwargs.ray_init.num_cpus=2" if s.startswith("ray_kwargs.ray_init.num_cpus=") else s
        for s in demo.overrides(args, out, train, val, model)
    ]
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "dps.integrations.verl", *settings],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    elapsed = time.perf_counter() - started
    assert result.returncode == 2, result.stderr[-3000:]
    [line] = [line for line in result.stderr.splitlines() if line.startswith("dps verl: error:")]
    assert "the Ray cluster has no room for this run: missing global_pool[0] 1 x {CPU: 3, GPU: 1} on one node" in line
    assert "free now: node" in line and "{CPU: 2, GPU: 1}" in line
    assert "Traceback" not in result.stderr
    assert not (out / "global_step_1").exists()
    print(f"refused after {elapsed:.1f} s (Python, verl's imports and a local Ray start included)")
