"""parse.py, heterogeneous jobs: the top-level ``tasks[]`` (SDK ``TaskResponse``) as roles, each
with the flavour of its ``task_resource``, bounded at the edge like every other field."""

from __future__ import annotations

from typing import Any

import pytest

from monitor.core.job import ACCELERATORS_PER_NODE, TASK_ROLES, TaskRole
from monitor.core.text import LABEL_LIMIT
from monitor.errors import InvalidResponse
from monitor.modelarts.parse import parse_job
from tests.conftest import job_doc


def with_tasks(tasks: Any) -> dict[str, Any]:
    doc = job_doc()
    doc["tasks"] = tasks
    return doc


LEARNER = {
    "role": "learner",
    "task_resource": {
        "pool_id": "pool-a",
        "flavor_id": "modelarts.vm.gpu.8v100",
        "flavor_name": "GPU: 8*V100",
        "max_num": 16,
        "flavor_type": "GPU",
        "flavor_info": {"gpu": {"unit_num": 8, "product_name": "V100"}},
    },
}
ROLLOUT = {
    "role": "rollout",
    "task_resource": {
        "flavor_id": "modelarts.kat1.xlarge",
        "flavor_type": "Ascend",
        "flavor_info": {"npu": {"unit_num": "1"}},  # a string in the SDK's Npu
    },
}


def test_each_role_keeps_its_own_flavour_and_cards_per_node_in_the_apis_order() -> None:
    snap = parse_job(with_tasks([LEARNER, ROLLOUT, {"task_resource": {"flavor_type": "CPU"}}]))
    assert snap.roles == (
        TaskRole("learner", "modelarts.vm.gpu.8v100", "GPU: 8*V100", "GPU", "pool-a", "gpu", 8),
        TaskRole("rollout", "modelarts.kat1.xlarge", "", "Ascend", "", "npu", 1),
        TaskRole(flavor_type="CPU"),  # the reference: roles are "not supported yet", so empty
    )


@pytest.mark.parametrize("tasks", [None, []], ids=["absent", "empty"])
def test_an_ordinary_job_has_no_roles(tasks: Any) -> None:
    doc = job_doc() if tasks is None else with_tasks(tasks)
    assert parse_job(doc).roles == ()


def test_a_role_name_is_bounded_like_every_label_value() -> None:
    snap = parse_job(with_tasks([{"role": "learner\n" + "x" * 500}]))
    assert "\n" not in snap.roles[0].role and len(snap.roles[0].role) <= LABEL_LIMIT


@pytest.mark.parametrize(
    ("tasks", "field", "why"),
    [
        ({"role": "learner"}, "tasks", "expected an array"),
        (["learner"], "tasks[0]", "expected an object"),
        ([{"role": 7}], "tasks[0].role", "expected a string"),
        ([{"task_resource": []}], "tasks[0].task_resource", "expected an object"),
        (
            [LEARNER, {"task_resource": {"flavor_info": {"gpu": {"unit_num": 4096}}}}],
            "tasks[1].task_resource.flavor_info.gpu.unit_num",
            f"outside 0..{ACCELERATORS_PER_NODE.high}",
        ),
        (
            [{"task_resource": {"flavor_info": {"npu": {"unit_num": "eight"}}}}],
            "tasks[0].task_resource.flavor_info.npu.unit_num",
            "expected a whole number",
        ),
        ([{}] * (TASK_ROLES + 1), "tasks", f"more than the {TASK_ROLES} a job can mean"),
    ],
    ids=["not-a-list", "not-an-object", "role-number", "resource-list", "gpus", "npus", "too-many"],
)
def test_a_role_it_cannot_be_makes_the_poll_invalid_naming_the_field(
    tasks: Any, field: str, why: str
) -> None:
    with pytest.raises(InvalidResponse) as caught:
        parse_job(with_tasks(tasks))
    assert str(caught.value).startswith(f"{field}: ")
    assert why in str(caught.value)
