"""throttle.py and its use by the client: the account-wide request rate, and the pause that a
429 imposes on every request."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from monitor.errors import RateLimited
from monitor.modelarts.client import ModelArtsClient
from monitor.modelarts.throttle import Throttle
from tests.conftest import job_doc


class FakeTime:
    """A clock whose sleeps advance it, recording every sleep."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def test_rate_limit_spaces_requests_evenly() -> None:
    t = FakeTime()
    throttle = Throttle(4.0, clock=t, sleep=t.sleep)
    for _ in range(5):
        await throttle.acquire()
    assert t.sleeps == pytest.approx([0.25, 0.25, 0.25, 0.25])


async def test_no_rate_limit_never_waits() -> None:
    t = FakeTime()
    throttle = Throttle(0, clock=t, sleep=t.sleep)
    for _ in range(100):
        await throttle.acquire()
    assert t.sleeps == []


async def test_a_429_pauses_everyone_for_retry_after() -> None:
    t = FakeTime()
    throttle = Throttle(0, clock=t, sleep=t.sleep)
    assert throttle.throttled(2.5) == 2.5
    await throttle.acquire()
    assert t.sleeps == [2.5]


async def test_without_retry_after_the_pause_grows_and_resets_on_success() -> None:
    t = FakeTime()
    throttle = Throttle(0, max_pause=30, clock=t, sleep=t.sleep)
    pauses = [throttle.throttled(None) for _ in range(8)]
    assert pauses[0] <= 1
    assert pauses[5] > pauses[0]
    assert max(pauses) <= 30
    throttle.succeeded()
    assert throttle.throttled(None) <= 1


async def test_retry_after_is_capped_by_max_pause() -> None:
    t = FakeTime()
    assert Throttle(0, max_pause=10, clock=t, sleep=t.sleep).throttled(3600) == 10


async def test_the_request_after_a_429_with_retry_after_1_waits_at_least_a_second() -> None:
    """Real time, real client: the 429 is answered, and the next request (for another job)
    reaches the server no sooner than one second later."""
    arrivals: list[tuple[float, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        job = request.url.path.rsplit("/", 1)[-1]
        arrivals.append((time.monotonic(), job))
        if len(arrivals) == 1:
            return httpx.Response(
                429,
                headers={"Retry-After": "1"},
                json={"error_code": "APIG.0308", "error_msg": "throttled"},
            )
        return httpx.Response(200, json=job_doc(job_id=job))

    async with ModelArtsClient(
        "https://modelarts.test", "p", transport=httpx.MockTransport(handler)
    ) as client:
        with pytest.raises(RateLimited) as info:
            await client.get_job("job-a")
        assert info.value.retry_after == 1.0
        answered = time.monotonic()
        await asyncio.gather(client.get_job("job-b"), client.get_job("job-c"))
    assert arrivals[0][1] == "job-a"
    assert sorted(job for _, job in arrivals[1:]) == ["job-b", "job-c"]
    assert min(at for at, _ in arrivals[1:]) - answered >= 1.0
