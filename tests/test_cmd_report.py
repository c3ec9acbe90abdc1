"""`moa-router report`: the headline numbers from the same aggregation as /v1/stats."""

from __future__ import annotations

import asyncio
import functools
import http.server
import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from router.cli import main
from router.commands.report import count, fixed, ms, pct, usd
from router.events import RequestEvent
from router.mixture import CallRecord
from router.providers.base import Usage
from router.providers.pricing import Prices
from router.stats import MixtureCostEstimator, StatsRecorder
from router.stats_query import WINDOWS, stats_report


def test_formatting_rules() -> None:
    assert usd(0.0) == "$0.00"
    assert usd(0.0000241) == "$0.000024"
    assert usd(0.0123456) == "$0.0123"
    assert usd(1234.5678) == "$1,234.57"
    assert usd(-0.5) == "−$0.5000"
    assert usd(None) == "—"
    assert pct(0.375) == "37.5%" and pct(None) == "—"
    assert fixed(0.125, 2) == "0.13"  # half away from zero, as JavaScript's toFixed; Python's own gives 0.12
    assert ms(12.5) == "13 ms" and ms(1234.0) == "1.23 s"
    assert count(1234567) == "1,234,567"


async def _record_traffic(redis_url: str, prefix: str) -> dict[str, Any]:
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url)
    try:
        estimator = MixtureCostEstimator([Prices(1e-6, 2e-6), Prices(2e-6, 4e-6)], Prices(3e-6, 6e-6))
        recorder = StatsRecorder(client, prefix, estimator)
        now = time.time()
        for i, (route, cost) in enumerate([("cheap", 0.0004), ("cheap", 0.0006), ("mixture", 0.0125)]):
            event = RequestEvent(
                request_id=f"chatcmpl-{i}",
                tenant="acme",
                started_at=now,
                route=route,
                reason="x",
                cache="miss",
                latency_s=0.2,
            )
            event.calls.append(CallRecord(f"openai/{route}", route, "ok", 0.2, Usage(100, 40), cost))
            recorder.record(event)
        await recorder.flush()
        return await stats_report(client, prefix, WINDOWS["day"], top=5)
    finally:
        await client.aclose()


def test_report_from_redis_shows_the_stats_numbers(
    redis_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MOA_ROUTER_CONFIG", raising=False)
    prefix = f"treport{uuid.uuid4().hex[:8]}"
    expected = asyncio.run(_record_traffic(redis_url, prefix))

    assert main(["report", "--redis-url", redis_url, "--prefix", prefix, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["totals"] == expected["totals"]

    assert main(["report", "--redis-url", redis_url, "--prefix", prefix, "--window", "day"]) == 0
    out = capsys.readouterr().out
    totals = expected["totals"]
    for shown in (
        usd(totals["spend_usd"]),
        usd(totals["counterfactual_usd"]),
        usd(totals["saved_usd"]),
        pct(totals["escalation_rate"]),
        "chatcmpl-2",  # the most expensive request
        "openai/mixture",
    ):
        assert shown in out, shown
    assert totals["requests"] == 3


def test_report_from_a_running_service(make_service: Any, redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    base = make_service(redis_url=redis_url, budget={"mixture_daily_usd": 100.0, "mixture_monthly_usd": 1000.0})
    httpx.post(
        f"{base}/v1/chat/completions",
        headers={"x-moa-route": "cheap"},
        json={"model": "moa-router", "messages": [{"role": "user", "content": "Hello there"}]},
        timeout=30,
    ).raise_for_status()
    stats = httpx.get(f"{base}/v1/stats", params={"window": "hour"}, timeout=10).json()
    assert main(["report", "--url", base, "--window", "hour"]) == 0
    out = capsys.readouterr().out
    assert usd(stats["totals"]["spend_usd"]) in out
    assert "Requests" in out and stats["classifier_version"] in out
    assert f"stakes ≥ {stats['thresholds']['stakes']:.3f}" in out  # the active policy
    assert "Mixture budget today" in out and "Mixture budget this month" in out and "of $1,000.00" in out


def test_report_says_what_is_wrong_when_nothing_answers(capsys: pytest.CaptureFixture[str]) -> None:
    from router.redis_server import free_port

    assert main(["report", "--url", f"http://127.0.0.1:{free_port()}"]) == 2
    assert "moa-router report:" in capsys.readouterr().err


def test_a_malformed_redis_url_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--redis-url", "notaurl"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("moa-router report: ") and "Traceback" not in err


def test_an_unreachable_service_is_named_with_what_to_do(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from router.redis_server import free_port

    monkeypatch.delenv("MOA_ROUTER_CONFIG", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["report", "--url", url]) == 2
    err = capsys.readouterr().err  # was "moa-router report: [Errno 111] Connection refused"
    assert f"cannot reach the service at {url}" in err and "--redis-url" in err
    monkeypatch.setattr("router.commands.report.DEFAULT_URL", url)  # `report` alone asks the default address
    assert main(["report"]) == 2
    assert f"cannot reach the service at {url}" in capsys.readouterr().err


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize("answer", [b"<html>a web page</html>", b'{"status": "ok"}', b"[1, 2]"])
def test_an_address_that_is_not_the_service_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], answer: bytes
) -> None:
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "stats").write_bytes(answer)
    handler = functools.partial(_QuietFiles, directory=str(tmp_path))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            status = main(["report", "--url", url])  # a traceback (KeyError, JSONDecodeError's text) before
        finally:
            server.shutdown()
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("moa-router report: ") and "Traceback" not in err
    assert f"is {url} a moa-router service?" in err


@pytest.mark.parametrize("top", ["-1", "26", "many"])
def test_top_takes_what_the_stats_endpoint_takes(capsys: pytest.CaptureFixture[str], top: str) -> None:
    with pytest.raises(SystemExit) as exit_info:  # --top 1000000 read that many entries of each Redis bucket
        main(["report", "--redis-url", "redis://127.0.0.1:1/0", "--top", top])
    assert exit_info.value.code == 2
    assert "argument --top: expected a whole number from 0 to 25" in capsys.readouterr().err


async def _record_named(redis_url: str, prefix: str, tenants: list[str], model: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url)
    try:
        recorder = StatsRecorder(client, prefix, MixtureCostEstimator([Prices(1e-6, 2e-6)], Prices(1e-6, 2e-6)))
        for i, tenant in enumerate(tenants):
            event = RequestEvent(request_id=f"chatcmpl-{i}", tenant=tenant, route="cheap", reason="easy")
            event.calls.append(CallRecord(model, "cheap", "ok", 0.2, Usage(100, 40), 0.001 * (i + 1)))
            recorder.record(event)
        await recorder.flush()
    finally:
        await client.aclose()


def test_names_are_printed_as_they_are(
    redis_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tenant and model names are data, not rich markup: "[prod]" was swallowed as a style, "[/x]" ended the
    # report with a MarkupError traceback, and an escape sequence reached the terminal as it was.
    monkeypatch.delenv("MOA_ROUTER_CONFIG", raising=False)
    monkeypatch.setenv("COLUMNS", "250")
    prefix = f"treport{uuid.uuid4().hex[:8]}"
    tenants = ["acme[prod]", "team[/x]", "evil\x1b]0;owned\x07"]
    asyncio.run(_record_named(redis_url, prefix, tenants, "openai/[bold]cheap"))
    assert main(["report", "--redis-url", redis_url, "--prefix", prefix, "--window", "hour"]) == 0
    out = capsys.readouterr().out
    assert "acme[prod]" in out and "team[/x]" in out and "openai/[bold]cheap" in out
    assert "\x1b]0;" not in out and "\x07" not in out
    assert "evil" in out


async def _record_errors_and_shadow(redis_url: str, prefix: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url)
    try:
        recorder = StatsRecorder(client, prefix, MixtureCostEstimator([Prices(1e-6, 2e-6)], Prices(1e-6, 2e-6)))
        outcomes = [(200, None), (502, "upstream_error"), (400, "invalid_request"), (400, "invalid_request")]
        outcomes += [(429, "rate_limit_exceeded"), (499, "client_disconnected")]
        for i, (status, error) in enumerate(outcomes):
            event = RequestEvent(request_id=f"chatcmpl-{i}", tenant="acme", route="cheap", status=status, error=error)
            event.calls.append(CallRecord("openai/cheap", "cheap", "ok", 0.2, Usage(100, 40), 0.001))
            recorder.record(event)
        recorder.record_shadow(mixture_needed=False, cost_usd=0.0125)
        await recorder.flush()
    finally:
        await client.aclose()


def _row(out: str, title: str) -> str:
    return next(line for line in out.splitlines() if title in line)


def test_errors_are_listed_by_who_ended_the_request(
    redis_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MOA_ROUTER_CONFIG", raising=False)
    monkeypatch.setenv("COLUMNS", "250")
    prefix = f"treport{uuid.uuid4().hex[:8]}"
    asyncio.run(_record_errors_and_shadow(redis_url, prefix))
    assert main(["report", "--redis-url", redis_url, "--prefix", prefix, "--window", "hour"]) == 0
    out = capsys.readouterr().out
    # The 5xx row listed the 4xx codes (and the clients that left) among the failures.
    five = _row(out, "5xx error rate")
    assert "upstream_error 1" in five and "invalid_request" not in five and "client_disconnected" not in five
    assert "invalid_request 2, rate_limit_exceeded 1" in _row(out, "Refused (4xx)")
    # A client that left mid-answer (499) was counted as refused by the router: 4 refused, where 3 were.
    assert "1 failed (5xx), 3 refused (4xx), 1 left before their answer" in _row(out, "Requests")


def test_the_spend_by_model_adds_up_to_the_spend_with_shadow_runs(
    redis_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MOA_ROUTER_CONFIG", raising=False)
    monkeypatch.setenv("COLUMNS", "250")
    prefix = f"treport{uuid.uuid4().hex[:8]}"
    asyncio.run(_record_errors_and_shadow(redis_url, prefix))
    assert main(["report", "--redis-url", redis_url, "--prefix", prefix, "--window", "hour", "--json"]) == 0
    totals = json.loads(capsys.readouterr().out)["totals"]
    assert totals["spend_usd"] == pytest.approx(0.006 + 0.0125)
    assert main(["report", "--redis-url", redis_url, "--prefix", prefix, "--window", "hour"]) == 0
    table = capsys.readouterr().out.split("Spend by model")[1]
    # The table listed the models' $0.0060 only, under a total spend of $0.0185.
    assert usd(0.0125) in _row(table, "shadow evaluations (1 run)")
    assert usd(totals["spend_usd"]) in _row(table, "total")


def test_a_report_from_an_older_service_splits_its_errors_the_same_way(redis_url: str) -> None:
    from redis.asyncio import Redis
    from rich.console import Console

    from router.commands.report import render

    prefix = f"treport{uuid.uuid4().hex[:8]}"
    asyncio.run(_record_errors_and_shadow(redis_url, prefix))

    async def read() -> dict[str, Any]:
        client = Redis.from_url(redis_url)
        try:
            return await stats_report(client, prefix, WINDOWS["hour"])
        finally:
            await client.aclose()

    report = asyncio.run(read())
    for key in ("refused", "client_left", "failed_by_code", "refused_by_code"):  # not sent before they were split
        del report["totals"][key]
    console = Console(width=250, record=True)
    for table in render(report):
        console.print(table)
    out = console.export_text()
    assert "1 failed (5xx), 3 refused (4xx), 1 left before their answer" in _row(out, "Requests")
    assert "invalid_request" not in _row(out, "5xx error rate")


def test_the_help_of_top_gives_the_range_it_takes(capsys: pytest.CaptureFixture[str]) -> None:
    from router.api.stats import MAX_TOP

    with pytest.raises(SystemExit):
        main(["report", "--help"])
    assert f"(0..{MAX_TOP}," in " ".join(capsys.readouterr().out.split())  # it said 0..100 after the cap became 25
