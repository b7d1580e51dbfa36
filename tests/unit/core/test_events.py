"""events.py: deterministic ids and the CloudEvents structured form of DESIGN.md."""

from __future__ import annotations

from monitor.core.events import event_id, new_event, rfc3339, to_cloudevent


def test_id_depends_only_on_job_type_and_key() -> None:
    assert event_id("j", "phase_changed", ("A", "B", 0)) == event_id(
        "j", "phase_changed", ("A", "B", 0)
    )
    others = {
        event_id("k", "phase_changed", ("A", "B", 0)),
        event_id("j", "secondary_phase_changed", ("A", "B", 0)),
        event_id("j", "phase_changed", ("A", "B", 1)),
    }
    assert event_id("j", "phase_changed", ("A", "B", 0)) not in others
    assert len(others) == 3


def test_cloudevent_has_the_contract_shape() -> None:
    event = new_event(
        "phase_changed",
        job_id="j1",
        job_name="train",
        key=("Pending", "Running", 0),
        data={"from": "Pending", "to": "Running"},
        time=1_795_867_200.0,
    )
    event = event.__class__(
        **{**{f: getattr(event, f) for f in event.__slots__}, "labels": {"team": "nlp"}}
    )
    doc = to_cloudevent(event, "proj")
    assert doc == {
        "specversion": "1.0",
        "id": event.id,
        "source": "modelarts-monitor/proj",
        "type": "modelarts.job.phase_changed",
        "subject": "j1",
        "time": "2026-11-28T12:00:00Z",
        "datacontenttype": "application/json",
        "data": {
            "job_id": "j1",
            "job_name": "train",
            "from": "Pending",
            "to": "Running",
            "labels": {"team": "nlp"},
        },
    }


def test_rfc3339_keeps_milliseconds_when_present() -> None:
    assert rfc3339(0.25) == "1970-01-01T00:00:00.250Z"
