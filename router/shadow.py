"""Shadow evaluation: some answered requests also run the other route in the background, and a judge
model says whether the mixture was needed. Each comparison becomes an outcome (see router.outcomes).

A sampled cheap-routed request (`shadow.cheap_sample_rate`) also runs the mixture; a sampled
mixture-routed one (`shadow.mixture_sample_rate`) also runs the cheap model. The judge
(`settings.judge_entry`, through the same providers) sees both answers in random order and gives a
verdict; "the mixture's answer is better" means the mixture was needed. The client is never delayed:
`record` is a sampling decision and a non-blocking queue put; a bounded pool of workers does the rest
and a full queue drops the sample. Spend (other route + judge) is held to `shadow.daily_budget_usd` per
UTC day across replicas (router.shadow_budget); an over-budget sample is skipped. At shutdown, runs in
progress get a few seconds to finish and queued samples are dropped, never started.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from redis.exceptions import RedisError

from router.calls import CallRecord, replaced_calls
from router.config import Settings
from router.events import RequestEvent
from router.ledger import RECORD_VERSION, OutcomeLog
from router.mixture import MixtureEngine, QuorumError
from router.outcomes import shadow_label
from router.providers.base import CallMeter, CallResult, CompletionRequest, Message, ProviderError
from router.providers.registry import ProviderSet
from router.redaction import redact_messages
from router.routes import RouteResult, call_latency, run_route, stand_in
from router.shadow_budget import ShadowBudget
from router.tasks import cancel_and_wait

if TYPE_CHECKING:
    from router.state import AppState

logger = logging.getLogger(__name__)

Verdict = Literal["mixture", "cheap", "tie", "unclear"]
_MAX_JUDGED_CHARS = 6000  # per request and per answer: bounds the judge's cost on long inputs

JUDGE_INSTRUCTIONS = """\
You are judging two answers to the same request. Decide which answer serves the user better: \
correctness first, then completeness, then clarity. If they are about equally good, or equally bad, \
call it a tie. Do not prefer an answer for being longer.
Give one or two sentences of reasoning, then end with a last line that is exactly one of:
VERDICT: A
VERDICT: B
VERDICT: TIE"""
# A line of its own, give or take markdown and punctuation: prose such as "my verdict: a tie" or a refusal
# quoting the format ("VERDICT: A or VERDICT: B") is no verdict.
_DECOR = r"[\s*_`'\"\[\]().!]*"
_VERDICT = re.compile(rf"^{_DECOR}VERDICT{_DECOR}:{_DECOR}(A|B|TIE){_DECOR}$", re.IGNORECASE | re.MULTILINE)


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_JUDGED_CHARS else text[:_MAX_JUDGED_CHARS] + " [...]"


def _render(messages: Sequence[Message]) -> str:
    from classifier.text import content_text

    return _clip("\n\n".join(f"{m.get('role', 'user')}: {content_text(m.get('content'))}" for m in messages))


def judge_messages(request: Sequence[Message], answer_a: str, answer_b: str) -> list[dict[str, str]]:
    user = f"Request:\n{_render(request)}\n\nAnswer A:\n{_clip(answer_a)}\n\nAnswer B:\n{_clip(answer_b)}"
    return [{"role": "system", "content": JUDGE_INSTRUCTIONS}, {"role": "user", "content": user}]


def parse_verdict(text: str) -> Literal["A", "B", "TIE"] | None:
    """The judge's last VERDICT line, or None when it gave none (then the outcome has no label)."""
    found = _VERDICT.findall(text)
    if not found:
        return None
    last = found[-1].upper()
    return "A" if last == "A" else "B" if last == "B" else "TIE"


def mixture_verdict(choice: Literal["A", "B", "TIE"] | None, mixture_is_a: bool) -> Verdict:
    if choice is None:
        return "unclear"
    if choice == "TIE":
        return "tie"
    return "mixture" if (choice == "A") == mixture_is_a else "cheap"


class _NotJudged(Exception):
    """The other route gave no answer worth judging (the outcome is logged without a label)."""


@dataclass(frozen=True, slots=True)
class _Job:
    event: RequestEvent
    request: CompletionRequest
    answer: str  # the answer the client got
    other_route: str


@dataclass(slots=True)
class _Run:
    """One comparison as it goes: the other route's calls (added as they finish) and the judge's."""

    route: RouteResult = field(default_factory=RouteResult)
    judge_cost: float = 0.0
    judge_text: str = ""
    verdict: Verdict = "unclear"
    error: str | None = None

    @property
    def cost_usd(self) -> float:
        return self.route.cost_usd + self.judge_cost


@dataclass(slots=True)
class ShadowCounters:
    sampled: int = 0
    completed: int = 0  # a verdict (or an unclear one) was logged
    over_budget: int = 0  # or the rest of the budget was held by a run whose cost was not known yet
    dropped: int = 0  # the queue was full, or the service stopped first
    no_input: int = 0  # the request or answer text was not available in process
    failed: int = 0  # the other route or the judge failed, or Redis did, or a bug (logged)
    spent_usd: float = 0.0


class ShadowEvaluator:
    """The EventSink that samples requests for shadow evaluation; `start` its workers, `close` them."""

    def __init__(
        self,
        settings: Settings,
        providers: ProviderSet,
        engine: MixtureEngine,
        redis: Any,
        ledger: OutcomeLog,
        rng: random.Random | None = None,
        on_verdict: Callable[[bool | None, float], None] | None = None,
    ) -> None:
        self._settings = settings.shadow
        self._on_verdict = on_verdict  # e.g. the stats recorder: (mixture needed or None, run cost)
        self._default_max_tokens = settings.mixture.max_tokens
        self._timeout_s = settings.limits.request_timeout_s
        self._providers = providers
        self._engine = engine
        self._ledger = ledger
        self._budget = ShadowBudget(redis, settings.redis_prefix, settings.shadow.daily_budget_usd)
        self._rng = rng or random.Random()
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=settings.shadow.queue_size)
        self._workers: list[asyncio.Task[None]] = []
        self._closing = False
        self.counters = ShadowCounters()

    @property
    def budget(self) -> ShadowBudget:
        return self._budget

    def _rate(self, route: str) -> float:
        if route == "cheap":
            return self._settings.cheap_sample_rate
        if route == "mixture":
            return self._settings.mixture_sample_rate
        return 0.0

    def record(self, event: RequestEvent) -> None:
        if event.status != 200 or event.cache == "hit" or event.fallback is not None:
            return
        rate = self._rate(event.route)
        if rate <= 0.0 or self._rng.random() >= rate:
            return
        self.counters.sampled += 1
        request = event.upstream
        if request is None and event.messages is not None:
            request = CompletionRequest(event.messages, self._default_max_tokens)
        answer = event.answer_text if event.answer_text is not None else event.answer
        if request is None or answer is None:
            self.counters.no_input += 1
            return
        # A run of its own in the background: the whole request timeout, not what the client had left.
        request = dataclasses.replace(request, timeout_s=self._timeout_s)
        other = "mixture" if event.route == "cheap" else "cheap"
        if self._closing:
            self.counters.dropped += 1
            return
        try:
            self._queue.put_nowait(_Job(event, request, answer, other))
        except asyncio.QueueFull:
            self.counters.dropped += 1

    def start(self) -> None:
        self._workers = [
            asyncio.create_task(self._work(), name=f"shadow-worker-{i}") for i in range(self._settings.concurrency)
        ]

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                await self._evaluate(job)
            except (RedisError, OSError) as exc:
                self.counters.failed += 1
                logger.warning("shadow evaluation of %s failed on Redis: %s", job.event.request_id, exc)
            except Exception:  # a bug in one run must not end this worker, and with it shadow evaluation
                self.counters.failed += 1
                logger.exception("shadow evaluation of %s failed", job.event.request_id)
            finally:
                self._queue.task_done()

    async def _evaluate(self, job: _Job) -> None:
        reservation = await self._budget.reserve(job.other_route)
        if reservation is None:
            self.counters.over_budget += 1
            return
        run, finished = _Run(), False
        try:
            await self._compare(job, run)
            finished = True
        finally:
            cost = run.cost_usd
            if not finished and reservation.cost_known:
                cost = max(cost, reservation.amount)  # cut off (shutdown): its unfinished calls are billed too
            await self._budget.settle(reservation, cost, finished)
            self.counters.spent_usd += cost
        if run.error is not None:
            self.counters.failed += 1
        self.counters.completed += 1
        self._ledger.record_outcome(self._outcome(job, run))
        if self._on_verdict is not None:
            self._on_verdict(None if run.verdict == "unclear" else run.verdict == "mixture", cost)

    async def _compare(self, job: _Job, run: _Run) -> None:
        """Runs the other route and the judge, filling `run`; a failure is noted in `run.error`."""
        try:
            result = await self._run_other_route(job, run)
            fallback = stand_in(job.other_route, self._providers, result)
            if fallback is not None:  # not the route's own answer to judge
                raise _NotJudged(f"{job.other_route}: a stand-in answered ({fallback} fallback)")
            mixture_is_a = self._rng.random() < 0.5
            mixture_answer, cheap_answer = (
                (result.text, job.answer) if job.other_route == "mixture" else (job.answer, result.text)
            )
            a, b = (mixture_answer, cheap_answer) if mixture_is_a else (cheap_answer, mixture_answer)
            judge_request = CompletionRequest(
                judge_messages(job.request.messages, a, b), self._settings.judge_max_tokens, 0.0, {}, None
            )
            judged = await self._judge(judge_request, run)
            run.judge_cost, run.judge_text = run.judge_cost + judged.cost_usd, judged.text
            run.verdict = mixture_verdict(parse_verdict(judged.text), mixture_is_a)
        except ProviderError as exc:
            run.error = f"{exc.model}: {exc.kind}"
        except _NotJudged as exc:
            run.error = str(exc)
        except QuorumError as exc:  # its calls, paid for, are in run.route.calls
            run.error = f"mixture: {exc}"

    async def _run_other_route(self, job: _Job, run: _Run) -> RouteResult:
        try:
            return await run_route(job.other_route, job.request, self._providers, self._engine, run.route)
        except ProviderError as exc:  # the single model failed: one that timed out once sent was billed its prompt
            latency = call_latency(run.route, time.perf_counter())
            run.route.calls.append(CallRecord.from_error(exc, job.other_route, latency, meter=run.route.meter))
            raise

    async def _judge(self, request: CompletionRequest, run: _Run) -> CallResult:
        """The judge's answer; what its calls that timed out once sent were billed is in `run.judge_cost`."""
        meter, started = CallMeter(), time.perf_counter()
        try:
            return await self._providers.judge.complete(request, meter)
        except ProviderError as exc:
            run.judge_cost += CallRecord.from_error(exc, "judge", time.perf_counter() - started, meter=meter).cost_usd
            raise
        finally:  # a judge that timed out before its fallback entry took over
            run.judge_cost += sum(call.cost_usd for call in replaced_calls(meter, "judge"))

    def _outcome(self, job: _Job, run: _Run) -> dict[str, Any]:
        event = job.event
        verdict = run.verdict
        needed = None if verdict == "unclear" else verdict == "mixture"
        outcome: dict[str, Any] = {
            "v": RECORD_VERSION,
            "kind": "shadow",
            "request_id": event.request_id,
            "t": time.time(),
            "tenant": event.tenant,
            "route": event.route,
            "shadow_route": job.other_route,
            "verdict": verdict,
            "mixture_needed": needed,
            "label": shadow_label(needed).to_json(),
            "judge_model": self._providers.judge.name,
            "shadow_cost_usd": run.cost_usd,
            "error": run.error,
            "classifier_version": event.classifier_version,
            "difficulty": event.difficulty,
            "stakes": event.stakes,
            "prompt_hash": event.prompt_hash,
            "prompt_hash_key_id": event.prompt_hash_key_id,
        }
        if self._ledger.stores_prompts:
            outcome["messages"] = redact_messages(job.request.messages, self._ledger.redactor)
            outcome["judge_reasoning"] = self._ledger.redactor(run.judge_text)
        return outcome

    async def wait_idle(self) -> None:
        """Until every queued sample has been run (or skipped)."""
        await self._queue.join()

    async def close(self) -> None:
        """Let runs in progress finish for a few seconds, then stop. Queued samples are dropped, not
        started: a run begun now would be paid for and then most likely cut off."""
        self._closing = True
        while not self._queue.empty():
            self._queue.get_nowait()
            self._queue.task_done()
            self.counters.dropped += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), self._settings.stop_grace_s)
        await cancel_and_wait(*self._workers)


async def start_shadow(state: AppState, stack: AsyncExitStack) -> None:
    """Startup step (after the outcome log's): the shadow sampler as a sink, in
    `state.components["shadow"]`, when a sample rate is set."""
    shadow = state.settings.shadow
    ledger = state.components.get("ledger")
    if shadow.cheap_sample_rate <= 0 and shadow.mixture_sample_rate <= 0:
        return
    if not isinstance(ledger, OutcomeLog):
        logger.warning("shadow evaluation is configured but the outcome log is off: no shadow runs")
        return
    stats = state.components.get("stats")
    on_verdict = getattr(stats, "record_shadow", None)
    evaluator = ShadowEvaluator(
        state.settings, state.providers, state.engine, state.redis, ledger, on_verdict=on_verdict
    )
    evaluator.start()
    stack.push_async_callback(evaluator.close)
    state.sinks.append(evaluator)
    state.components["shadow"] = evaluator
