"""Retraining from logged outcomes: label rules, rows from the log, the promotion gate, export, and the
whole loop through the running service (requests -> feedback -> train --from-log -> promoted -> the
service answers with the new version, visible in its outcome events)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import yaml
from redis import Redis

from classifier.registry import ModelRegistry
from router.cli import main as cli
from router.hot_reload import active_version_key
from router.ledger import LedgerKeys
from router.outcomes import Label, LogLocation, feedback_label, labelled_rows, logged_gate, shadow_label
from tests.conftest import settings_dict

Service = Callable[..., str]
SEED_DATA = Path(__file__).resolve().parents[1] / "training_data"

# Made-up subjects the seed data has never seen: only the feedback can teach the classifier about them.
HARD = "zorblax"
EASY = "quimbleton"


TEMPLATES = (
    "Tell me about the {word} {i} in a few lines, with example {j}",
    "What should I know about {word} {i} before trying it {j}?",
    "Give me a quick overview of {word} item {i} (case {j})",
)


def prompt(kind: str, i: int) -> str:
    """Prompts of the two kinds differ only in the made-up word, so the seed scores them alike."""
    return TEMPLATES[i % len(TEMPLATES)].format(word=kind, i=i, j=i * 7)


def test_label_rules() -> None:
    assert feedback_label("cheap", "bad") == Label(1)
    assert feedback_label("cheap", "good") == Label(0)
    assert feedback_label("mixture", "bad") == Label(1, 0.5)
    assert feedback_label("strong", "bad") == Label(1, 0.5)
    assert feedback_label("mixture", "good") == Label(None)
    assert shadow_label(True) == Label(1) and shadow_label(False) == Label(0) and shadow_label(None) == Label(None)


def outcome(kind: str, request_id: str, difficulty: int | None, **extra: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "request_id": request_id,
        "label": {"difficulty": difficulty, "factor": extra.pop("factor", 1.0)},
        "messages": [{"role": "user", "content": f"ask {request_id}"}],
        "stakes": 0.2,
        **extra,
    }


def test_rows_from_outcomes() -> None:
    rows, stats = labelled_rows(
        [
            outcome("shadow", "a", 0),
            outcome("feedback", "a", 1),  # feedback wins over the shadow verdict on the same request
            outcome("feedback", "b", 1, factor=0.5, stakes=0.9),
            outcome("feedback", "b", 0),  # a second rating of b does not count
            outcome("feedback", "c", None),  # a good rating of a mixture answer
            outcome("shadow", "d", 1, messages=None),  # prompt not stored
            outcome("shadow", "e", 1),
        ],
        weights={"feedback": 2.0},
    )
    by_id = {row["id"]: row for row in rows}
    assert set(by_id) == {"outcome:a", "outcome:b", "outcome:e"}
    assert by_id["outcome:a"]["difficulty"] == 1 and by_id["outcome:a"]["source"] == "feedback"
    assert by_id["outcome:b"]["weight"] == 1.0 and by_id["outcome:b"]["stakes"] == 1
    assert by_id["outcome:e"]["weight"] == 0.5 and by_id["outcome:e"]["stakes"] == 0
    assert (stats.outcomes, stats.rows, stats.no_label, stats.no_prompt, stats.superseded) == (7, 3, 1, 1, 2)
    assert stats.by_source == {"feedback": 2, "shadow": 1}
    from classifier.dataset import row_problem

    assert all(row_problem(row) is None for row in rows)  # valid rows for the classifier's training


def test_outcomes_of_one_prompt_land_on_the_same_side_of_the_split() -> None:
    from classifier.dataset import split_rows

    # Forty prompts, each asked by three requests (ids are random in the service).
    outcomes = [
        outcome("feedback", f"req-{prompt}-{copy}", copy % 2, messages=[{"role": "user", "content": f"ask #{prompt}"}])
        for prompt in range(40)
        for copy in range(3)
    ]
    rows, _ = labelled_rows(outcomes)
    train, held = split_rows(rows, 0.3)
    assert held and train
    held_prompts = {row["messages"][0]["content"] for row in held}
    train_prompts = {row["messages"][0]["content"] for row in train}
    assert not held_prompts & train_prompts  # no prompt is both trained on and judged on
    assert all(len([row for row in held if row["messages"][0]["content"] == p]) == 3 for p in held_prompts)
    # The same traffic under other request ids is split the same way.
    renamed, _ = labelled_rows([{**item, "request_id": "x" + item["request_id"]} for item in outcomes])
    assert {row["messages"][0]["content"] for row in split_rows(renamed, 0.3)[1]} == held_prompts


def test_the_gate_needs_logged_outcomes_in_the_held_back_split() -> None:
    from classifier.registry import ModelRegistry as Registry

    seed = Registry(Path("/nonexistent")).load("seed").scorer
    rows = [{"id": f"s{i}", "prompt": f"seed row {i}", "difficulty": i % 2, "stakes": i % 3 == 0} for i in range(40)]
    result = logged_gate(seed, seed, rows, 0.5)
    assert not result.passed and result.n_logged == 0 and "no logged outcome" in result.reason


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def chat(base: str, text: str) -> httpx.Response:
    payload = {"model": "m", "messages": [{"role": "user", "content": text}]}
    response = httpx.post(f"{base}/v1/chat/completions", json=payload, headers={"x-moa-route": "cheap"}, timeout=30)
    assert response.status_code == 200
    return response


def probe(base: str, kind: str) -> tuple[str, float]:
    """(classifier version, mean difficulty) over fresh prompts of a kind that no training saw."""
    responses = [chat(base, prompt(kind, 1000 + i)) for i in range(6)]
    versions = {r.headers["x-moa-classifier-version"] for r in responses}
    assert len(versions) == 1
    return versions.pop(), sum(float(r.headers["x-moa-difficulty"]) for r in responses) / len(responses)


@pytest.mark.slow
def test_feedback_retrains_and_the_running_service_switches_to_the_new_version(
    make_service: Service,
    redis_url: str,
    prefix: str,
    sim_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data_dir = tmp_path / "data"  # make_service's data directory
    ledger = {"store_prompts": True, "flush_interval_s": 0.05}
    base = make_service(redis_url=redis_url, redis_prefix=prefix, ledger=ledger)
    before = {kind: probe(base, kind) for kind in (HARD, EASY)}
    assert {version for version, _ in before.values()} == {"seed"}

    for kind, rating in ((HARD, "bad"), (EASY, "good")):
        for i in range(60):
            request_id = chat(base, prompt(kind, i)).headers["x-request-id"]
            body = {"request_id": request_id, "rating": rating}
            assert httpx.post(f"{base}/v1/feedback", json=body, timeout=10).status_code == 200

    config = tmp_path / "router.yaml"
    config.write_text(yaml.safe_dump(settings_dict(sim_url, data_dir, redis_url=redis_url, redis_prefix=prefix)))
    monkeypatch.setenv("MOA_ROUTER_CONFIG", str(config))
    monkeypatch.setenv("MOA_ROUTER_DATA_DIR", str(data_dir))
    assert cli(["train", "--from-log", "--data", str(SEED_DATA)]) == 0
    printed = capsys.readouterr().out
    assert "120 logged outcomes -> 120 training rows (feedback 120)" in printed
    registry = ModelRegistry(data_dir / "models")
    version = registry.active_version()
    assert version != "seed" and f"promoted {version}" in printed
    client: Any = Redis.from_url(redis_url)
    try:
        assert client.get(active_version_key(prefix)) == version.encode()

        deadline = time.monotonic() + 10
        while chat(base, "Which version?").headers["x-moa-classifier-version"] != version:
            assert time.monotonic() < deadline, "the service did not pick up the promoted version"
            time.sleep(0.2)
        after = {kind: probe(base, kind) for kind in (HARD, EASY)}
        assert {v for v, _ in after.values()} == {version}
        # The new version's scores moved toward the feedback, on prompts it was not trained on.
        assert after[HARD][1] > before[HARD][1] + 0.2
        assert after[EASY][1] < before[EASY][1] + 0.05
        assert after[HARD][1] > after[EASY][1] + 0.3

        time.sleep(0.3)  # one flush interval for the last events
        events = [orjson.loads(f[b"e"]) for _, f in client.xrange(LedgerKeys(prefix).events)]
    finally:
        client.close()
    assert events[-1]["classifier_version"] == version
    assert events[0]["classifier_version"] == "seed"
    meta = json.loads((data_dir / "models" / version / "meta.json").read_text())
    assert meta["n_train"] > 120


def test_export_writes_the_log_as_json_lines(
    make_service: Service, redis_url: str, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = make_service(
        redis_url=redis_url, redis_prefix=prefix, ledger={"store_prompts": True, "flush_interval_s": 0.05}
    )
    ids = [chat(base, prompt(HARD, i)).headers["x-request-id"] for i in range(3)]
    httpx.post(f"{base}/v1/feedback", json={"request_id": ids[0], "rating": "bad"}, timeout=10).raise_for_status()
    time.sleep(0.3)
    monkeypatch.delenv("MOA_ROUTER_CONFIG", raising=False)
    monkeypatch.setenv("REDIS_URL", redis_url)
    for kind, expected in (("events", 3), ("outcomes", 1), ("rows", 1)):
        out = tmp_path / f"{kind}.jsonl"
        assert cli(["export", "--kind", kind, "--prefix", prefix, "--output", str(out)]) == 0
        records = [json.loads(line) for line in out.read_text().splitlines()]
        assert len(records) == expected
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [event["request_id"] for event in events] == ids
    [row] = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert row["id"] == f"outcome:{ids[0]}" and row["difficulty"] == 1 and row["source"] == "feedback"
    assert LogLocation.from_environment(prefix=prefix).redis_url == redis_url


class _FixedScores:
    """A stand-in version that gives each prompt a fixed difficulty (stakes 0.5)."""

    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return np.array([[self.scores[text], 0.5] for text in texts])


def test_the_gate_tolerates_noise_on_few_outcomes_but_not_a_real_drop() -> None:
    rng = np.random.default_rng(0)
    n = 400
    labels = (rng.random(n) < 0.3).astype(int)
    signal = labels + rng.normal(scale=0.8, size=n)
    rows = [
        {"id": f"outcome:{i}", "prompt": f"p{i}", "difficulty": int(labels[i]), "stakes": 0, "source": "feedback"}
        for i in range(n)
    ]
    prompts = [f"p{i}" for i in range(n)]
    active = _FixedScores(dict(zip(prompts, signal.tolist(), strict=True)))
    # As good, with other noise: on ~80 held-back outcomes the AUROCs differ by chance; still promoted.
    jittered = _FixedScores(dict(zip(prompts, (signal + rng.normal(scale=0.3, size=n)).tolist(), strict=True)))
    same = logged_gate(active, jittered, rows, 0.2)
    assert same.passed, same.describe()
    # Scores that ignore the labels: a real drop, refused.
    useless = _FixedScores(dict(zip(prompts, rng.random(n).tolist(), strict=True)))
    worse = logged_gate(active, useless, rows, 0.2)
    assert not worse.passed and "dropped by more than" in worse.reason


def test_exported_rows_carry_the_weights_train_gives_them(
    make_service: Service, redis_url: str, prefix: str, sim_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `export --kind rows` is "the rows train --from-log would add": it weighed them by the defaults,
    # whatever the config's ledger.feedback_weight said, while train used the config's.
    ledger = {"store_prompts": True, "flush_interval_s": 0.05, "feedback_weight": 3.0}
    base = make_service(redis_url=redis_url, redis_prefix=prefix, ledger=ledger)
    request_id = chat(base, prompt(HARD, 1)).headers["x-request-id"]
    httpx.post(f"{base}/v1/feedback", json={"request_id": request_id, "rating": "bad"}, timeout=10).raise_for_status()
    time.sleep(0.3)
    config = tmp_path / "router.yaml"
    settings = settings_dict(sim_url, tmp_path / "data", redis_url=redis_url, redis_prefix=prefix, ledger=ledger)
    config.write_text(yaml.safe_dump(settings))
    out = tmp_path / "rows.jsonl"
    assert cli(["export", "--kind", "rows", "--config", str(config), "--output", str(out)]) == 0
    [row] = [json.loads(line) for line in out.read_text().splitlines()]
    monkeypatch.setenv("MOA_ROUTER_CONFIG", str(config))
    from router.outcomes import load_logged_rows

    [trained] = load_logged_rows()[0]
    assert row["weight"] == trained["weight"] == 3.0


def test_export_holds_no_prompt_text_when_prompts_are_not_stored(
    make_service: Service, redis_url: str, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = make_service(
        redis_url=redis_url, redis_prefix=prefix, ledger={"store_prompts": False, "flush_interval_s": 0.05}
    )
    request_id = chat(base, "quimbletonsecretword about my own medical history").headers["x-request-id"]
    httpx.post(f"{base}/v1/feedback", json={"request_id": request_id, "rating": "bad"}, timeout=10).raise_for_status()
    time.sleep(0.3)
    monkeypatch.delenv("MOA_ROUTER_CONFIG", raising=False)
    monkeypatch.setenv("REDIS_URL", redis_url)
    exported = {}
    for kind in ("events", "outcomes", "rows"):
        out = tmp_path / f"{kind}.jsonl"
        assert cli(["export", "--kind", kind, "--prefix", prefix, "--output", str(out)]) == 0
        exported[kind] = out.read_bytes()
    assert exported["events"].count(b"\n") == exported["outcomes"].count(b"\n") == 1
    assert exported["rows"] == b""  # nothing to train on without the prompt
    for kind, text in exported.items():
        assert b"quimbleton" not in text.lower(), kind
