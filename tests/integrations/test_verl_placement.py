"""Where a verl run's actors go on a Ray cluster (`dps.integrations.verl.placement`, no Ray, no
verl): the two-node hang of docs/results.md#verl-two-nodes, and the refusal of a cluster without
room."""

from __future__ import annotations

import pytest

from dps.integrations.verl.placement import (
    Driver,
    Group,
    Node,
    PlacementError,
    describe,
    driver_node,
    fit,
    worker_groups,
)

HEAD, SECOND = "1" * 56, "f" * 56  # node ids; TransferQueue pins its storage unit to the first in order
SLOT = {"CPU": 4.0, "GPU": 1.0, "memory": 1e10, "object_store_memory": 1e9, "node:192.0.2.2": 1.0}


def docs_cluster(head: str = HEAD, second: str = SECOND) -> list[Node]:
    """The docs' two nodes: 4 CPUs and one worker slot each."""
    return [Node(head, dict(SLOT), head=True), Node(second, dict(SLOT))]


def one_worker_per_node(nodes: int = 2) -> list[Group]:
    return worker_groups({"global_pool": [1] * nodes}, cpus_per_worker=3, slot="GPU")


def storage_on(node_id: str) -> Driver:
    return Driver(storage=(Group("TransferQueue storage unit 0", ({"CPU": 1.0},), node_id),))


def test_worker_groups_are_one_strict_pack_group_per_node_of_each_pool():
    groups = worker_groups({"global_pool": [2, 2], "reward_pool": [1]}, cpus_per_worker=3, slot="GPU")
    assert [g.name for g in groups] == ["global_pool[0]", "global_pool[1]", "reward_pool[0]"]
    assert groups[0].bundles == ({"CPU": 3.0, "GPU": 1.0}, {"CPU": 3.0, "GPU": 1.0})
    assert groups[0].need == {"CPU": 6.0, "GPU": 2.0}


def test_the_two_node_hang_is_the_controller_beside_the_storage_unit():
    """What the hung run had: task runner, controller and storage unit on one node, which keeps
    2 of its 4 CPUs free where its worker group needs 3; no placement of the groups exists."""
    controller_on_head = Group("TransferQueue controller", ({"CPU": 1.0},), HEAD)
    [storage] = storage_on(HEAD).storage
    assert fit([*one_worker_per_node(), storage, controller_on_head], docs_cluster()) is None
    controller_on_second = Group("TransferQueue controller", ({"CPU": 1.0},), SECOND)
    assert fit([*one_worker_per_node(), storage, controller_on_second], docs_cluster()) is not None


@pytest.mark.parametrize("storage, driver", [(HEAD, SECOND), (SECOND, HEAD)])
def test_the_task_runner_goes_where_the_worker_groups_still_fit(storage, driver):
    """Whichever node TransferQueue's storage unit is pinned to, the task runner (and the
    controller beside it) goes to the other one; with room on both, the head is preferred."""
    assert driver_node(one_worker_per_node(), storage_on(storage), docs_cluster()) == driver


def test_with_room_everywhere_the_task_runner_stays_on_the_head():
    roomy = [Node(HEAD, {"CPU": 16.0, "GPU": 1.0}, head=True), Node(SECOND, {"CPU": 16.0, "GPU": 1.0})]
    assert driver_node(one_worker_per_node(), storage_on(HEAD), roomy) == HEAD


def test_a_cluster_without_room_for_a_worker_group_is_refused_naming_what_is_missing():
    nodes = [Node(HEAD, {"CPU": 2.0, "GPU": 1.0, "memory": 1e10}, head=True)]
    with pytest.raises(PlacementError) as refused:
        driver_node(one_worker_per_node(1), storage_on(HEAD), nodes)
    message = str(refused.value)
    assert "missing global_pool[0] 1 x {CPU: 3, GPU: 1} on one node" in message
    assert f"free now: node {HEAD[:12]} (head) {{CPU: 2, GPU: 1}}" in message  # memory is left out
    assert "ray start --num-cpus / --num-gpus" in message


def test_a_missing_worker_slot_is_named():
    nodes = [Node(HEAD, {"CPU": 8.0, "GPU": 1.0}, head=True), Node(SECOND, {"CPU": 8.0})]
    with pytest.raises(PlacementError, match=r"missing global_pool\[1\] 1 x \{CPU: 3, GPU: 1\} on one node"):
        driver_node(one_worker_per_node(2), storage_on(HEAD), nodes)


def test_a_storage_unit_pinned_to_a_full_node_is_named():
    nodes = [Node(HEAD, {"CPU": 0.5, "GPU": 1.0}, head=True), Node(SECOND, {"CPU": 8.0, "GPU": 1.0})]
    with pytest.raises(
        PlacementError, match=rf"missing TransferQueue storage unit 0 1 x \{{CPU: 1\}} on node {HEAD[:12]}"
    ):
        driver_node(one_worker_per_node(1), storage_on(HEAD), nodes)


def test_groups_may_share_a_node_and_pinned_ones_stay_on_theirs():
    nodes = [Node(HEAD, {"CPU": 8.0, "GPU": 2.0}, head=True), Node(SECOND, {"CPU": 1.0})]
    groups = [*worker_groups({"global_pool": [1, 1]}, 3, "GPU"), Group("pinned", ({"CPU": 1.0},), SECOND)]
    assert fit(groups, nodes) == {"pinned": SECOND, "global_pool[0]": HEAD, "global_pool[1]": HEAD}


def test_fit_looks_past_its_first_choice():
    """Largest first puts the 4-CPU group on A; the two 3-CPU groups then need it on B."""
    nodes = [Node("a", {"CPU": 6.0}), Node("b", {"CPU": 4.0})]
    groups = [Group("four", ({"CPU": 4.0},)), Group("three", ({"CPU": 3.0},)), Group("three'", ({"CPU": 3.0},))]
    assert fit(groups, nodes) == {"four": "b", "three": "a", "three'": "a"}


def test_describe_leaves_out_what_says_nothing_about_room():
    assert describe(SLOT) == "{CPU: 4, GPU: 1}"
