"""sharding.py: the jump consistent hash is the paper's, shards partition the jobs evenly and
consistently, and the ``shard`` settings (``index: auto`` from the host name) are validated."""

from __future__ import annotations

import hashlib
import math
import random
import uuid
from collections import Counter
from typing import Any

import pytest

from monitor.config.loading import parse_settings
from monitor.daemon.sharding import jump_hash, owns, shard_of, stable_hash
from monitor.errors import ConfigError

_RNG = random.Random(20261128)
JOB_IDS = [str(uuid.UUID(int=_RNG.getrandbits(128), version=4)) for _ in range(10_000)]


def reference_jump_hash(key: int, num_buckets: int) -> int:
    """An independent transcription of the paper's C++ code, with explicit uint64 wrapping."""
    b, j = -1, 0
    while j < num_buckets:
        b = j
        key = (key * 2862933555777941757 + 1) % 2**64
        j = math.floor((b + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return b


@pytest.mark.parametrize(
    ("key", "buckets", "expected"),
    [
        # ClickHouse's tests of jumpConsistentHash and the jump-consistent-hash crate's doc
        # examples, both transcriptions of the paper's reference code.
        (0, 1, 0),
        (1, 1, 0),
        (42, 57, 43),
        (256, 1024, 520),
        (0xDEAD10CC, 1, 0),
        (0xDEAD10CC, 666, 361),
        (16045690984833335023, 255, 237),
        (0, 60, 0),
        (1, 60, 55),
        (2, 60, 46),
    ],
)
def test_jump_hash_matches_published_vectors(key: int, buckets: int, expected: int) -> None:
    assert jump_hash(key, buckets) == expected


def test_jump_hash_matches_an_independent_transcription_of_the_paper() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        key = rng.getrandbits(64)
        buckets = rng.choice([1, 2, 3, 7, 10, 100, 1000, 65536, 2**31 - 1])
        assert jump_hash(key, buckets) == reference_jump_hash(key, buckets)


def test_jump_hash_wraps_negative_and_oversized_keys_like_a_uint64() -> None:
    assert jump_hash(-1, 100) == jump_hash(2**64 - 1, 100)
    assert jump_hash(2**64 + 5, 100) == jump_hash(5, 100)


def test_jump_hash_needs_at_least_one_bucket() -> None:
    with pytest.raises(ValueError, match="buckets"):
        jump_hash(1, 0)


def test_the_job_id_hash_is_the_first_8_bytes_of_sha256_and_never_changes() -> None:
    job_id = "3faf5c03-aaa1-4cbe-879d-24b05d997347"
    digest = hashlib.sha256(job_id.encode()).digest()
    assert stable_hash(job_id) == int.from_bytes(digest[:8], "big") == 7179295308511446273
    # Pinned: a change of the hash would silently move jobs between running shards.
    assert [shard_of(job_id, n) for n in (1, 2, 3, 7, 100)] == [0, 0, 2, 2, 42]


@pytest.mark.parametrize("total", [1, 2, 3, 5, 8])
def test_n_shards_partition_the_jobs_exactly_and_evenly(total: int) -> None:
    owners = {j: [i for i in range(total) if owns(j, i, total)] for j in JOB_IDS}
    assert all(len(o) == 1 for o in owners.values())  # no gap, no overlap
    counts = Counter(o[0] for o in owners.values())
    expected = len(JOB_IDS) / total
    assert set(counts) == set(range(total))
    for count in counts.values():
        assert abs(count - expected) < 0.1 * expected, counts


@pytest.mark.parametrize("n", [1, 2, 3, 4, 9])
def test_going_from_n_to_n_plus_1_shards_moves_about_one_in_n_plus_1_jobs(n: int) -> None:
    moved = [j for j in JOB_IDS if shard_of(j, n) != shard_of(j, n + 1)]
    assert abs(len(moved) / len(JOB_IDS) - 1 / (n + 1)) < 0.02
    assert all(shard_of(j, n + 1) == n for j in moved)  # only to the new shard


def test_one_shard_owns_everything() -> None:
    assert all(owns(j, 0, 1) for j in JOB_IDS[:100])


def base() -> dict[str, Any]:
    return {"api": {"endpoint": "http://127.0.0.1:1", "project_id": "p"}, "auth": {"type": "none"}}


def settings_with(shard: object, env: dict[str, str] | None = None) -> Any:
    return parse_settings({**base(), "shard": shard}, env=env or {})


def problems(shard: object, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        settings_with(shard, env)
    return info.value.problems


def test_shard_defaults_to_one_instance_watching_everything() -> None:
    s = parse_settings(base(), env={})
    assert (s.shard.index, s.shard.total) == (0, 1)


def test_index_auto_takes_the_ordinal_of_hostname() -> None:
    s = settings_with({"index": "auto", "total": 3}, {"HOSTNAME": "monitor-2"})
    assert (s.shard.index, s.shard.total) == (2, 3)


def test_index_from_an_environment_variable() -> None:
    s = settings_with({"index": "${SHARD:-0}", "total": 4}, {"SHARD": "3"})
    assert s.shard.index == 3


def test_index_auto_without_an_ordinal_names_shard_index() -> None:
    (line,) = problems({"index": "auto", "total": 2}, {"HOSTNAME": "monitor"})
    assert line.startswith("shard.index: ")
    assert "'monitor'" in line


@pytest.mark.parametrize(
    ("shard", "key"),
    [
        ({"index": 2, "total": 2}, "shard.index"),
        ({"index": 5}, "shard.index"),
        ({"index": -1, "total": 2}, "shard.index"),
        ({"index": True}, "shard.index"),
        ({"index": "first"}, "shard.index"),
        ({"total": 0}, "shard.total"),
        ({"index": 0, "totl": 2}, "shard.totl"),
    ],
)
def test_bad_shard_settings_name_the_key(shard: dict[str, Any], key: str) -> None:
    lines = problems(shard)
    assert any(line.startswith(f"{key}: ") for line in lines), lines


def test_an_auto_index_beyond_total_is_refused() -> None:
    (line,) = problems({"index": "auto", "total": 2}, {"HOSTNAME": "monitor-2"})
    assert line.startswith("shard.index: 2 is not below shard.total (2)")
