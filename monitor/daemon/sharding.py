"""Which instance watches which job: jobs are split into shards the way kube-state-metrics does.

Every instance runs with the same ``shard.total`` and its own ``shard.index`` (or the ordinal of
its StatefulSet pod, ``index: auto``), and keeps only the jobs whose id hashes to its index, so N
instances watch every job exactly once without talking to each other.

The hash is Lamping & Veach's *jump consistent hash* ("A Fast, Minimal Memory, Consistent Hash
Algorithm", 2014) over a stable 64-bit hash of the job id (the first 8 bytes of its SHA-256, never
Python's per-process ``hash()``). Jump hash is *consistent*: going from N to N+1 shards moves only
about 1/(N+1) of the jobs (each to the new shard), so scaling out does not reshuffle everything.
"""

from __future__ import annotations

import hashlib

__all__ = ["jump_hash", "owns", "shard_of", "stable_hash"]

_MASK64 = (1 << 64) - 1
_LCG = 2862933555777941757
"""The 64-bit linear congruential generator's multiplier of the paper's reference code."""


def jump_hash(key: int, buckets: int) -> int:
    """The bucket in ``[0, buckets)`` of a 64-bit ``key``, exactly as the paper's C++ code::

    int32_t JumpConsistentHash(uint64_t key, int32_t num_buckets) {
        int64_t b = -1, j = 0;
        while (j < num_buckets) {
            b = j;
            key = key * 2862933555777941757ULL + 1;
            j = (b + 1) * (double(1LL << 31) / double((key >> 33) + 1));
        }
        return b;
    }
    """
    if buckets < 1:
        raise ValueError(f"buckets must be >= 1, got {buckets}")
    key &= _MASK64  # a negative or oversized key wraps like a uint64_t
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * _LCG + 1) & _MASK64
        # Python floats are IEEE doubles, and the operations are in the C++ code's order.
        j = int((b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


def stable_hash(job_id: str) -> int:
    """A 64-bit hash of a job id that is the same in every process, host and release."""
    return int.from_bytes(hashlib.sha256(job_id.encode("utf-8")).digest()[:8], "big")


def shard_of(job_id: str, total: int) -> int:
    """The shard, in ``[0, total)``, that watches ``job_id``."""
    return jump_hash(stable_hash(job_id), total)


def owns(job_id: str, index: int, total: int) -> bool:
    """Whether shard ``index`` of ``total`` watches ``job_id``."""
    return total <= 1 or shard_of(job_id, total) == index
