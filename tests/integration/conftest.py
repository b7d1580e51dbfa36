"""The demo scenario as the integration tests play it: its jobs, the events it must produce
once each, and the final metrics it must leave."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import monitor
from monitor.simulator import load_scenario
from tests.harness import SimulatorProc, wait_until

DEMO = Path(monitor.__file__).parent / "simulator" / "scenarios" / "demo.yaml"
BERT, RESNET, LLAMA, SWEEP = "bert-pretrain", "resnet-finetune", "llama-sft", "data-sweep"

EXPECTED = Counter(
    [
        (BERT, "discovered", "Creating"),
        (BERT, "phase_changed", "Creating->Pending"),
        (BERT, "secondary_phase_changed", "Creating->Queuing"),
        (BERT, "phase_changed", "Pending->Running"),
        (BERT, "secondary_phase_changed", "Queuing->Running"),
        (BERT, "run_started", "#0 init_or_rescheduled"),
        (BERT, "run_ended", "#0 proc_restart"),
        (BERT, "run_started", "#1 restarted"),
        (BERT, "run_ended", "#1 pod_reschedule"),
        (BERT, "run_started", "#2 init_or_rescheduled"),
        (BERT, "phase_changed", "Running->Completed"),
        (BERT, "secondary_phase_changed", "Running->Completed"),
        (BERT, "run_ended", "#2 "),
        (RESNET, "discovered", "Creating"),
        (RESNET, "phase_changed", "Creating->Pending"),
        (RESNET, "secondary_phase_changed", "Creating->Queuing"),
        (RESNET, "phase_changed", "Pending->Running"),
        (RESNET, "secondary_phase_changed", "Queuing->Running"),
        (RESNET, "run_started", "#0 init_or_rescheduled"),
        (RESNET, "phase_changed", "Running->Failed"),
        (RESNET, "secondary_phase_changed", "Running->Failed"),
        (RESNET, "run_ended", "#0 "),
        (RESNET, "task_failed", "worker-0 137"),
        (LLAMA, "discovered", "Creating"),
        (LLAMA, "phase_changed", "Creating->Running"),
        (LLAMA, "secondary_phase_changed", "Creating->Running"),
        (LLAMA, "run_started", "#0 init_or_rescheduled"),
        (LLAMA, "nodes_changed", "4->3"),
        (SWEEP, "discovered", "Creating"),
        (SWEEP, "phase_changed", "Creating->Running"),
        (SWEEP, "secondary_phase_changed", "Creating->Running"),
        (SWEEP, "run_started", "#0 init_or_rescheduled"),
        (SWEEP, "phase_changed", "Running->Terminating"),
        (SWEEP, "secondary_phase_changed", "Running->Terminating"),
        (SWEEP, "phase_changed", "Terminating->Terminated"),
        (SWEEP, "secondary_phase_changed", "Terminating->Terminated"),
        (SWEEP, "run_ended", "#0 "),
        (SWEEP, "not_found", ""),
    ]
)


def summary(event: dict[str, Any]) -> tuple[str, str, str]:
    """(job name, short type, the detail that identifies the transition)."""
    data, kind = event["data"], event["type"].removeprefix("modelarts.job.")
    if kind in ("phase_changed", "secondary_phase_changed", "nodes_changed"):
        detail = f"{data['from']}->{data['to']}"
    elif kind == "discovered":
        detail = data["phase"]
    elif kind == "run_started":
        detail = f"#{data['index']} {data['start_type']}"
    elif kind == "run_ended":
        detail = f"#{data['index']} {data['end_recover']}"
    elif kind == "task_failed":
        detail = f"{data['task']} {data['exit_code']}"
    else:
        detail = ""
    return data["job_name"], kind, detail


def play(sim: SimulatorProc, job_ids: list[str], times: list[float]) -> None:
    for t in times:
        sim.set_time(t)
        sim.wait_polled(job_ids)


def step_times() -> list[float]:
    scenario = load_scenario(DEMO)
    return sorted({step.at for job in scenario.jobs for step in job.timeline})


def job_ids() -> dict[str, str]:
    return {job.name: job.id for job in load_scenario(DEMO).jobs}


def value(metrics: dict[Any, float], name: str, job_id: str, **labels: str) -> float | None:
    for (n, lbls), v in metrics.items():
        d = dict(lbls)
        if (
            n == name
            and d.get("job_id") == job_id
            and all(d.get(k) == x for k, x in labels.items())
        ):
            return v
    return None


def check_events(events: list[dict[str, Any]], ids: dict[str, str]) -> None:
    """The demo scenario's events: each transition exactly once, in CloudEvents form."""
    # Events: the exact multiset, each transition once, in CloudEvents form, with labels.
    assert Counter(summary(e) for e in events) == EXPECTED
    assert len({e["id"] for e in events}) == len(events)
    for e in events:
        assert e["specversion"] == "1.0"
        assert e["source"] == "modelarts-monitor/test-project"
        assert e["subject"] == e["data"]["job_id"] == ids[e["data"]["job_name"]]
        assert e["data"]["labels"] == {"team": "ml"}
    bert_fault = next(e for e in events if summary(e) == (BERT, "run_ended", "#1 pod_reschedule"))
    assert bert_fault["data"]["end_recover_before_downgrade"] == "proc_restart"
    assert bert_fault["data"]["end_related_task"] == "worker-0"


def check_final_metrics(metrics: dict[Any, float], ids: dict[str, str]) -> None:
    """The final value of every metric of DESIGN.md after the demo scenario."""

    # Metrics: the final value of every job family, per job.
    def m(name: str, job: str, **labels: str) -> float | None:
        return value(metrics, name, ids[job], **labels)

    final_phase = {BERT: "Completed", RESNET: "Failed", LLAMA: "Running", SWEEP: "Terminated"}
    for job, phase in final_phase.items():
        assert m("modelarts_training_job_phase", job, phase=phase) == 1, job
        assert m("modelarts_training_job_secondary_phase", job, secondary_phase=phase) == 1, job
        phases = [
            v
            for (n, lbls), v in metrics.items()
            if n == "modelarts_training_job_phase" and dict(lbls)["job_id"] == ids[job]
        ]
        assert sorted(phases) == [0.0] * 8 + [1.0]
        spec = load_scenario(DEMO).job(ids[job])
        assert spec is not None
        assert (
            m(
                "modelarts_training_job_info",
                job,
                flavor_type=spec.flavor.type,
                engine_name=spec.engine.name,
                user_name=spec.user_name,
            )
            == 1
        )
        assert m("modelarts_training_job_phase_last_change_timestamp_seconds", job)
    assert m("modelarts_training_job_info", LLAMA, pool_id="pool-7f3c9a2e-llm") == 1
    assert m("modelarts_training_job_info", LLAMA, pool_name="llm-dedicated") == 1
    assert m("modelarts_training_job_info", BERT, flavor_name="GPU: 8*NVIDIA-V100(32GB)") == 1
    assert {j: m("modelarts_training_job_retry_limit", j) for j in final_phase} == {
        BERT: 3,
        RESNET: None,
        LLAMA: None,
        SWEEP: None,
    }
    accelerators = {
        (j, kind): m("modelarts_training_job_accelerators", j, type=kind)
        for j in final_phase
        for kind in ("gpu", "npu")
    }
    assert {k: v for k, v in accelerators.items() if v is not None} == {
        (BERT, "gpu"): 16,  # public pool: flavor_info, 8 a node x 2 nodes
        (RESNET, "npu"): 1,
        (LLAMA, "gpu"): 32,  # dedicated pool: allocated resources, 8 a node x 4 nodes
    }

    expected_duration = {BERT: 34 - 8, RESNET: 20 - 6, LLAMA: 36 - 5, SWEEP: 20 - 4}
    for job, seconds in expected_duration.items():
        assert m("modelarts_training_job_duration_seconds", job) == pytest.approx(seconds, abs=0.01)
    for job, started in {BERT: 8, RESNET: 6, LLAMA: 5, SWEEP: 4}.items():
        created = m("modelarts_training_job_created_timestamp_seconds", job)
        start = m("modelarts_training_job_start_timestamp_seconds", job)
        assert created and start
        assert start - created == pytest.approx(started, abs=0.01)

    assert {j: m("modelarts_training_job_nodes", j) for j in final_phase} == {
        BERT: 2,
        RESNET: 1,
        LLAMA: 3,
        SWEEP: 1,
    }
    assert {j: m("modelarts_training_job_requested_nodes", j) for j in final_phase} == {
        BERT: 2,
        RESNET: 1,
        LLAMA: 4,
        SWEEP: 1,
    }
    assert {j: m("modelarts_training_job_running_records", j) for j in final_phase} == {
        BERT: 3,
        RESNET: 1,
        LLAMA: 1,
        SWEEP: 1,
    }
    restarts = {
        k: m("modelarts_training_job_restarts_total", BERT, end_recover=k)
        for k in (
            "npu_proc_restart",
            "gpu_proc_restart",
            "proc_restart",
            "pod_reschedule",
            "job_reschedule",
            "job_reschedule_with_taint",
            "other",
        )
    }
    assert restarts == {
        "npu_proc_restart": 0,
        "gpu_proc_restart": 0,
        "proc_restart": 1,
        "pod_reschedule": 1,
        "job_reschedule": 0,
        "job_reschedule_with_taint": 0,
        "other": 0,
    }
    assert m("modelarts_training_job_restarts_total", RESNET, end_recover="other") == 0
    assert m("modelarts_training_job_task_exit_code", RESNET, task="worker-0") == 137

    # Monitor health: the deleted job is down, the others are up.
    assert {j: m("modelarts_monitor_up", j) for j in final_phase} == {
        BERT: 1,
        RESNET: 1,
        LLAMA: 1,
        SWEEP: 0,
    }
    for job in final_phase:
        assert m("modelarts_monitor_last_poll_success_timestamp_seconds", job)
    own = {n: v for (n, lbls), v in metrics.items() if not dict(lbls).get("job_id")}
    assert own["modelarts_monitor_jobs"] == 4
    assert metrics[("modelarts_monitor_build_info", (("version", monitor.__version__),))] == 1
    assert metrics[("modelarts_monitor_polls_total", (("result", "not_found"),))] >= 2
    assert own["modelarts_monitor_poll_duration_seconds_count"] > 0
    by_type = Counter(kind for _, kind, _ in EXPECTED.elements())
    for kind, count in by_type.items():
        assert metrics[("modelarts_monitor_events_total", (("type", kind),))] == count, kind


# --- a hostile ModelArts API ---------------------------------------------------------------------
# The simulator validates its scenarios and must stay a faithful ModelArts, so the answers a
# real API should never give (a 401-digit duration, a 5 MB name, lone UTF-16 surrogates) come
# from this separate fake instead.

Answer = dict[str, Any] | bytes | None
"""One scripted job-detail answer: a document (sent as JSON, non-ASCII as ``\\u`` escapes, so a
lone surrogate arrives as ``\\ud800`` exactly as a server writing UTF-16 would send it), raw
bytes (sent as they are), or ``None``: the job is gone (400 ``ModelArts.2775``)."""


class HostileApi:
    """A ModelArts job-detail, job-events and task-metrics API on 127.0.0.1 that answers what
    the test scripts, however wrong. It runs aiohttp on its own loop in a thread, so a
    synchronous test drives it while the daemon, a subprocess, polls it. Signatures are not
    checked: what is under test is what the monitor does with the answers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, list[Answer]] = {}
        self._served: dict[str, int] = {}
        """Per job id: detail requests since its script was last set (the script's position)."""
        self._fetched: dict[str, int] = {}
        """Per job id: detail requests in all."""
        self._reasons: dict[str, list[dict[str, str]]] = {}

        app = web.Application()
        app.router.add_get("/v2/{project}/training-jobs/{job_id}", self._detail)
        app.router.add_get("/v2/{project}/training-jobs/{job_id}/events", self._events)
        app.router.add_get("/v2/{project}/training-jobs/{job_id}/metrics/{task}", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        self.url = f"http://127.0.0.1:{port}"

    async def _start(self) -> int:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return int(self._runner.addresses[0][1])

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    # --- what the test scripts ---------------------------------------------------------------

    def script(self, job_id: str, *answers: Answer) -> None:
        """From the next request of ``job_id`` on, answer these in turn; the last one repeats."""
        assert answers, "a script needs at least one answer"
        with self._lock:
            self._scripts[job_id] = list(answers)
            self._served[job_id] = 0

    def reasons(self, job_id: str, events: list[dict[str, str]]) -> None:
        """What the job-events endpoint lists for ``job_id`` (``level``, ``message``, ...)."""
        with self._lock:
            self._reasons[job_id] = [dict(e) for e in events]

    def fetched(self, job_id: str) -> int:
        with self._lock:
            return self._fetched.get(job_id, 0)

    def wait_fetched(self, job_ids: list[str], times: int = 2, timeout: float = 20.0) -> None:
        """Wait until each job's detail was fetched ``times`` more times: the first of them is
        then fully processed, because a job's next poll starts only after its previous one
        ended (as ``SimulatorProc.wait_polled``)."""
        base = {j: self.fetched(j) for j in job_ids}
        wait_until(
            lambda: all(self.fetched(j) >= base[j] + times for j in job_ids),
            timeout,
            f"{times} detail requests of {job_ids}",
        )

    # --- the endpoints -----------------------------------------------------------------------

    async def _detail(self, request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        with self._lock:
            self._fetched[job_id] = self._fetched.get(job_id, 0) + 1
            script = self._scripts.get(job_id)
            answer: Answer = None
            if script:
                position = self._served[job_id]
                self._served[job_id] = position + 1
                answer = script[min(position, len(script) - 1)]
        if answer is None:
            return _not_found(job_id)
        body = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        return web.Response(body=body, content_type="application/json")

    async def _events(self, request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        level = request.query.get("level")
        with self._lock:
            known = job_id in self._scripts
            listed = [
                {"time": "2026-11-28T20:00:00+08:00", "source": "Job", **e}
                for e in self._reasons.get(job_id, [])
            ]
        if not known:
            return _not_found(job_id)
        events = [e for e in listed if level is None or e["level"] == level]
        doc = {"total": len(events), "limit": 50, "offset": 0, "order": "desc"}
        doc.update(start_time=None, end_time=None, events=events)
        return web.Response(body=json.dumps(doc).encode(), content_type="application/json")

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.json_response({"metrics": []})


def _not_found(job_id: str) -> web.Response:
    doc = {"error_code": "ModelArts.2775", "error_msg": f"Training job not found: {job_id}"}
    return web.json_response(doc, status=400)


@pytest.fixture
def hostile_api() -> Iterator[HostileApi]:
    """A started ``HostileApi``, stopped after the test."""
    api = HostileApi()
    try:
        yield api
    finally:
        api.close()


def strict_events(path: Path) -> list[dict[str, Any]]:
    """The file sink's events, failing the test unless every line is valid UTF-8 and JSON (what
    ``jq`` or a log shipper reading the file would need). A last line still being written (no
    newline yet) is left for the next read."""
    if not path.exists():
        return []
    complete, _, _ = path.read_bytes().rpartition(b"\n")
    events = []
    for number, line in enumerate(complete.split(b"\n") if complete else [], 1):
        try:
            events.append(json.loads(line.decode("utf-8")))
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise AssertionError(f"{path} line {number} is not UTF-8 JSON: {exc}") from None
    return events


def resident_bytes(pid: int) -> int:
    """The resident set size of a process now (``VmRSS`` in ``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    """Processes started inside inherit this umask (as from a shell that set it)."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)
