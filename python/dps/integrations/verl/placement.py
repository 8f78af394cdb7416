"""Where a verl run's actors fit on a Ray cluster: pure functions over each node's free resources
(no Ray here; `dps.integrations.verl.cluster` reads the cluster and applies the answer).

A verl 0.9.1 run asks Ray for three kinds of room:

* its **worker groups**: one STRICT_PACK placement group per node a resource pool spans, each of
  ``n_gpus_per_node`` bundles ``{CPU: 3, GPU: 1}`` (`RayResourcePool.get_placement_groups`,
  verl/single_controller/ray/base.py:131-160); verl waits for them without a time limit;
* **TransferQueue's controller**, one CPU for the run's life, created from the task runner with
  Ray's default scheduling, which keeps it on the task runner's node while that node has room;
* **TransferQueue's storage units**, one CPU each, pinned to the alive nodes in the order of their
  ids (`get_node_round_robin_scheduling_strategies`, transfer_queue/utils/common.py:48-85).

Where the task runner lands thus decides whether the worker groups still fit: on two nodes of
4 CPUs with one worker each, the controller and a storage unit on the same node leave it 2 CPUs
where its worker group needs 3, and the run waits forever. `driver_node` picks the node for the
task runner (and so the controller) with which every group fits, or says what is missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

Resources = Mapping[str, float]

#: How to give a cluster more room (a CPU worker slot is a Ray GPU resource: `dps.integrations.verl.cpu`).
ROOM_HINT = (
    "Give the nodes more CPUs or worker slots (ray start --num-cpus / --num-gpus; for a local cluster "
    "ray_kwargs.ray_init.num_cpus / num_gpus; a CPU worker slot is a GPU resource)"
)
#: Ray resources every node carries that say nothing about room (left out of messages).
_HIDDEN = ("memory", "object_store_memory", "node:")


class PlacementError(ValueError):
    """The cluster has no room for what the run needs; the message names what is missing."""


@dataclass(frozen=True)
class Node:
    node_id: str
    free: Resources
    head: bool = False

    @property
    def label(self) -> str:
        return f"{self.node_id[:12]}{' (head)' if self.head else ''}"


@dataclass(frozen=True)
class Group:
    """Bundles that must share one node (a STRICT_PACK placement group, or one actor)."""

    name: str
    bundles: tuple[Resources, ...]
    node_id: str | None = None  # pinned to this node (an actor with hard node affinity)

    @property
    def need(self) -> dict[str, float]:
        return add({}, *self.bundles)


@dataclass(frozen=True)
class Driver:
    """What the run places besides its workers: the controller beside the task runner, and the
    storage units on the nodes TransferQueue pins them to."""

    controller: Resources = field(default_factory=lambda: {"CPU": 1.0})
    storage: tuple[Group, ...] = ()


def add(total: dict[str, float], *parts: Resources) -> dict[str, float]:
    for part in parts:
        for key, value in part.items():
            total[key] = total.get(key, 0.0) + float(value)
    return total


def covers(free: Resources, need: Resources) -> bool:
    return all(free.get(key, 0.0) >= value - 1e-9 for key, value in need.items() if value > 0)


def describe(resources: Resources) -> str:
    shown = {k: v for k, v in resources.items() if not k.startswith(_HIDDEN)}
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(shown.items())) + "}"


def describe_group(group: Group) -> str:
    shapes: dict[str, int] = {}
    for bundle in group.bundles:
        shapes[describe(bundle)] = shapes.get(describe(bundle), 0) + 1
    return f"{group.name} " + " + ".join(f"{n} x {shape}" for shape, n in shapes.items())


def worker_groups(pools: Mapping[str, Sequence[int]], cpus_per_worker: float, slot: str) -> list[Group]:
    """verl's placement groups for `pools` (pool name -> workers per node, its
    `resource_pool_spec`): one per node, each worker a bundle {CPU: cpus_per_worker, slot: 1}."""
    return [
        Group(f"{pool}[{i}]", tuple({"CPU": float(cpus_per_worker), slot: 1.0} for _ in range(count)))
        for pool, counts in pools.items()
        for i, count in enumerate(counts)
        if count > 0
    ]


def fit(groups: Iterable[Group], nodes: Sequence[Node]) -> dict[str, str] | None:
    """A node for each group (pinned groups on their node, several groups may share a node)
    such that every node's free resources cover its groups; None if there is none."""
    ordered = sorted(groups, key=lambda g: (g.node_id is None, -sum(g.need.values())))
    free = {node.node_id: dict(node.free) for node in nodes}
    chosen: dict[str, str] = {}

    def place(i: int) -> bool:
        if i == len(ordered):
            return True
        group, need = ordered[i], ordered[i].need
        candidates = [group.node_id] if group.node_id is not None else list(free)
        for node_id in candidates:
            if node_id in free and covers(free[node_id], need):
                free[node_id] = add(free[node_id], {k: -v for k, v in need.items()})
                chosen[group.name] = node_id
                if place(i + 1):
                    return True
                free[node_id] = add(free[node_id], need)
                del chosen[group.name]
        return False

    return chosen if place(0) else None


def candidates(nodes: Sequence[Node]) -> list[Node]:
    """The nodes a task runner may go to, in order of preference: the head first (where the
    driver usually is), then by node id."""
    return sorted(nodes, key=lambda n: (not n.head, n.node_id))


def driver_node(workers: Sequence[Group], driver: Driver, nodes: Sequence[Node]) -> str:
    """The first node (see `candidates`) where the task runner and its controller can go with
    every worker group and storage unit still fitting. PlacementError names what is missing."""
    for node in candidates(nodes):
        controller = Group("TransferQueue controller", (driver.controller,), node.node_id)
        if fit([*workers, *driver.storage, controller], nodes) is not None:
            return node.node_id
    raise PlacementError(shortfall(workers, driver, nodes))


def shortfall(workers: Sequence[Group], driver: Driver, nodes: Sequence[Node]) -> str:
    """What the cluster lacks: the groups left over when the driver's actors go to the first
    candidate node and the worker groups are placed largest first."""
    free = {node.node_id: dict(node.free) for node in nodes}
    first = candidates(nodes)[0].node_id if nodes else None
    controller = Group("TransferQueue controller", (driver.controller,), first)
    missing = []
    for group in [*driver.storage, controller, *sorted(workers, key=lambda g: -sum(g.need.values()))]:
        options = [group.node_id] if group.node_id is not None else list(free)
        home = next((n for n in options if n in free and covers(free[n], group.need)), None)
        if home is None:
            where = f" on node {group.node_id[:12]}" if group.node_id is not None else " on one node"
            missing.append(describe_group(group) + where)
        else:
            free[home] = add(free[home], {k: -v for k, v in group.need.items()})
    wanted = "; ".join(describe_group(g) for g in workers)
    extra = "; ".join(describe_group(g) + f" on node {(g.node_id or '?')[:12]}" for g in driver.storage)
    return (
        f"the Ray cluster has no room for this run: missing {'; '.join(missing) or 'room for the whole set'}. "
        f"It needs the worker groups ({wanted}), TransferQueue's controller {describe(driver.controller)} "
        f"beside the task runner{' and its storage units (' + extra + ')' if extra else ''}; "
        f"free now: {', '.join(f'node {n.label} {describe(n.free)}' for n in nodes) or 'no alive node'}. "
        f"{ROOM_HINT}, or ask for fewer workers (trainer.nnodes, trainer.n_gpus_per_node, "
        "transfer_queue.backend.SimpleStorage.num_data_storage_units)"
    )
