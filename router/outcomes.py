"""Reading the outcome log back: label rules, labelled training rows, and JSON-lines export.

An outcome is a judgement attached to one logged request: a user's feedback, or a shadow comparison
by the judge model. The difficulty label means "the cheap model's answer was not good enough":

- feedback on a cheap-routed request: `bad` -> 1 (it needed escalation), `good` -> 0;
- feedback on a mixture- or strong-routed request: `bad` -> 1 at half weight (even the escalated route
  fell short, so the cheap model would very likely have too); `good` -> no label, since it says
  nothing about whether the cheap model would have sufficed (the outcome is still logged);
- shadow comparison: the judge preferred the mixture's answer -> 1; the cheap answer, or a tie -> 0;
  an unreadable verdict -> no label.

Outcomes carry no stakes judgement; a training row's stakes label is the logged stakes probability
rounded at 0.5, so retraining on outcomes leaves the stakes head where the routing version had it.
Training needs the prompt text: when `ledger.store_prompts` is off, outcomes are logged with the
prompt's hash only and cannot train (the demo stores prompts).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from classifier.text import messages_to_text
from router.config import ConfigError, LedgerSettings, Settings, load_settings
from router.ledger import LedgerKeys

Rating = Literal["good", "bad"]
LabelSource = Literal["feedback", "shadow"]
_ESCALATED_BAD_FACTOR = 0.5


@dataclass(frozen=True, slots=True)
class Label:
    """A difficulty label (None: the outcome says nothing about it) and a factor on the source weight."""

    difficulty: int | None
    factor: float = 1.0

    def to_json(self) -> dict[str, Any]:
        return {"difficulty": self.difficulty, "factor": self.factor}


def feedback_label(route: str, rating: Rating, fallback: str | None = None) -> Label:
    """What a rating says of the query's difficulty. Nothing when a fallback model answered (`fallback`
    names it): the rating judges that model's answer, not the route's."""
    if fallback is not None:
        return Label(None)
    if route == "cheap":
        return Label(1 if rating == "bad" else 0)
    if rating == "bad":
        return Label(1, _ESCALATED_BAD_FACTOR)
    return Label(None)


def shadow_label(mixture_needed: bool | None) -> Label:
    return Label(None if mixture_needed is None else int(mixture_needed))


# --- reading -----------------------------------------------------------------------------------------


def iter_stream(client: Any, key: str, field_name: str, page: int = 1000) -> Iterator[dict[str, Any]]:
    """Every entry of a stream, oldest first, decoded from JSON, paging with XRANGE (sync client)."""
    start = "-"
    while True:
        entries = client.xrange(key, min=start, max="+", count=page)
        for entry_id, fields in entries:
            raw = fields.get(field_name.encode()) or fields.get(field_name)
            if raw is not None:
                record: dict[str, Any] = orjson.loads(raw)
                record["stream_id"] = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                yield record
        if len(entries) < page:
            return
        last = entries[-1][0]
        start = "(" + (last.decode() if isinstance(last, bytes) else last)


def iter_events(client: Any, keys: LedgerKeys) -> Iterator[dict[str, Any]]:
    return iter_stream(client, keys.events, "e")


def iter_outcomes(client: Any, keys: LedgerKeys) -> Iterator[dict[str, Any]]:
    return iter_stream(client, keys.outcomes, "o")


@dataclass(slots=True)
class RowStats:
    """How the logged outcomes turned into training rows (printed by `train --from-log`)."""

    outcomes: int = 0
    rows: int = 0
    by_source: dict[str, int] = field(default_factory=dict)
    no_label: int = 0  # e.g. a good rating on a mixture-routed request
    no_prompt: int = 0  # logged without prompt text (ledger.store_prompts off)
    superseded: int = 0  # a second outcome for a request already labelled (feedback wins over shadow)

    def describe(self) -> str:
        sources = ", ".join(f"{name} {count}" for name, count in sorted(self.by_source.items())) or "none"
        return (
            f"{self.outcomes} logged outcomes -> {self.rows} training rows ({sources}); skipped: "
            f"{self.no_label} without a difficulty label, {self.no_prompt} without prompt text, "
            f"{self.superseded} superseded"
        )


_SOURCE_RANK = {"feedback": 0, "shadow": 1}


def labelled_rows(
    outcomes: Iterable[Mapping[str, Any]], weights: Mapping[str, float] | None = None
) -> tuple[list[dict[str, Any]], RowStats]:
    """Training rows (the classifier's row schema plus `weight` and `source`) from logged outcomes.

    One row per request: feedback wins over a shadow verdict, and the first of each kind counts."""
    chosen_weights = {**source_weights(LedgerSettings()), **(weights or {})}
    stats = RowStats()
    best: dict[str, Mapping[str, Any]] = {}
    for outcome in outcomes:
        stats.outcomes += 1
        label = outcome.get("label") or {}
        if label.get("difficulty") not in (0, 1):
            stats.no_label += 1
            continue
        if not outcome.get("messages"):
            stats.no_prompt += 1
            continue
        request_id = str(outcome["request_id"])
        previous = best.get(request_id)
        if previous is not None:
            stats.superseded += 1
            if _SOURCE_RANK.get(str(outcome["kind"]), 9) >= _SOURCE_RANK.get(str(previous["kind"]), 9):
                continue
        best[request_id] = outcome
    rows = []
    for request_id, outcome in best.items():
        source = str(outcome["kind"])
        label = outcome["label"]
        stakes = outcome.get("stakes")
        # Split by what was asked, not by request: a prompt asked twice must not be both trained on
        # and judged on, and the held-back part stays the same when the same traffic is replayed.
        text = messages_to_text(outcome["messages"])
        rows.append(
            {
                "id": f"outcome:{request_id}",
                "split_key": "prompt:" + hashlib.sha256(text.encode("utf-8")).hexdigest(),
                "messages": outcome["messages"],
                "domain": "logged",
                "task_type": "logged",
                "language": "und",
                "difficulty": int(label["difficulty"]),
                "stakes": int(stakes is not None and float(stakes) >= 0.5),
                "weight": chosen_weights.get(source, 1.0) * float(label.get("factor", 1.0)),
                "source": source,
            }
        )
        stats.by_source[source] = stats.by_source.get(source, 0) + 1
    stats.rows = len(rows)
    return rows, stats


# --- connecting from the command line ----------------------------------------------------------------


def source_weights(settings: LedgerSettings) -> dict[str, float]:
    """Training weight of a row by the source of its label (the seed data counts 1)."""
    return {"feedback": settings.feedback_weight, "shadow": settings.shadow_weight}


@dataclass(frozen=True, slots=True)
class LogLocation:
    """Where the outcome log lives: a Redis URL (None: the embedded one under `data_dir`) and a prefix,
    and the label weights of the config."""

    redis_url: str | None
    prefix: str
    data_dir: Path
    weights: dict[str, float] = field(default_factory=lambda: source_weights(LedgerSettings()))

    @property
    def keys(self) -> LedgerKeys:
        return LedgerKeys(self.prefix)

    @classmethod
    def from_environment(cls, config: str | None = None, prefix: str | None = None) -> LogLocation:
        """From the config file (`--config` or MOA_ROUTER_CONFIG) when there is one, else from REDIS_URL
        and MOA_ROUTER_DATA_DIR with the default prefix; `prefix` overrides."""
        if config or os.environ.get("MOA_ROUTER_CONFIG"):
            settings = load_settings(config)
            url, chosen, data_dir = settings.redis_url, settings.redis_prefix, settings.data_dir
            weights = source_weights(settings.ledger)
        else:
            default = Settings.model_fields["redis_prefix"].default
            url = os.environ.get("REDIS_URL") or None
            chosen = str(default)
            data_dir = Path(os.environ.get("MOA_ROUTER_DATA_DIR") or ".moa-router")
            weights = source_weights(LedgerSettings())
        return cls(url, prefix or chosen, data_dir, weights)


@contextlib.contextmanager
def connect(location: LogLocation) -> Iterator[Any]:
    """A synchronous Redis client for the command line. Without a URL it starts the embedded Redis
    under the data directory, unless a running service's embedded Redis answers there (two servers must
    not share one append-only file)."""
    from redis import Redis

    from router.redis_server import EmbeddedRedis, running_embedded_url

    with contextlib.ExitStack() as stack:
        url = location.redis_url or running_embedded_url(location.data_dir / "redis")
        if url is None:
            url = stack.enter_context(EmbeddedRedis(location.data_dir / "redis", persist=True)).url
        client = Redis.from_url(url, socket_timeout=30, socket_connect_timeout=5)
        stack.callback(client.close)
        yield client


def load_logged_rows(location: LogLocation | None = None) -> tuple[list[dict[str, Any]], RowStats]:
    """Training rows from the outcome log that REDIS_URL / the config file point at, weighted by the
    config's `ledger.feedback_weight` and `ledger.shadow_weight`."""
    where = location or LogLocation.from_environment()
    with connect(where) as client:
        return labelled_rows(iter_outcomes(client, where.keys), where.weights)


# --- the promotion gate of `train --from-log` --------------------------------------------------------


def is_logged(row: Mapping[str, Any]) -> bool:
    return row.get("source") in _SOURCE_RANK


@dataclass(frozen=True, slots=True)
class GateResult:
    """Old and new version on the held-back split: difficulty on the logged outcomes (the labels this
    deployment produced), stakes on the seed rows (outcomes carry no stakes judgement)."""

    n_logged: int
    n_seed: int
    old: dict[str, float | None]
    new: dict[str, float | None]
    passed: bool
    reason: str

    def describe(self) -> str:
        def cell(value: float | None) -> str:
            return "-" if value is None else f"{value:.4f}"

        lines = [f"gate on the held-back split: {self.n_logged} logged outcomes, {self.n_seed} seed rows"]
        lines.append(f"  {'metric':34} {'active':>8} {'new':>8}")
        for name in self.old:
            lines.append(f"  {name:34} {cell(self.old[name]):>8} {cell(self.new[name]):>8}")
        lines.append(f"  -> {'pass' if self.passed else 'FAIL'}: {self.reason}")
        return "\n".join(lines)


def _head_probabilities(scorer: Any, rows: Sequence[Mapping[str, Any]], head: str) -> tuple[list[float], Any]:
    """(labels, probabilities) of one head on labelled rows."""
    from classifier.dataset import row_text

    if not rows:
        return [], []
    column = 0 if head == "difficulty" else 1
    return [float(row[head]) for row in rows], scorer.predict_proba([row_text(row) for row in rows])[:, column]


def _head_metrics(labels: list[float], probabilities: Any) -> tuple[float | None, float | None]:
    """(AUROC or None without both classes, log loss); (None, None) without rows."""
    from classifier import metrics

    if not labels:
        return None, None
    both = 0 < sum(labels) < len(labels)
    return (metrics.auroc(labels, probabilities) if both else None), metrics.log_loss(labels, probabilities)


def logged_gate(old: Any, new: Any, rows: Sequence[dict[str, Any]], held_back_fraction: float) -> GateResult:
    """Whether `new` is not worse than `old`: difficulty AUROC on the held-back logged outcomes (log
    loss when they hold one class only) and stakes AUROC on the held-back seed rows, each within the
    training's tolerance; for the difficulty AUROC, within one bootstrap standard error of the paired
    difference when that is larger (non-inferiority on a small sample, not a coin toss on its noise)."""
    from classifier.dataset import split_rows
    from classifier.metrics import paired_auroc_difference_se
    from classifier.training import PROMOTION_TOLERANCE

    _, held = split_rows(rows, held_back_fraction)
    logged = [row for row in held if is_logged(row)]
    seed = [row for row in held if not is_logged(row)]
    labels, old_p = _head_probabilities(old, logged, "difficulty")
    _, new_p = _head_probabilities(new, logged, "difficulty")
    old_d_auroc, old_d_loss = _head_metrics(labels, old_p)
    new_d_auroc, new_d_loss = _head_metrics(labels, new_p)
    old_s_auroc, _ = _head_metrics(*_head_probabilities(old, seed, "stakes"))
    new_s_auroc, _ = _head_metrics(*_head_probabilities(new, seed, "stakes"))
    problems = []
    if not logged:
        problems.append("no logged outcome fell in the held-back split: nothing to judge the new version on")
    elif old_d_auroc is not None and new_d_auroc is not None:
        # On a few dozen held-back outcomes AUROC moves by several hundredths between equal versions.
        tolerance = max(PROMOTION_TOLERANCE, paired_auroc_difference_se(labels, old_p, new_p))
        if new_d_auroc < old_d_auroc - tolerance:
            problems.append(f"difficulty AUROC on logged outcomes dropped by more than {tolerance:.3f}")
    elif new_d_loss is not None and old_d_loss is not None and new_d_loss > old_d_loss + PROMOTION_TOLERANCE:
        problems.append("difficulty log loss on logged outcomes rose")
    if old_s_auroc is not None and new_s_auroc is not None and new_s_auroc < old_s_auroc - PROMOTION_TOLERANCE:
        problems.append("stakes AUROC on seed rows dropped")
    return GateResult(
        n_logged=len(logged),
        n_seed=len(seed),
        old={
            "difficulty AUROC (logged)": old_d_auroc,
            "difficulty log loss (logged)": old_d_loss,
            "stakes AUROC (seed)": old_s_auroc,
        },
        new={
            "difficulty AUROC (logged)": new_d_auroc,
            "difficulty log loss (logged)": new_d_loss,
            "stakes AUROC (seed)": new_s_auroc,
        },
        passed=not problems,
        reason="; ".join(problems) or "not worse than the active version",
    )


def export_lines(records: Iterable[Mapping[str, Any]]) -> Iterator[bytes]:
    """JSON lines, one record a line."""
    for record in records:
        yield orjson.dumps(record) + b"\n"


def read_logged_rows(config: str | None = None) -> list[dict[str, Any]] | None:
    """For `train --from-log`: the training rows of the outcome log of `config` (else MOA_ROUTER_CONFIG's,
    else REDIS_URL's), printing how many, or None (with the reason on stderr) when it cannot be read."""
    import sys

    from redis.exceptions import RedisError

    try:
        logged, stats = load_logged_rows(LogLocation.from_environment(config))
    except (ConfigError, RedisError, OSError, RuntimeError) as exc:  # RuntimeError: embedded Redis failed
        print(f"moa-router train: cannot read the outcome log: {exc}", file=sys.stderr)
        return None
    print(stats.describe())
    return logged
