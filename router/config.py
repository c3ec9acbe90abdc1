"""One settings object: a YAML file (`--config` or MOA_ROUTER_CONFIG) plus environment variables."""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

logger = logging.getLogger(__name__)


# An environment variable's name as a config gives it (`$NAME` or an empty name would name none).
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
# Before a model's family in its name: a fine-tune's "ft:", Bedrock's vendor (and region) such as "us.anthropic.".
_BEFORE_FAMILY = re.compile(r"^(?:ft:)?(?:[a-z]+\.)*")
_FAMILY = re.compile(r"[a-z]+")  # the family is the name's leading letters: gpt-4o, llama3.1, qwen2.5, claude-...


class _Section(BaseModel):
    # Unknown keys are errors: a typo in a config file must not be silently ignored. So are NaN and
    # infinities (YAML's .nan, .inf): no setting means "never" or "unlimited" by them, and a NaN fails
    # every comparison (a NaN threshold would silently stop escalation).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelEntry(_Section):
    """One upstream model, in litellm's terms (`provider/model`)."""

    model: str = Field(min_length=3)
    api_base: str | None = None
    api_key: str | None = Field(default=None, repr=False)
    api_key_env: Annotated[str, Field(min_length=1, pattern=_ENV_NAME)] | None = None
    timeout_s: float = Field(default=60.0, gt=0)
    input_cost_per_token: float | None = Field(default=None, ge=0)
    output_cost_per_token: float | None = Field(default=None, ge=0)
    family: str | None = None  # the model family, when the name does not tell it (diversity check)
    # Where this model's traffic goes while it is cooled down after repeated failures (router.resilience).
    fallback: ModelEntry | None = None

    @model_validator(mode="after")
    def _check(self) -> ModelEntry:
        provider, _, name = self.model.partition("/")
        if not provider or not name:
            raise ValueError(f"model {self.model!r} needs litellm's 'provider/model' form")
        if self.api_key and self.api_key_env:
            raise ValueError("give api_key or api_key_env, not both")
        if (self.input_cost_per_token is None) != (self.output_cost_per_token is None):
            raise ValueError("give both input_cost_per_token and output_cost_per_token, or neither")
        return self

    @property
    def provider(self) -> str:
        return self.model.split("/", 1)[0]

    @property
    def family_name(self) -> str:
        """The model family (e.g. gpt, claude, gemini, llama), to warn about near-identical proposers."""
        if self.family:
            return self.family.lower()
        name = _BEFORE_FAMILY.sub("", self.model.split("/", 1)[1].lower().rsplit("/", 1)[-1], count=1)
        family = _FAMILY.match(name)
        return family.group() if family else name.split("-")[0]

    def resolved_api_key(self) -> str | None:
        if self.api_key_env:
            return os.environ.get(self.api_key_env)
        return self.api_key


# The numbers that decide routes and spend are strict: YAML's `true`/`yes` is not 1, nor "30" 30 (an
# integer is still a valid float).
class MixtureSettings(_Section):
    layers: int = Field(default=1, ge=1, le=4, strict=True)
    proposer_deadline_s: float = Field(default=30.0, gt=0, strict=True)
    quorum: int = Field(default=2, ge=1, strict=True)
    max_tokens: int = Field(default=1024, ge=1)
    temperature: float = Field(default=0.7, ge=0, le=2)
    aggregator_temperature: float = Field(default=0.3, ge=0, le=2)


class PolicySettings(_Section):
    """Thresholds override the classifier version's calibrated ones when set."""

    difficulty: float | None = Field(default=None, ge=0, le=1, strict=True)
    stakes: float | None = Field(default=None, ge=0, le=1, strict=True)
    stakes_min_difficulty: float | None = Field(default=None, ge=0, le=1, strict=True)
    # The routes a client may force with `x-moa-route` (`auto` is always allowed). Without a mixture budget,
    # a client allowed `mixture` can send every request through it, at several times the cost.
    client_overrides: tuple[Literal["cheap", "mixture"], ...] = ("cheap", "mixture")


class LimitSettings(_Section):
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    max_messages: int = Field(default=256, ge=1)
    max_tokens_cap: int = Field(default=8192, ge=1)
    request_timeout_s: float = Field(default=120.0, gt=0)
    # Upstream calls in flight at once per worker, over every model (the shared connection pool); a call
    # past it waits for a free one within its deadline. Strict: `true` or `1.5` is a mistake, not 1.
    max_upstream_in_flight: int = Field(default=512, ge=1, strict=True)


class CacheSettings(_Section):
    enabled: bool = True
    ttl_s: int = Field(default=3600, ge=1)
    # The longest a client may ask an answer to be kept (`ttl_s` in a request); unset: `ttl_s`. Redis
    # memory is sized by these, not by what clients ask.
    max_ttl_s: int | None = Field(default=None, ge=1)
    deterministic_only: bool = True
    timeout_ms: float = Field(default=50.0, gt=0)
    single_flight_wait_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _max_ttl_at_least_the_default(self) -> CacheSettings:
        # Below the default, a client asking for longer would get less than a client asking for nothing.
        if self.max_ttl_s is not None and self.max_ttl_s < self.ttl_s:
            raise ValueError(f"max_ttl_s ({self.max_ttl_s}) is below ttl_s ({self.ttl_s}), the default it caps")
        return self


class LedgerSettings(_Section):
    store_prompts: bool = False
    retention: int = Field(default=1_000_000, ge=100)
    batch_size: int = Field(default=200, ge=1)
    flush_interval_s: float = Field(default=0.2, gt=0)
    # "builtin" (masks e-mails, key-like tokens, card and phone numbers), "none", or "module:function".
    redact: str = Field(default="builtin", min_length=1)
    feedback_window_s: int = Field(default=7 * 86400, ge=60)  # how long a request can still be rated
    max_buffer: int = Field(default=100_000, ge=1)  # events held in memory while Redis is unreachable
    shutdown_timeout_s: float = Field(default=10.0, gt=0)
    # Weight of a logged outcome by the source of its label in `train --from-log`'s correction.
    feedback_weight: float = Field(default=1.0, ge=0)
    shadow_weight: float = Field(default=0.5, ge=0)
    # The environment variable holding the key of the logged prompt hashes (router/prompt_hash.py),
    # read by the service only (commands that read the log never hash); unset: a key generated once
    # and shared through Redis.
    prompt_hash_key_env: Annotated[str, Field(min_length=1, pattern=_ENV_NAME)] | None = None


class ShadowSettings(_Section):
    cheap_sample_rate: float = Field(default=0.0, ge=0, le=1)
    mixture_sample_rate: float = Field(default=0.0, ge=0, le=1)
    daily_budget_usd: float = Field(default=1.0, ge=0)
    concurrency: int = Field(default=2, ge=1)
    queue_size: int = Field(default=64, ge=1)
    judge_max_tokens: int = Field(default=256, ge=16)
    # At shutdown, how long runs in progress may finish (queued ones are dropped); the rest are cut off,
    # paid for and unjudged. A mixture run may take longer than the default; the stop waits this long.
    stop_grace_s: float = Field(default=5.0, ge=0)


class BudgetSettings(_Section):
    mixture_daily_usd: float | None = Field(default=None, ge=0, strict=True)
    mixture_daily_usd_per_tenant: float | None = Field(default=None, ge=0, strict=True)
    # Per UTC calendar month (resets on the 1st at 00:00 UTC), beside the daily caps: any cap reached
    # sends escalations to the fallback.
    mixture_monthly_usd: float | None = Field(default=None, ge=0, strict=True)
    mixture_monthly_usd_per_tenant: float | None = Field(default=None, ge=0, strict=True)
    fallback: Literal["cheap", "strong"] = "cheap"
    # How often each replica adds its mixture spend to the shared totals in Redis and reads them back.
    sync_interval_s: float = Field(default=1.0, gt=0, strict=True)


class TenantKey(_Section):
    tenant: str = Field(min_length=1, max_length=64)
    key_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class TenantLimits(_Section):
    """One tenant's rate limits, field by field: a field set here replaces `auth`'s default of that field
    for this tenant; an unset field keeps the default. A tenant cannot be exempted from a default limit
    (there is no "unlimited"), only given a higher one."""

    tenant: str = Field(min_length=1, max_length=64)
    requests_per_minute: int | None = Field(default=None, ge=1)
    tokens_per_minute: int | None = Field(default=None, ge=1)


class AuthSettings(_Section):
    open: bool = False
    keys: tuple[TenantKey, ...] = ()
    admin_key_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    # Keys may also live in Redis (hash `<prefix>:auth:keys`, sha256 -> tenant), re-read this often.
    redis_keys: bool = True
    redis_refresh_s: float = Field(default=2.0, gt=0)
    requests_per_minute: int | None = Field(default=None, ge=1)
    tokens_per_minute: int | None = Field(default=None, ge=1)
    tenant_limits: tuple[TenantLimits, ...] = ()
    # The rate limiter's Redis round trip gives up after this long and lets the request through.
    rate_limit_timeout_ms: float = Field(default=50.0, gt=0)


class ResilienceSettings(_Section):
    """Retries of failed upstream calls (only where safe, within the request deadline) and the per-model
    circuit breaker that cools a failing model down and sends its traffic to the entry's fallback."""

    max_attempts: int = Field(default=3, ge=1, le=10)
    backoff_base_s: float = Field(default=0.05, ge=0)
    backoff_max_s: float = Field(default=2.0, ge=0)
    max_retry_after_s: float = Field(default=10.0, ge=0)  # a longer retry-after is not waited for
    failure_threshold: int = Field(default=5, ge=1)  # consecutive failures that open the breaker
    cooldown_s: float = Field(default=30.0, gt=0)
    shutdown_grace_s: float = Field(default=30.0, gt=0)  # how long shutdown waits for in-flight requests


class Settings(_Section):
    cheap: ModelEntry
    proposers: tuple[ModelEntry, ...] = Field(min_length=1)
    aggregator: ModelEntry
    judge: ModelEntry | None = None
    strong: ModelEntry | None = None  # the single strong model of the "strong" budget fallback
    mixture: MixtureSettings = MixtureSettings()
    policy: PolicySettings = PolicySettings()
    limits: LimitSettings = LimitSettings()
    cache: CacheSettings = CacheSettings()
    ledger: LedgerSettings = LedgerSettings()
    shadow: ShadowSettings = ShadowSettings()
    budget: BudgetSettings = BudgetSettings()
    auth: AuthSettings = AuthSettings()
    resilience: ResilienceSettings = ResilienceSettings()
    redis_url: str | None = None
    redis_prefix: str = Field(default="moa", pattern=r"^[A-Za-z0-9_.-]+$")
    data_dir: Path = Path(".moa-router")
    lean_openai_path: bool = True
    demo: bool = False

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.mixture.quorum > len(self.proposers):
            raise ValueError(
                f"mixture.quorum ({self.mixture.quorum}) exceeds the number of proposers ({len(self.proposers)})"
            )
        return self

    @property
    def judge_entry(self) -> ModelEntry:
        return self.judge or self.aggregator

    @property
    def strong_entry(self) -> ModelEntry:
        return self.strong or self.aggregator

    def diversity_warning(self) -> str | None:
        families = {entry.family_name for entry in self.proposers}
        if len(self.proposers) > 1 and len(families) == 1:
            return (
                f"all {len(self.proposers)} proposers are of one model family ({families.pop()}): "
                "a mixture gains most from diverse proposers"
            )
        return None

    def duplicate_proposers_warning(self) -> str | None:
        """A proposer listed more than once (same model, same api_base): its answers count that many times
        toward the quorum, and one outage of it (one circuit breaker) fails them all. Sampling one model
        several times can be meant, so this warns rather than refuses."""
        counts = Counter((entry.model, entry.api_base) for entry in self.proposers)
        repeated = [f"{model} {count} times" for (model, _), count in counts.items() if count > 1]
        if not repeated:
            return None
        return (
            f"proposers list {', '.join(repeated)}: its answers count that many times toward mixture.quorum "
            f"({self.mixture.quorum}) and one outage of it fails them all"
        )

    def _entries(self) -> Iterator[tuple[str, ModelEntry]]:
        """Every configured model entry with its place in the file, fallbacks included."""
        roots: list[tuple[str, ModelEntry | None]] = [
            ("cheap", self.cheap),
            *((f"proposers.{i}", entry) for i, entry in enumerate(self.proposers)),
            ("aggregator", self.aggregator),
            ("judge", self.judge),
            ("strong", self.strong),
        ]
        for where, root in roots:
            entry = root
            while entry is not None:
                yield where, entry
                where, entry = f"{where}.fallback", entry.fallback

    def check_api_keys(self) -> None:
        """Raise ConfigError naming every `api_key_env` whose variable is unset or empty. For `serve` only
        (the commands that read the log or score need no upstream key): without it the service starts and
        every call to such a model fails upstream, from the first request on."""
        unset = [
            f"  {where}.api_key_env: ${entry.api_key_env} is not set or is empty (calls to {entry.model} need it)"
            for where, entry in self._entries()
            if entry.api_key_env and not os.environ.get(entry.api_key_env)
        ]
        if unset:
            raise ConfigError("\n".join(["upstream API keys missing from the environment:", *unset]))

    def deadline_warning(self) -> str | None:
        """The mixture's time plan cannot fit the request timeout: it still answers (a layer is cut to
        the request's deadline, a later layer is skipped, the aggregator falls back), but not as configured."""
        from router.mixture import fallback_margin  # the engine's own rule (mixture imports this module)

        deadline, layers = self.mixture.proposer_deadline_s, self.mixture.layers
        timeout = self.limits.request_timeout_s
        usable = timeout - fallback_margin(timeout)
        if layers > 1 and (layers + 1) * deadline > usable:
            return (
                f"mixture.layers ({layers}) x mixture.proposer_deadline_s ({deadline:g} s), plus one deadline kept "
                f"for the aggregator, exceeds limits.request_timeout_s ({timeout:g} s) less the fallback margin: "
                "slow layers will be cut short or skipped"
            )
        if deadline >= usable:
            return (
                f"mixture.proposer_deadline_s ({deadline:g} s) is not below limits.request_timeout_s ({timeout:g} s): "
                "a slow proposer leaves no time to aggregate, and a proposer's answer stands in"
            )
        return None


class ConfigError(ValueError):
    """A configuration problem, with a message that names the bad field."""


def _format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        lines.append(f"  {where}: {error['msg']}")
    return "\n".join(lines)


def settings_from_mapping(data: dict[str, Any], source: str = "config") -> Settings:
    env_overrides: dict[str, Any] = {}
    if os.environ.get("REDIS_URL"):
        env_overrides["redis_url"] = os.environ["REDIS_URL"]
    if os.environ.get("MOA_ROUTER_DATA_DIR"):
        env_overrides["data_dir"] = os.environ["MOA_ROUTER_DATA_DIR"]
    try:
        settings = Settings.model_validate({**data, **env_overrides})
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from exc
    for warning in (settings.diversity_warning(), settings.duplicate_proposers_warning(), settings.deadline_warning()):
        if warning:
            logger.warning(warning)
    return settings


class _DuplicateKeyError(yaml.YAMLError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load, except that a key given twice in one mapping is an error: YAML's loaders keep the
    last silently, so a second `cache:` section would drop the first without a word."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults` may be overridden, as YAML intends
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool):
                continue  # SafeLoader itself refuses unhashable keys
            line = key_node.start_mark.line + 1
            if key in first_line:
                raise _DuplicateKeyError(
                    f"key {key!r} is given twice in one mapping (lines {first_line[key]} and {line})"
                )
            first_line[key] = line
        return super().construct_mapping(node, deep=deep)


def load_settings(path: str | Path | None = None) -> Settings:
    """Load the YAML file named by `path` or MOA_ROUTER_CONFIG; environment variables win."""
    chosen = path or os.environ.get("MOA_ROUTER_CONFIG")
    if not chosen:
        raise ConfigError("no configuration: pass --config FILE, set MOA_ROUTER_CONFIG, or use --demo")
    file = Path(chosen)
    try:
        text = file.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {file} is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader) or {}
    except _DuplicateKeyError as exc:
        raise ConfigError(f"config file {file}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {file} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {file} must hold a mapping at the top level")
    return settings_from_mapping(data, source=str(file))
