"""The outcome log: every request's event appended to a Redis Stream, in batches, off the request path.

`OutcomeLog` is an EventSink. `record` only appends to an in-memory buffer; a writer task sends the
buffer to Redis in batches (one MULTI/EXEC per batch, in which one script call appends all the
batch's events and outcomes, XADD with an approximate MAXLEN of `ledger.retention`). When Redis is
unreachable the batch stays in the buffer and is retried with backoff; the buffer is bounded by
`ledger.max_buffer` and what falls off it is counted as dropped. A batch retried after a lost reply
(Redis had applied it) logs nothing twice: the script skips an event whose request index exists and
an outcome whose marker exists (each outcome gets an `outcome_id` when it is queued).
`close` (at shutdown) writes everything still buffered, within `ledger.shutdown_timeout_s`.

Keys (all under `settings.redis_prefix`):
- `<prefix>:ledger:events`           stream of request events (field `e`: the event as JSON)
- `<prefix>:ledger:outcomes`         stream of outcomes: feedback and shadow verdicts (field `o`)
- `<prefix>:ledger:request:<id>`     "<stream id> <summary JSON>" per request, for feedback lookups;
                                     expires after `ledger.feedback_window_s`
- `<prefix>:ledger:outcome:<id>`     the stream id of an outcome written by this log, by its
                                     `outcome_id`; expires after `ledger.feedback_window_s`
- `<prefix>:ledger:prompt_hash_key`  the key of the prompt hashes (router/prompt_hash.py)

Prompt and answer texts are written only when `ledger.store_prompts` is set (the demo sets it), after
the redaction hook (`ledger.redact`); otherwise only a keyed hash of the prompt is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from redis.exceptions import RedisError

from router.config import LedgerSettings, Settings
from router.events import RequestEvent
from router.redaction import Redactor, load_redactor, redact_messages

if TYPE_CHECKING:
    from router.state import AppState

logger = logging.getLogger(__name__)

RECORD_VERSION = 2  # 2: prompt_hash (HMAC-SHA256) replaced prompt_sha256

# A whole batch in one script call: each event's and outcome's XADD, and the key that points at its stream
# entry (request index, outcome marker). One call, not one per event: redis-py's work per pipelined script
# call (tens of microseconds) held the event loop for 6-9 ms per 200-event batch (bench_outcome_log).
# KEYS: events stream, outcomes stream, each event's index key, then each outcome's marker; ARGV: maxlen,
# ttl, number of events, each event's record and summary, then each outcome's record. An entry whose key
# exists is already logged: a batch sent again because its reply was lost (Redis applied it) adds nothing.
_APPEND_BATCH = """
local maxlen, ttl, events = ARGV[1], ARGV[2], tonumber(ARGV[3])
local written = 0
for i = 1, #KEYS - 2 do
  local key = KEYS[2 + i]
  if redis.call('EXISTS', key) == 0 then
    local id
    if i <= events then
      id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'e', ARGV[2 + 2 * i])
      redis.call('SET', key, id .. ' ' .. ARGV[3 + 2 * i], 'EX', ttl)
    else
      id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, '*', 'o', ARGV[3 + events + i])
      redis.call('SET', key, id, 'EX', ttl)
    end
    written = written + 1
  end
end
return written
"""


@dataclass(frozen=True, slots=True)
class LedgerKeys:
    prefix: str

    @property
    def events(self) -> str:
        return f"{self.prefix}:ledger:events"

    @property
    def outcomes(self) -> str:
        return f"{self.prefix}:ledger:outcomes"

    def request(self, request_id: str) -> str:
        return f"{self.prefix}:ledger:request:{request_id}"

    def outcome(self, outcome_id: str) -> str:
        return f"{self.prefix}:ledger:outcome:{outcome_id}"

    def feedback(self, request_id: str) -> str:
        return f"{self.prefix}:feedback:{request_id}"


# --- records -----------------------------------------------------------------------------------------


def event_record(event: RequestEvent, store_prompts: bool, redact: Redactor) -> dict[str, Any]:
    """The event as it is logged: everything but the transient fields, texts only when stored."""
    usage = event.usage
    record: dict[str, Any] = {
        "v": RECORD_VERSION,
        "kind": "request",
        "request_id": event.request_id,
        "t": event.started_at,
        "tenant": event.tenant,
        "route": event.route,
        "reason": event.reason,
        "difficulty": event.difficulty,
        "stakes": event.stakes,
        "classifier_version": event.classifier_version,
        "cache": event.cache,
        "stream": event.stream,
        "status": event.status,
        "error": event.error,
        "latency_s": event.latency_s,
        "cost_usd": event.cost_usd,
        "saved_usd": event.saved_usd,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "fallback": event.fallback,
        "prompt_hash": event.prompt_hash,
        "prompt_hash_key_id": event.prompt_hash_key_id,
        "calls": [
            {
                "model": call.model,
                "role": call.role,
                "status": call.status,
                "latency_s": call.latency_s,
                "prompt_tokens": call.usage.prompt_tokens,
                "completion_tokens": call.usage.completion_tokens,
                "cost_usd": call.cost_usd,
                "layer": call.layer,
                "error": call.error,
                "usage_estimated": call.usage_estimated,  # tokens counted by the router, not the upstream
                "replaced_by_fallback": call.replaced_by_fallback,
            }
            for call in event.calls
        ],
        "extra": event.extra,
    }
    if store_prompts and event.messages is not None:
        record["messages"] = redact_messages(event.messages, redact)
        record["answer"] = None if event.answer is None else redact(event.answer)
    return record


def index_summary(event: RequestEvent) -> dict[str, Any]:
    """What a feedback lookup needs to know without reading the stream entry."""
    return {"tenant": event.tenant, "route": event.route, "status": event.status, "cache": event.cache}


# Building a record costs ~6-13 us: 40 of them hold the event loop for well under a millisecond.
_RECORDS_PER_TURN = 40


@dataclass(frozen=True, slots=True)
class _Pending:
    event: RequestEvent | None = None
    outcome: dict[str, Any] | None = None


@dataclass(slots=True)
class LedgerCounters:
    recorded: int = 0  # events and outcomes handed to the log
    written: int = 0  # of those, written to Redis
    dropped: int = 0  # lost: the buffer overflowed, Redis stayed down through shutdown, or no record could be made
    write_failures: int = 0  # batches that failed and were retried


def _dumps(record: dict[str, Any]) -> bytes:
    # `extra` is open to every part of the service: a value JSON cannot hold is logged as its str()
    # rather than failing the batch.
    return orjson.dumps(record, default=str)


async def _wait(event: asyncio.Event, timeout_s: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout_s)


class OutcomeLog:
    """The EventSink that writes the outcome log. Create it, `start()` it, `close()` it at shutdown."""

    def __init__(self, redis: Any, settings: Settings, redact: Redactor | None = None) -> None:
        self._redis = redis
        self._settings: LedgerSettings = settings.ledger
        self.keys = LedgerKeys(settings.redis_prefix)
        self._store_prompts = settings.ledger.store_prompts or settings.demo
        self._redact = redact or load_redactor(settings.ledger.redact)
        self._script = redis.register_script(_APPEND_BATCH)
        self._pending: deque[_Pending] = deque()
        self._in_flight: list[_Pending] = []
        self._wake = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self.counters = LedgerCounters()

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def stores_prompts(self) -> bool:
        return self._store_prompts

    @property
    def redactor(self) -> Redactor:
        return self._redact

    def record(self, event: RequestEvent) -> None:
        self._enqueue(_Pending(event=event))

    def record_outcome(self, outcome: dict[str, Any]) -> None:
        """Queue an outcome (a shadow verdict) for the outcomes stream. It gets an `outcome_id` (unless it
        has one), by which a batch sent again after a lost reply does not log it twice."""
        if "outcome_id" not in outcome:
            outcome = {**outcome, "outcome_id": uuid.uuid4().hex}
        self._enqueue(_Pending(outcome=outcome))

    def is_pending(self, request_id: str) -> bool:
        """Whether the request's event is buffered or being written right now (not yet readable)."""
        return any(
            item.event is not None and item.event.request_id == request_id
            for item in (*self._in_flight, *self._pending)
        )

    def _enqueue(self, item: _Pending) -> None:
        self.counters.recorded += 1
        self._pending.append(item)
        if len(self._pending) > self._settings.max_buffer:
            self._pending.popleft()
            self.counters.dropped += 1
            if self.counters.dropped == 1 or self.counters.dropped % 1000 == 0:
                logger.error("outcome log buffer full: %d events dropped so far", self.counters.dropped)
        if len(self._pending) >= self._settings.batch_size:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outcome-log-writer")

    async def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            if len(self._pending) < self._settings.batch_size:
                self._wake.clear()
                await _wait(self._wake, self._settings.flush_interval_s)
            if self._stop.is_set() or not self._pending:
                continue
            if await self._write_batch():
                failures = 0
            else:
                failures += 1
                # Back off while Redis is away; the buffer holds the events meanwhile.
                await _wait(self._stop, min(2.0, 0.05 * 2**failures))

    async def _write_batch(self) -> bool:
        """Write up to one batch; on failure put it back at the front, in order. True when written."""
        async with self._write_lock:
            batch = [self._pending.popleft() for _ in range(min(self._settings.batch_size, len(self._pending)))]
            if not batch:
                return True
            self._in_flight = batch
            try:
                await self._send(batch)
            except (RedisError, OSError) as exc:
                self.counters.write_failures += 1
                self._pending.extendleft(reversed(batch))
                while len(self._pending) > self._settings.max_buffer:
                    self._pending.popleft()
                    self.counters.dropped += 1
                if self.counters.write_failures == 1 or self.counters.write_failures % 100 == 0:
                    # After the batch is back in the buffer: the count includes it.
                    logger.warning("outcome log: Redis write failed (%s); %d events buffered", exc, self.pending)
                return False
            finally:
                self._in_flight = []
            self.counters.written += len(batch)
            return True

    async def _send(self, batch: list[_Pending]) -> None:
        """Write the batch in one transaction. Its items that cannot be made into records are taken out of
        it (each logged and counted as dropped, once: a failed write puts back only the others), so that one
        bad record costs itself, not the writer."""
        event_keys, event_args, outcome_keys, outcome_args = [], [], [], []
        unwritable: list[int] = []
        for index, item in enumerate(batch):
            if index and index % _RECORDS_PER_TURN == 0:
                await asyncio.sleep(0)  # let requests in flight run between slices of the batch
            try:
                if item.event is not None:
                    event = item.event
                    record = [_dumps(event_record(event, self._store_prompts, self._redact))]
                    record.append(orjson.dumps(index_summary(event)))
                    event_keys.append(self.keys.request(event.request_id))
                    event_args.extend(record)
                elif item.outcome is not None:
                    outcome = _dumps(item.outcome)
                    outcome_keys.append(self.keys.outcome(item.outcome["outcome_id"]))
                    outcome_args.append(outcome)
            # An operator's redaction hook may raise anything, and a value orjson refuses (an int past 64
            # bits) raises its own error: either would end the writer task and lose every later event.
            except Exception as exc:  # counted, and logged by its type only (its text may quote a prompt)
                unwritable.append(index)
                self._unwritable(item, exc)
        for index in reversed(unwritable):
            del batch[index]
        if len(batch) > _RECORDS_PER_TURN:
            await asyncio.sleep(0)  # packing the command is a slice of its own
        settings = self._settings
        keys = [self.keys.events, self.keys.outcomes, *event_keys, *outcome_keys]
        args = [str(settings.retention), str(settings.feedback_window_s), str(len(event_keys))]
        # One transaction: the batch is written whole or not at all (and then retried whole).
        if len(keys) > 2:
            async with self._redis.pipeline(transaction=True) as pipe:
                await self._script(keys=keys, args=[*args, *event_args, *outcome_args], client=pipe)
                await pipe.execute()

    def _unwritable(self, item: _Pending, exc: Exception) -> None:
        self.counters.dropped += 1
        what = f"request {item.event.request_id}" if item.event is not None else "an outcome"
        logger.error("outcome log: %s could not be made into a record (%s); dropped", what, type(exc).__name__)

    async def flush(self, timeout_s: float | None = None) -> bool:
        """Write everything buffered now; True when the buffer is empty at the end."""
        deadline = time.monotonic() + (self._settings.shutdown_timeout_s if timeout_s is None else timeout_s)
        async with self._write_lock:
            pass  # a batch being written now is done (or back in the buffer) past this point
        while self._pending and time.monotonic() < deadline:
            if not await self._write_batch():
                await asyncio.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        return not self._pending

    async def close(self) -> None:
        """Stop the writer and write what is left (a normal shutdown loses nothing while Redis is up)."""
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        if not await self.flush():
            self.counters.dropped += len(self._pending)
            logger.error("outcome log: Redis unreachable at shutdown; %d events lost", len(self._pending))
            self._pending.clear()
        logger.info("outcome log closed: %d written, %d dropped", self.counters.written, self.counters.dropped)


async def start_outcome_log(state: AppState, stack: AsyncExitStack) -> None:
    """Startup step: the outcome log as a sink, in `state.components["ledger"]`; closed (flushed) at
    shutdown. Needs `state.redis` (the connect_redis step runs first)."""
    if state.redis is None:
        logger.warning("no Redis client: the outcome log is off, feedback and retraining from it too")
        return
    ledger = OutcomeLog(state.redis, state.settings)
    ledger.start()
    stack.push_async_callback(ledger.close)
    state.sinks.append(ledger)
    state.components["ledger"] = ledger
