"""The app factory: wires settings, providers, classifier, cache and sinks together at startup."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from router import __version__, dashboard, metrics
from router.api import chat, feedback, health, stats
from router.api.errors import install_error_handlers
from router.auth import Authenticator, watch_redis_keys
from router.budget import start_budget
from router.cache import start_cache
from router.cache_types import NoCache
from router.config import Settings
from router.hot_reload import start_hot_reload
from router.ledger import start_outcome_log
from router.metrics import start_metrics
from router.mixture import MixtureEngine
from router.prompt_hash import start_prompt_hash
from router.providers.openai_compat import make_upstream_session
from router.providers.registry import build_providers
from router.ratelimit import start_rate_limiter
from router.redis_client import connect_redis
from router.scoring import ActiveClassifier
from router.shadow import start_shadow
from router.state import AppState
from router.stats import start_stats

logger = logging.getLogger(__name__)

# Startup steps of the service's parts, in order; each is given the state and an exit stack on which
# it registers its own cleanup (run in reverse order at shutdown).
StartupStep = Callable[[AppState, AsyncExitStack], Awaitable[None]]
STARTUP_STEPS: tuple[StartupStep, ...] = (
    start_metrics,
    connect_redis,
    start_prompt_hash,
    watch_redis_keys,
    start_rate_limiter,
    start_cache,
    start_stats,
    start_budget,
    start_outcome_log,
    start_shadow,
    start_hot_reload,
)


async def build_state(settings: Settings, stack: AsyncExitStack) -> AppState:
    upstream = make_upstream_session(settings.limits.max_upstream_in_flight)
    stack.push_async_callback(upstream.close)
    providers = build_providers(settings, upstream)
    state = AppState(
        settings=settings,
        providers=providers,
        engine=MixtureEngine(providers.proposers, providers.aggregator, settings.mixture),
        classifier=ActiveClassifier.from_data_dir(settings.data_dir, settings.policy),
        auth=Authenticator(settings.auth, open_mode=settings.demo),
        cache=NoCache(),
    )
    for step in STARTUP_STEPS:
        await step(state, stack)
    return state


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            app.state.moa = await build_state(settings, stack)
            logger.info("moa-router ready: classifier %s", app.state.moa.classifier.version)
            yield

    app = FastAPI(title="moa-router", version=__version__, lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(chat.ChatFastPath)  # the hot path skips FastAPI's routing machinery
    app.include_router(chat.router)
    app.include_router(feedback.router)
    app.include_router(health.router)
    app.include_router(stats.router)
    app.include_router(metrics.router)
    app.include_router(dashboard.router)
    return app
