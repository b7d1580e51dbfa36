"""keyed_lock.py: one fair lock per key, gone once nobody holds or awaits it."""

from __future__ import annotations

import asyncio
import random

import pytest

from monitor.daemon.keyed_lock import KeyedLock


async def test_holders_of_one_key_run_one_at_a_time_in_arrival_order() -> None:
    lock, order, inside = KeyedLock(), [], []
    release = asyncio.Event()

    async def hold(n: int) -> None:
        async with lock("job"):
            inside.append(n)
            assert len(inside) == 1, "two holders of one key at once"
            if n == 0:
                await release.wait()
            order.append(n)
            inside.remove(n)

    tasks = [asyncio.create_task(hold(n)) for n in range(4)]
    for _ in range(10):
        await asyncio.sleep(0)
    release.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert order == [0, 1, 2, 3]


async def test_other_keys_do_not_wait_and_nothing_is_kept_once_released() -> None:
    lock = KeyedLock()
    release = asyncio.Event()

    async def hold_a() -> None:
        async with lock("a"):
            await release.wait()

    held = asyncio.create_task(hold_a())
    for _ in range(5):
        await asyncio.sleep(0)
    async with lock("b"):
        assert len(lock) == 2
    release.set()
    await asyncio.wait_for(held, 5)
    assert len(lock) == 0


async def _turns(n: int = 5) -> None:
    """Let every ready task run ``n`` steps: the interleavings here are driven by turns of the
    loop, never by time."""
    for _ in range(n):
        await asyncio.sleep(0)


async def test_a_holder_returning_right_after_release_queues_behind_the_waiters() -> None:
    lock, order = KeyedLock(), []

    async def wait_in_line(n: int) -> None:
        async with lock("job"):
            order.append(n)

    async with lock("job"):
        waiters = [asyncio.create_task(wait_in_line(n)) for n in (1, 2, 3)]
        await _turns()
    async with lock("job"):  # same turn as the release: the key is already the first waiter's
        order.append(4)
    await asyncio.wait_for(asyncio.gather(*waiters), 5)
    assert order == [1, 2, 3, 4]
    assert len(lock) == 0


async def test_another_key_is_taken_without_yielding_while_one_key_has_a_queue() -> None:
    lock = KeyedLock()
    async with lock("a"):
        waiting_a, holding_b = lock("a"), lock("b")
        queued = asyncio.create_task(waiting_a.__aenter__())
        await _turns()
        entering = holding_b.__aenter__()
        try:
            entering.send(None)  # runs to its end without suspending, or this is no StopIteration
        except StopIteration:
            pass
        else:
            raise AssertionError("taking an uncontended key waited")
        assert len(lock) == 2
        await holding_b.__aexit__(None, None, None)
    await asyncio.wait_for(queued, 5)
    await waiting_a.__aexit__(None, None, None)
    assert len(lock) == 0


@pytest.mark.parametrize("release_first", [False, True], ids=["leaves_queue", "skipped"])
async def test_a_waiter_cancelled_while_queued_is_skipped_and_the_next_gets_the_key(
    release_first: bool,
) -> None:
    """The first in line is cancelled; ``skipped``: the holder lets go in the same turn, before
    the cancelled waiter has run to leave the queue, so the release meets its cancelled turn."""
    lock, entered = KeyedLock(), []

    async def wait_in_line(n: int) -> None:
        async with lock("job"):
            entered.append(n)

    async with lock("job"):
        first, second, third = (asyncio.create_task(wait_in_line(n)) for n in (1, 2, 3))
        await _turns()
        first.cancel()
        if not release_first:
            await _turns()
    await asyncio.wait_for(asyncio.gather(second, third), 5)
    with pytest.raises(asyncio.CancelledError):
        await first
    assert entered == [2, 3]
    assert len(lock) == 0


async def test_a_waiter_cancelled_in_the_turn_it_is_handed_the_key_passes_it_on() -> None:
    lock, entered = KeyedLock(), []

    async def wait_in_line(n: int) -> None:
        async with lock("job"):
            entered.append(n)

    async with lock("job"):
        handed, after = (asyncio.create_task(wait_in_line(n)) for n in (1, 2))
        await _turns()
    handed.cancel()  # released above, in this same turn: ``handed`` holds the key, not yet run
    with pytest.raises(asyncio.CancelledError):
        await handed
    await asyncio.wait_for(after, 5)
    assert entered == [2]
    assert len(lock) == 0


async def test_the_last_waiter_cancelled_as_it_is_handed_the_key_lets_the_key_go() -> None:
    lock = KeyedLock()
    async with lock("job"):
        handed = asyncio.create_task(lock("job").__aenter__())
        await _turns()
    handed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handed
    assert len(lock) == 0
    await asyncio.wait_for(lock("job").__aenter__(), 5)  # not held by the task that left


async def test_an_exception_in_the_block_releases_the_key_to_the_next_waiter() -> None:
    lock, entered, waiters = KeyedLock(), [], []

    async def wait_in_line() -> None:
        async with lock("job"):
            entered.append("waiter")

    async def fail_inside() -> None:
        async with lock("job"):
            waiters.append(asyncio.create_task(wait_in_line()))
            await _turns()
            raise RuntimeError("apply failed")

    with pytest.raises(RuntimeError, match="apply failed"):
        await fail_inside()
    await asyncio.wait_for(waiters[0], 5)
    assert entered == ["waiter"]
    assert len(lock) == 0


async def _random_round(seed: int) -> None:
    """One seeded round: tasks over three keys arrive, hold and leave after random turns; some
    raise in the block, some are cancelled at random moments (queued, handed the key, inside)."""
    rng = random.Random(seed)
    lock = KeyedLock()
    inside: dict[str, int] = {}
    arrived: dict[str, list[int]] = {}
    entered: dict[str, list[int]] = {}

    async def holder(n: int, key: str, before: int, during: int, fails: bool) -> None:
        for _ in range(before):
            await asyncio.sleep(0)
        arrived.setdefault(key, []).append(n)
        async with lock(key):
            inside[key] = inside.get(key, 0) + 1
            assert inside[key] == 1, f"seed {seed}: two holders of {key}"
            entered.setdefault(key, []).append(n)
            try:
                for _ in range(during):
                    await asyncio.sleep(0)
                if fails:
                    raise LookupError("body failed")
            finally:
                inside[key] -= 1

    specs = [
        (rng.choice("abc"), rng.randrange(4), rng.randrange(4), rng.random() < 0.2)
        for _ in range(rng.randrange(2, 12))
    ]
    tasks = [asyncio.create_task(holder(n, *spec)) for n, spec in enumerate(specs)]
    doomed = {n for n in range(len(tasks)) if rng.random() < 0.3}
    for _ in range(12):
        for n in doomed:
            if rng.random() < 0.25:
                tasks[n].cancel()
        await asyncio.sleep(0)
    for n in doomed:
        tasks[n].cancel()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
    for n, ((key, *_), result) in enumerate(zip(specs, results, strict=True)):
        if isinstance(result, AssertionError):
            raise result
        if isinstance(result, asyncio.CancelledError):
            assert n in doomed, f"seed {seed}: task {n} cancelled by nobody"
        else:
            assert n in entered.get(key, []), f"seed {seed}: holder {n} of {key} skipped"
    for key, order in entered.items():
        assert order == [n for n in arrived[key] if n in order], f"seed {seed}: {key} unfair"
    assert len(lock) == 0, f"seed {seed}: a key stays held"


async def test_random_interleavings_never_run_two_holders_of_a_key_or_skip_one() -> None:
    """Every key is held by one task at a time, entered in arrival order by those still there,
    by every task not cancelled, and nothing stays behind."""
    for seed in range(300):
        await _random_round(seed)
