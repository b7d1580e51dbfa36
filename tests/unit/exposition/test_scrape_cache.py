"""The scrape cache: each family's joined lines are kept between scrapes, joined again only
when a job's lines of that family changed, and are the one copy of the text."""

from __future__ import annotations

import random
import tracemalloc

from monitor.exposition.families import FAMILIES, LAST_SUCCESS, UP
from monitor.exposition.series import SeriesStore
from tests.conftest import job_doc
from tests.unit.exposition.conftest import NOW, state_of

PHASE = [f.name for f in FAMILIES].index("modelarts_training_job_phase")


def family_bodies(store: SeriesStore) -> dict[int, memoryview | bytes]:
    """Each family's body as the scrape hands it to the server, by family (headers apart)."""
    out: dict[int, memoryview | bytes] = {}
    family = -1
    for part in store.scrape():
        if bytes(part[:7]) == b"# HELP ":
            family += 1
        else:
            out[family] = part
    return out


def bodies(store: SeriesStore) -> list[memoryview | bytes]:
    return list(family_bodies(store).values())


def test_a_scrape_with_nothing_changed_writes_the_very_bytes_kept_from_the_last() -> None:
    store = SeriesStore()
    for job_id in ("a", "b"):
        store.update(state_of(job_doc(job_id=job_id)), {})
        store.set_health(job_id, True, NOW)
    first, second = bodies(store), bodies(store)
    assert first and all(x is y for x, y in zip(first, second, strict=True)), "joined again"


def test_a_change_joins_again_only_the_families_it_changed() -> None:
    store = SeriesStore()
    for job_id in ("a", "b"):
        store.update(state_of(job_doc(job_id=job_id)), {})
        store.set_health(job_id, True, NOW)
    before = family_bodies(store)
    store.set_health("a", True, NOW + 30)  # a poll: only the last-success time moved
    after = family_bodies(store)
    changed = {i for i in before if after[i] is not before[i]}
    assert changed == {LAST_SUCCESS}
    assert b"1800000030" in bytes(after[LAST_SUCCESS])
    assert b"1800000000" in bytes(after[LAST_SUCCESS])

    store.update(state_of(job_doc(job_id="b", phase="Failed", secondary_phase="Failed")), {})
    again = family_bodies(store)
    assert PHASE in {i for i in after if again[i] is not after[i]}
    assert again[UP] is after[UP]
    assert b'job_id="b",job_name="train-a",phase="Failed"} 1' in bytes(again[PHASE])


def test_the_same_lines_rendered_again_keep_the_cache() -> None:
    store = SeriesStore()
    state = state_of(job_doc(job_id="a"))
    store.update(state, {})
    first = bodies(store)
    store.update(state, {})  # a relabel that changed nothing, a re-watch
    assert all(x is y for x, y in zip(first, bodies(store), strict=True))


def test_removed_and_rewatched_jobs_show_once_with_their_newest_lines() -> None:
    store = SeriesStore()
    store.update(state_of(job_doc(job_id="a")), {"team": "x"})
    store.update(state_of(job_doc(job_id="b")), {})
    store.render()
    store.remove("a")
    assert b'job_id="a"' not in store.render()
    store.update(state_of(job_doc(job_id="a")), {"team": "y"})
    text = store.render().decode()
    assert 'team="x"' not in text
    assert text.count('modelarts_training_job_info{job_id="a"') == 1
    assert text.count('modelarts_training_job_info{job_id="b"') == 1


def test_any_sequence_of_changes_scrapes_as_a_store_built_from_the_end_state() -> None:
    """Random updates, health changes, usage, removals and scrapes in between: every scrape
    holds exactly the lines a store given only each job's last values would hold."""
    rng = random.Random(15)
    store = SeriesStore()
    final: dict[str, tuple[str, bool, float, float | None]] = {}
    for _ in range(400):
        job_id = f"job-{rng.randrange(12)}"
        action = rng.random()
        if action < 0.15:
            store.remove(job_id)
            final.pop(job_id, None)
        elif action < 0.5 or job_id not in final:
            phase = rng.choice(["Running", "Pending", "Failed", "Completed"])
            store.update(state_of(job_doc(job_id=job_id, phase=phase)), {})
            _, up, ts, usage = final.get(job_id, ("", False, 0.0, None))
            final[job_id] = (phase, up, ts, usage)
            store.set_health(job_id, up, ts or None)
        elif action < 0.8:
            phase, _, _, usage = final[job_id]
            up, ts = rng.random() < 0.7, NOW + rng.randrange(100)
            store.set_health(job_id, up, ts)
            final[job_id] = (phase, up, ts, usage)
        else:
            phase, up, ts, _ = final[job_id]
            usage = rng.choice([None, 0.25, 0.5])
            store.set_usage(job_id, None if usage is None else {"w": {"cpuUsage": usage}})
            final[job_id] = (phase, up, ts, usage)
        if rng.random() < 0.2:
            assert sorted(store.render().splitlines()) == sorted(built(final).splitlines())
    assert sorted(store.render().splitlines()) == sorted(built(final).splitlines())


def built(final: dict[str, tuple[str, bool, float, float | None]]) -> bytes:
    store = SeriesStore()
    for job_id, (phase, up, ts, usage) in final.items():
        store.update(state_of(job_doc(job_id=job_id, phase=phase)), {})
        store.set_health(job_id, up, ts or None)
        if usage is not None:
            store.set_usage(job_id, {"w": {"cpuUsage": usage}})
    return store.render()


def test_keeping_the_joined_body_costs_no_second_copy_of_the_lines() -> None:
    """The largest thing the monitor holds is its rendered lines: the cached body must be the
    only copy of them, not one next to every job's own."""
    store = SeriesStore()
    states = [state_of(job_doc(job_id=f"job-{i:04d}")) for i in range(300)]
    tracemalloc.start()
    try:
        for state in states:
            store.update(state, {"team": "nlp"})
            store.set_health(state.job_id, True, NOW)
        size = len(store.render())
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 1.4 * size, f"{held} bytes held for {size} bytes of text"
