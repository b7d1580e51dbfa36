"""The role families of a heterogeneous job: one series per entry of ``tasks[]``, told apart by
its position, so two roles with the same (or no) name never render a duplicate series."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from monitor.core.diff import observe
from monitor.exposition.series import SeriesStore
from monitor.modelarts.parse import parse_job
from tests.conftest import job_doc

JOB = 'job_id="3faf5c03-aaa1-4cbe-879d-24b05d997347",job_name="train-a"'


def rendered(tasks: list[dict[str, object]]) -> list[str]:
    doc = job_doc()
    doc["tasks"] = tasks
    store = SeriesStore(project_id="p")
    store.update(observe(None, parse_job(doc), 1.0)[0], {})
    text = store.render().decode()
    list(text_string_to_metric_families(text))  # the scrape parses: no duplicate series
    return [line for line in text.splitlines() if line.startswith("modelarts_training_job_role")]


def test_each_role_is_exported_with_its_flavour_and_cards_per_node() -> None:
    gpu = {"flavor_id": "g8", "flavor_type": "GPU", "flavor_info": {"gpu": {"unit_num": 8}}}
    cpu = {"flavor_id": "c8", "flavor_type": "CPU", "flavor_name": "CPU: 8vCPUs", "pool_id": "p1"}
    assert rendered([{"role": "learner", "task_resource": gpu}, {"task_resource": cpu}]) == [
        f'modelarts_training_job_role_info{{{JOB},role_index="0",role="learner",flavor_id="g8",'
        'flavor_name="",flavor_type="GPU",pool_id=""} 1',
        f'modelarts_training_job_role_info{{{JOB},role_index="1",role="",flavor_id="c8",'
        'flavor_name="CPU: 8vCPUs",flavor_type="CPU",pool_id="p1"} 1',
        f'modelarts_training_job_role_accelerators_per_node{{{JOB},role_index="0",role="learner",'
        'type="gpu"} 8',
    ]


def test_roles_with_the_same_name_are_two_series() -> None:
    lines = rendered([{"role": "worker"}, {"role": "worker"}])
    assert len(lines) == 2 and 'role_index="0"' in lines[0] and 'role_index="1"' in lines[1]


def test_an_ordinary_job_has_no_role_series() -> None:
    assert rendered([]) == []
