"""keyed_lock.py: one fair lock per key, gone once nobody holds or awaits it."""

from __future__ import annotations

import asyncio

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
