"""Errors in the stats are counted by code: which codes are the router's 5xx answers, which its 4xx
refusals, and which a client that left (router.stats_query.SERVER_ERROR_CODES)."""

from __future__ import annotations

import re
from pathlib import Path

from router.stats_query import CLIENT_LEFT_CODE, SERVER_ERROR_CODES, split_error_codes, summary

ROUTER = Path(__file__).resolve().parent.parent / "router"
# `APIError(status, message, "code"` and `….status, ….error = status, "code"`: how the router gives a
# request its error.
_RAISED = re.compile(r"APIError\(\s*(\d{3}),\s*(?:f?\"(?:[^\"\\]|\\.)*\"|[\w.]+),\s*\"(\w+)\"", re.S)
_ASSIGNED = re.compile(r"\.status, [\w.]+\.error = (\d{3}), \"(\w+)\"")


def _codes_by_status() -> dict[str, set[int]]:
    found: dict[str, set[int]] = {}
    for path in ROUTER.rglob("*.py"):
        text = path.read_text()
        for match in [*_RAISED.finditer(text), *_ASSIGNED.finditer(text)]:
            found.setdefault(match.group(2), set()).add(int(match.group(1)))
    return found


def test_every_code_the_router_answers_with_is_in_its_class() -> None:
    found = _codes_by_status()
    assert {"upstream_timeout", "invalid_request", CLIENT_LEFT_CODE} <= set(found)  # the scan finds them
    for code, statuses in found.items():
        assert len({status // 100 for status in statuses}) == 1, f"{code} is given with {statuses}"
        assert (code in SERVER_ERROR_CODES) == (min(statuses) >= 500), code
    assert found[CLIENT_LEFT_CODE] == {499}
    assert set(found) >= SERVER_ERROR_CODES  # no code listed that the router no longer gives


def test_a_client_that_left_is_neither_a_failure_nor_a_refusal() -> None:
    counters = {
        "requests": 6.0,
        "errors": 1.0,
        "client_errors": 4.0,  # the stats count a 499 with the 4xx
        "err:upstream_timeout": 1.0,
        "err:invalid_request": 2.0,
        "err:rate_limit_exceeded": 1.0,
        "err:client_disconnected": 1.0,
    }
    totals = summary(counters)
    assert (totals["errors"], totals["refused"], totals["client_left"]) == (1, 3, 1)
    assert totals["failed_by_code"] == {"upstream_timeout": 1}
    assert totals["refused_by_code"] == {"invalid_request": 2, "rate_limit_exceeded": 1}
    assert totals["client_errors"] == 4 and totals["errors_by_code"]["client_disconnected"] == 1  # as they were
    assert split_error_codes({}).client_left == 0
