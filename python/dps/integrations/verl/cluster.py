"""The launcher's side of placement (`placement` has the rules): once Ray is up, pin verl's task
runner to a node where the whole run fits, refuse at once a cluster without room, and end a run
that something left waiting for resources longer than ``dps.placement_timeout_s``.

`PlacedTaskRunner` is what `python -m dps.integrations.verl` hands to verl's `run_ppo` as its
task runner class: `run_ppo` calls ``.remote()`` right after ``ray.init``
(verl/trainer/main_ppo.py:92), which is when the cluster can be read.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import ray
from omegaconf import OmegaConf
from ray.util.placement_group import placement_group_table
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from dps.integrations.verl.placement import (
    ROOM_HINT,
    Driver,
    Group,
    Node,
    PlacementError,
    describe,
    driver_node,
    worker_groups,
)


def cluster_nodes() -> list[Node]:
    """The alive nodes and what each has free now (verl's own check reads the same table)."""
    free = ray._private.state.available_resources_per_node()
    return [
        Node(node["NodeID"], free.get(node["NodeID"], {}), "node:__internal_head__" in node["Resources"])
        for node in ray.nodes()
        if node["Alive"]
    ]


def run_worker_groups(config: Any) -> list[Group]:
    """verl's worker groups for `config`: the pools of `PPOTrainer._init_resource_pool_mgr`
    (verl/trainer/ppo/v1/trainer_base.py:816-846), bundles as `RayResourcePool` makes them."""
    from verl.plugin.platform import get_platform
    from verl.single_controller.ray.base import ResourcePoolManager
    from verl.trainer.distillation import is_distillation_enabled

    trainer = config.trainer
    pools = {"global_pool": [int(trainer.n_gpus_per_node)] * int(trainer.nnodes)}
    reward_model = config.reward.reward_model
    if reward_model.get("enable_resource_pool", False):
        pools["reward_pool"] = [int(reward_model.n_gpus_per_node)] * int(reward_model.nnodes)
    distillation = config.get("distillation", None)
    if is_distillation_enabled(distillation):
        pools["teacher_pool"] = [int(distillation.n_gpus_per_node)] * int(distillation.nnodes)
    cpus = ResourcePoolManager.__dataclass_fields__["max_colocate_count"].default
    return worker_groups(pools, cpus, get_platform().ray_resource_name())


def run_driver(config: Any) -> Driver:
    """TransferQueue's controller and storage units for `config`, on the nodes TransferQueue will
    pick (its own function, called on the same cluster)."""
    from transfer_queue.controller import TransferQueueController
    from transfer_queue.storage.simple_storage import SimpleStorageUnit
    from transfer_queue.utils.common import get_node_round_robin_scheduling_strategies

    controller = {"CPU": float(TransferQueueController._default_options.get("num_cpus", 1))}
    backend = OmegaConf.select(config, "transfer_queue.backend", default=None) or {}
    if backend.get("storage_backend", "SimpleStorage") != "SimpleStorage":
        return Driver(controller)
    simple = backend.get("SimpleStorage", None) or {}
    units = int(simple.get("num_data_storage_units", 2))
    try:
        strategies = get_node_round_robin_scheduling_strategies(units, simple.get("required_node_resource", None))
    except ValueError as e:  # a required_node_resource no node has
        raise PlacementError(f"transfer_queue.backend.SimpleStorage: {e}") from e
    unit = {"CPU": float(SimpleStorageUnit._default_options.get("num_cpus", 1))}
    return Driver(
        controller,
        tuple(Group(f"TransferQueue storage unit {i}", (unit,), s.node_id) for i, s in enumerate(strategies)),
    )


class PlacedTaskRunner:
    """A task runner actor class, as `run_ppo` uses it, placed with care: ``.remote()`` pins the
    actor (hence TransferQueue's controller, which Ray keeps beside it) to
    `placement.driver_node`'s choice, raising `PlacementError` if the cluster has no room, and
    starts a `Watch`. ``timeout_s=None``: no check, no pin, no watch (verl's own behaviour, for
    a cluster that autoscales)."""

    def __init__(self, actor_class: Any, config: Any, timeout_s: float | None, **options: Any) -> None:
        self.actor_class, self.config, self.timeout_s, self._options = actor_class, config, timeout_s, options
        self.watch: Watch | None = None

    def options(self, **options: Any) -> PlacedTaskRunner:
        """As an actor class's: more options for the actor (verl passes a runtime_env to profile)."""
        self._options.update(options)
        return self

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        options = dict(self._options)
        if self.timeout_s is not None:
            node = driver_node(run_worker_groups(self.config), run_driver(self.config), cluster_nodes())
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
        handle = self.actor_class.options(**options).remote(*args, **kwargs)
        if self.timeout_s is not None:
            self.watch = Watch(handle, self.timeout_s)
            self.watch.start()
        return handle

    @property
    def failure(self) -> str | None:
        return self.watch.failure if self.watch is not None else None

    def stop(self) -> None:
        if self.watch is not None:
            self.watch.stopped.set()


class Watch(threading.Thread):
    """Ends the run (kills its task runner, whose `ray.get` in the driver then fails) once a
    placement group created after the watch began, or an actor of this job, has waited
    `timeout_s` for resources; `failure` then says what waited and what each node has free."""

    def __init__(self, runner: Any, timeout_s: float, poll_s: float = 2.0) -> None:
        super().__init__(name="dps-placement-watch", daemon=True)
        self.runner, self.timeout_s, self.poll_s = runner, float(timeout_s), poll_s
        self.job = ray.JobID.from_hex(ray.get_runtime_context().get_job_id())
        self.earlier = set(placement_group_table())  # other jobs' groups, not ours to judge
        self.since: dict[str, float] = {}
        self.failure: str | None = None
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.poll_s):
            try:
                waiting = self.waiting()
            except Exception:  # Ray's tables unreadable for a moment: the run goes on
                continue
            now = time.monotonic()
            self.since = {key: self.since.get(key, now) for key in waiting}
            late = [waiting[key] for key, since in self.since.items() if now - since >= self.timeout_s]
            if late:
                self.failure = self.report(late)
                ray.kill(self.runner, no_restart=True)
                return

    def waiting(self) -> dict[str, str]:
        """What waits for resources now, by id: placement groups not created yet, and actors
        not given a worker process yet (pid 0; an actor starting up has its pid)."""
        found = {}
        for pg_id, info in placement_group_table().items():
            if pg_id not in self.earlier and info["state"] in ("PENDING", "RESCHEDULING"):
                bundles = " + ".join(describe(b) for b in info["bundles"].values())
                found[pg_id] = f"placement group {info['name']} ({bundles}, {info['strategy']})"
        for actor_id, info in ray._private.state.actors(job_id=self.job, actor_state_name="PENDING_CREATION").items():
            if not info["Pid"]:
                found[actor_id] = f"actor {info['ActorClassName']}"
        return found

    def report(self, late: list[str]) -> str:
        holders: dict[str, list[str]] = {}
        for info in ray._private.state.actors(job_id=self.job, actor_state_name="ALIVE").values():
            holders.setdefault(info["Address"]["NodeID"], []).append(info["ActorClassName"])
        nodes = "; ".join(
            f"node {n.label} {describe(n.free)}"
            + (f" running {', '.join(sorted(holders[n.node_id]))}" if n.node_id in holders else "")
            for n in cluster_nodes()
        )
        return (
            f"{', '.join(late)} waited {self.timeout_s:g} s for resources the Ray cluster does not have free "
            f"(dps.placement_timeout_s); free now: {nodes}. {ROOM_HINT}, ask for fewer workers, or raise "
            "dps.placement_timeout_s (null: wait without limit, as verl does)"
        )
