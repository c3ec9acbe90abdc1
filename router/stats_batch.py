"""One flush of the stats counters as a numbered batch that Redis applies at most once.

A flush adds sums to the bucket hashes. When its reply is lost (a socket timeout, or the connection
closed after EXEC, on which the client sends the transaction again) Redis may have applied it, and the
recorder cannot tell. So each batch carries the replica's id and a number that grows with each batch;
a script adds a bucket's sums only when the number is above the last one applied to that bucket for
the replica, and records it in a hash beside the bucket (`<prefix>:stats:applied:<resolution>:<start>`,
replica -> batch number) that expires with the bucket. The recorder sends a failed batch again, as it
was, before any newer one.

Why numbers rather than the budget's absolute per-replica totals: the buckets are summed by the
dashboard field by field across replicas (HGETALL), and a day bucket lives 400 days; totals would need
a field per replica and counter and each replica keeping every bucket's totals in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from router.stats import Resolution

# KEYS: a bucket hash, its applied-batch marker. ARGV: replica id, batch number, TTL, then field and
# amount pairs. A batch already applied to this bucket (a resend after a lost reply) is skipped.
_APPLY_SUMS = """
local last = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if tonumber(ARGV[2]) > last then
  for i = 4, #ARGV, 2 do
    redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i], ARGV[i + 1])
  end
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 0
"""


def applied_key(prefix: str, resolution: Resolution, bucket_start: int) -> str:
    """The hash of the last batch number each replica applied to a bucket."""
    return f"{prefix}:stats:applied:{resolution.name}:{bucket_start}"


# Redis key -> (TTL, [(cost, entry JSON)]) of the most expensive requests to add to a capped sorted set.
TopEntries = dict[str, tuple[int, list[tuple[float, bytes]]]]


@dataclass(frozen=True, slots=True)
class BucketSums:
    key: str
    applied_key: str
    ttl_s: int
    sums: dict[str, float]


@dataclass(frozen=True, slots=True)
class StatsBatch:
    number: int
    buckets: list[BucketSums]
    top: TopEntries = field(default_factory=dict)
    events: int = 0  # request events counted in it


async def write_batch(redis: Redis, replica: str, batch: StatsBatch, top_per_bucket: int) -> None:
    """Apply the batch in one MULTI/EXEC. Sending it again adds nothing: the sums are skipped by the
    script, and the expensive requests are sorted-set members that are already there."""
    pipe = redis.pipeline(transaction=True)
    for bucket in batch.buckets:
        amounts = [part for name, amount in bucket.sums.items() if amount for part in (name, repr(amount))]
        pipe.eval(_APPLY_SUMS, 2, bucket.key, bucket.applied_key, replica, batch.number, bucket.ttl_s, *amounts)
    for key, (ttl, entries) in batch.top.items():
        pipe.zadd(key, {member: cost for cost, member in entries})
        pipe.zremrangebyrank(key, 0, -(top_per_bucket + 1))
        pipe.expire(key, ttl)
    await pipe.execute()
