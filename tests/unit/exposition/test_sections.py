"""sections.py: a family's body is joined from its jobs' lines; lines marked stale are rendered
only when the body is next read; a first round's joins append, never copying what was joined."""

from __future__ import annotations

import mmap

from monitor.exposition.sections import MIN_PENDING, JobLines, Sections


class Health(JobLines):
    """A job whose one line says how many times it was polled."""

    __slots__ = ("polls",)

    def __init__(self, polls: int = 0) -> None:
        super().__init__(1)
        self.polls = polls


class Counted:
    """The render a ``Sections`` asks for stale lines, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, job: Health, family: int) -> bytes:
        self.calls += 1
        return f'polls{{job="{id(job)}"}} {job.polls}\n'.encode()


def test_stale_lines_wait_unrendered_however_many_until_the_body_is_read() -> None:
    """Every job polled between two scrapes: no line is rendered and nothing is joined until
    the scrape, even with far more jobs waiting than would force an early join of lines set."""
    render = Counted()
    sections = Sections[Health](1, render)
    jobs = [Health() for _ in range(4 * MIN_PENDING)]
    for job in jobs:
        sections.stale(job, 0)
    before = sections.body(0)
    assert render.calls == len(jobs)

    render.calls = 0
    for job in jobs:
        job.polls += 1
        sections.stale(job, 0)
        job.polls += 1
        sections.stale(job, 0)  # polled twice between scrapes
    assert render.calls == 0, "a stale mark rendered or joined before the scrape"
    after = sections.body(0)
    assert render.calls == len(jobs), "each stale job rendered once, at the scrape"
    assert bytes(after) == b"".join(render(job, 0) for job in jobs)
    assert bytes(before) == bytes(before).replace(b"} 2\n", b"} 0\n"), "an old view changed"


def test_a_stale_job_dropped_before_the_scrape_is_neither_rendered_nor_shown() -> None:
    render = Counted()
    sections = Sections[Health](1, render)
    kept, dropped = Health(1), Health(2)
    for job in (kept, dropped):
        sections.stale(job, 0)
    sections.body(0)
    sections.stale(dropped, 0)
    sections.drop(dropped)
    render.calls = 0
    assert bytes(sections.body(0)) == render(kept, 0)
    assert render.calls == 1


def test_a_first_round_appends_new_jobs_after_the_body_without_copying_it() -> None:
    """Jobs arriving a few hundred at a time (a first round, joined early each time) land after
    the lines already joined, in the same pages while they have room: the body so far is not
    copied at each early join, and a scrape still writing the older body reads the same bytes
    throughout."""
    sections = Sections[JobLines](1)
    lines = [f'line{{job="{i:04d}"}} 1\n'.encode() for i in range(9999)]
    for text in lines[:1000]:
        sections.set(JobLines(1), 0, text)
    early = sections.body(0)
    assert isinstance(early.obj, mmap.mmap)
    room = (len(early.obj) - len(early)) // len(lines[0])  # what its pages still have room for
    assert room >= 200
    for text in lines[1000 : 1000 + room]:
        sections.set(JobLines(1), 0, text)  # more than one in eight waiting: joined early
    whole = sections.body(0)
    assert bytes(whole) == b"".join(lines[: 1000 + room])
    assert bytes(early) == b"".join(lines[:1000]), "the older body changed under its reader"
    assert whole.obj is early.obj, "the body so far was copied"


def test_a_growing_body_moves_to_new_pages_only_each_time_it_doubles() -> None:
    sections = Sections[JobLines](1)
    bodies = []  # held, so that no pages are freed and their address reused
    for i in range(6400):
        sections.set(JobLines(1), 0, f'line{{job="{i:04d}"}} 1\n'.encode())
        if i % 100 == 99:  # a scrape every hundred new jobs: 64 joins
            bodies.append(sections.body(0))
    assert len(sections.body(0)) == 6400 * len(b'line{job="0000"} 1\n')
    pages = {id(body.obj) for body in bodies}
    assert len(pages) <= 8, f"{len(pages)} allocations for 64 joins"


def test_a_changed_job_rejoins_its_family_in_place_of_its_old_lines() -> None:
    sections = Sections[JobLines](1)
    jobs = [JobLines(1) for _ in range(5)]
    for i, job in enumerate(jobs):
        sections.set(job, 0, b"x%d 0\n" % i)
    old = sections.body(0)
    sections.set(jobs[2], 0, b"x2 1\n")
    sections.set(jobs[3], 0, b"")
    sections.set(JobLines(1), 0, b"new 1\n")
    assert bytes(sections.body(0)) == b"x0 0\nx1 0\nx2 1\nx4 0\nnew 1\n"
    assert bytes(old) == b"x0 0\nx1 0\nx2 0\nx3 0\nx4 0\n"
    assert sections.get(jobs[4], 0) == b"x4 0\n" and sections.get(jobs[3], 0) == b""
