"""`moa-router score`: JSON lines in, JSON lines out, same order; bad lines reported, never dropped."""

from __future__ import annotations

import io
import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from classifier.registry import LoadedModel, ModelRegistry
from router.commands.score import score_stream
from router.config import PolicySettings
from router.policy import Thresholds, decide
from tests.conftest import settings_dict

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def seed_model(tmp_path: Path) -> LoadedModel:
    return ModelRegistry(tmp_path / "models").load()


def run_stream(model: LoadedModel, lines: list[str]) -> tuple[int, list[dict[str, Any]], str]:
    source = io.BytesIO("".join(line + "\n" for line in lines).encode("utf-8"))
    sink, errors = io.BytesIO(), io.StringIO()
    status = score_stream(model, source, sink, errors)
    return status, [json.loads(line) for line in sink.getvalue().splitlines()], errors.getvalue()


def test_scores_prompts_and_messages_in_order(seed_model: LoadedModel) -> None:
    prompts = [
        "hi!",
        "Prove that every bounded monotone sequence of reals converges.",
        "What is the maximum daily dose of paracetamol for a 50 kg adult with liver disease?",
    ]
    lines = [
        json.dumps({"prompt": prompts[0]}),
        json.dumps({"messages": [{"role": "user", "content": prompts[1]}]}),
        json.dumps({"prompt": prompts[2]}),
    ]
    status, out, errors = run_stream(seed_model, lines)
    assert status == 0 and errors == ""
    assert len(out) == 3
    thresholds = Thresholds.from_meta(seed_model.meta["thresholds"])
    for prompt, result in zip(prompts, out, strict=True):
        assert set(result) == {"difficulty", "stakes", "route"}
        expected = seed_model.scorer.score_text(prompt)
        assert result["difficulty"] == pytest.approx(expected.difficulty, abs=1e-6)
        assert result["stakes"] == pytest.approx(expected.stakes, abs=1e-6)
        assert result["route"] == decide(expected, thresholds).route


def test_empty_long_and_non_english_prompts(seed_model: LoadedModel) -> None:
    lines = [
        json.dumps({"prompt": ""}),
        json.dumps({"prompt": "word " * 50_000}),
        json.dumps({"prompt": "¿Puedo tomar ibuprofeno durante el embarazo?"}, ensure_ascii=False),
        json.dumps({"messages": [{"role": "user", "content": "税金の申告期限はいつですか"}]}, ensure_ascii=False),
        json.dumps({"messages": [{"role": "user", "content": [{"type": "text", "text": "Bonjour"}]}]}),
    ]
    status, out, _ = run_stream(seed_model, lines)
    assert status == 0
    assert len(out) == len(lines)
    for result in out:
        assert 0.0 <= result["difficulty"] <= 1.0 and 0.0 <= result["stakes"] <= 1.0
        assert result["route"] in ("cheap", "mixture")


def test_invalid_lines_get_an_error_object_and_a_stderr_line(seed_model: LoadedModel) -> None:
    lines = [
        json.dumps({"prompt": "ok"}),
        "{not json",
        "",
        json.dumps(["a", "list"]),
        json.dumps({"prompt": 42}),
        json.dumps({"messages": []}),
        json.dumps({"messages": [{"role": "user", "content": 7}]}),
        json.dumps({"text": "wrong key"}),
        json.dumps({"prompt": "still scored after the errors"}),
    ]
    status, out, errors = run_stream(seed_model, lines)
    assert status == 1
    assert len(out) == len(lines)
    assert "route" in out[0] and "route" in out[-1]
    for line_number in range(2, 9):
        assert out[line_number - 1]["error"]["line"] == line_number
        assert f"line {line_number}: " in errors
    assert "blank line" in out[2]["error"]["message"]
    assert "prompt" in out[4]["error"]["message"]


def test_command_line_end_to_end(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "MOA_ROUTER_DATA_DIR": str(tmp_path),
        "PYTHONPATH": str(REPO),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
    stdin = "\n".join([json.dumps({"prompt": "hello"}), "oops", json.dumps({"prompt": "bye"})]) + "\n"
    done = subprocess.run(
        [sys.executable, "-m", "router", "score"],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert [("error" in row) for row in out] == [False, True, False]
    assert "line 2:" in done.stderr

    missing = subprocess.run(
        [sys.executable, "-m", "router", "score", "--model", "v-none"],
        input="",
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert missing.returncode == 2
    assert "v-none" in missing.stderr


def test_a_reader_that_stops_early_ends_the_command_quietly(tmp_path: Path) -> None:
    env = {**os.environ, "MOA_ROUTER_DATA_DIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    source = tmp_path / "many.jsonl"
    source.write_text("".join(json.dumps({"prompt": f"question {i}"}) + "\n" for i in range(50_000)), encoding="utf-8")
    with source.open("rb") as stdin:
        process = subprocess.Popen(  # `moa-router score < many.jsonl | head -1`
            [sys.executable, "-m", "router", "score"],
            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path,
        )  # fmt: skip
        assert process.stdout is not None and process.stderr is not None
        assert json.loads(process.stdout.readline())["route"] in ("cheap", "mixture")
        process.stdout.close()
        stderr = process.stderr.read().decode()
        assert process.wait(timeout=120) == 141
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr


def test_a_byte_order_mark_before_the_first_line_is_ignored(seed_model: LoadedModel) -> None:
    sink, errors = io.BytesIO(), io.StringIO()
    source = io.BytesIO(b"\xef\xbb\xbf" + json.dumps({"prompt": "hello"}).encode() + b"\n")
    assert score_stream(seed_model, source, sink, errors) == 0
    assert "error" not in json.loads(sink.getvalue()) and not errors.getvalue()


# Multi-part content and a `developer` system prompt: the service joins the parts and reads `developer`
# as `system` before scoring; score read the raw messages and gave other scores (0.03 vs 0.23, 0.14 vs 0.87).
SERVED_AS_SCORED = [
    [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is the maximum dose of ibuprofen"},
                {"type": "text", "text": "for a 3 year old child with fever?"},
            ],
        }
    ],
    [
        {"role": "developer", "content": "You are a medical triage assistant for a hospital. Answer dosage questions."},
        *[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}] * 2,
        {"role": "user", "content": "how much?"},
    ],
]


def test_scores_are_the_ones_the_service_routes_by(seed_model: LoadedModel, make_service: Any) -> None:
    base = make_service()
    status, out, _ = run_stream(seed_model, [json.dumps({"messages": messages}) for messages in SERVED_AS_SCORED])
    assert status == 0
    for messages, result in zip(SERVED_AS_SCORED, out, strict=True):
        response = httpx.post(
            f"{base}/v1/chat/completions",
            headers={"x-moa-route": "cheap"},
            json={"model": "moa-router", "messages": messages, "max_tokens": 8},
            timeout=30,
        )
        response.raise_for_status()
        assert result["difficulty"] == pytest.approx(float(response.headers["x-moa-difficulty"]), abs=1e-4)
        assert result["stakes"] == pytest.approx(float(response.headers["x-moa-stakes"]), abs=1e-4)
    # Each text part is read as a line of its own: joined, "ibuprofen" + "for" was scored as "ibuprofenfor".
    parts_as_lines = seed_model.scorer.score_text(
        "What is the maximum dose of ibuprofen\nfor a 3 year old child with fever?"
    )
    assert out[0]["difficulty"] == pytest.approx(parts_as_lines.difficulty, abs=1e-6)
    assert out[0]["stakes"] == pytest.approx(parts_as_lines.stakes, abs=1e-6)


def test_messages_the_service_would_refuse_are_invalid_lines(seed_model: LoadedModel) -> None:
    refused = [
        ({"role": "user", "content": [1, 2]}, "messages[0].content.0:"),
        ({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}, "image_url"),
        ({"role": "user", "content": [{"type": "text", "text": 5}]}, "messages[0].content.0.text:"),
        ({"role": "tool", "content": "x"}, "role 'tool' is not supported"),
        ({"role": "user", "content": 7}, "messages[0].content:"),
    ]
    status, out, errors = run_stream(seed_model, [json.dumps({"messages": [message]}) for message, _ in refused])
    assert status == 1
    for line_number, ((_, named), result) in enumerate(zip(refused, out, strict=True), start=1):
        assert named in result["error"]["message"]
        assert f"line {line_number}: {result['error']['message']}" in errors


# An assistant turn as the openai SDK's `message.model_dump()` gives it back: the service accepts it (its empty
# tool fields are dropped), score refused it. A conversation without a user turn: the service refuses it, score
# scored it.
SDK_ASSISTANT_TURN = {
    "role": "assistant",
    "content": "hello",
    "refusal": None,
    "tool_calls": None,
    "function_call": None,
    "audio": None,
    "annotations": None,
}
SERVICE_CHECKED = [
    [{"role": "user", "content": "hi"}, SDK_ASSISTANT_TURN, {"role": "user", "content": "how much ibuprofen?"}],
    [{"role": "system", "content": "You are a pharmacist."}],
    [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "", "tool_calls": [{"id": "1"}]}],
]


def test_messages_are_accepted_and_refused_as_the_service_accepts_and_refuses_them(
    seed_model: LoadedModel, make_service: Any
) -> None:
    base = make_service()
    status, out, _ = run_stream(seed_model, [json.dumps({"messages": messages}) for messages in SERVICE_CHECKED])
    assert status == 1
    for messages, result in zip(SERVICE_CHECKED, out, strict=True):
        response = httpx.post(
            f"{base}/v1/chat/completions",
            headers={"x-moa-route": "cheap"},
            json={"model": "moa-router", "messages": messages, "max_tokens": 8},
            timeout=30,
        )
        if response.status_code == 200:
            assert result["difficulty"] == pytest.approx(float(response.headers["x-moa-difficulty"]), abs=1e-4)
        else:
            assert response.status_code == 400
            assert result["error"]["message"] in response.json()["error"]["message"]


def _start_score(tmp_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MOA_ROUTER_DATA_DIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env.pop("PYTHONUNBUFFERED", None)  # as in a user's shell: Python then buffers output to a pipe
    return subprocess.Popen(
        [sys.executable, "-m", "router", "score"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path, bufsize=0,
    )  # fmt: skip


def _answer(process: subprocess.Popen[bytes], prompt: str) -> dict[str, Any]:
    """Write one prompt and wait for its line, as a program using score as a co-process does."""
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(json.dumps({"prompt": prompt}).encode() + b"\n")
    readable, _, _ = select.select([process.stdout], [], [], 60)
    assert readable, "no answer: the output was kept in a buffer"
    answer: dict[str, Any] = json.loads(process.stdout.readline())
    return answer


def test_each_answer_is_written_before_the_next_prompt_is_waited_for(tmp_path: Path) -> None:
    process = _start_score(tmp_path)
    try:
        for prompt in ("hello", "What is the maximum daily dose of paracetamol?"):
            assert _answer(process, prompt)["route"] in ("cheap", "mixture")
    finally:
        process.kill()
        process.wait(timeout=60)


def test_ctrl_c_ends_the_command_quietly(tmp_path: Path) -> None:
    process = _start_score(tmp_path)  # someone typing prompts at `moa-router score`, then pressing Ctrl-C
    assert process.stderr is not None
    assert "route" in _answer(process, "hello")
    process.send_signal(signal.SIGINT)
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 130  # 128 + SIGINT, as shells report it
    assert "Traceback" not in stderr and "interrupted" in stderr


# Seed scores (difficulty, stakes): "hi!" (0.00, 0.00), the capital (0.06, 0.00), the dose (0.31, 0.97), the proof
# (0.98, 0.01). The seed's thresholds (difficulty 0.98, stakes 0.09 when difficulty >= 0.68) route all four cheap.
POLICY_PROMPTS = [
    "hi!",
    "What is the capital of France?",
    "What is the maximum daily dose of paracetamol for a 50 kg adult with liver disease?",
    "Prove that every bounded monotone sequence of reals converges.",
]
# The proof escalates by the promoted version's difficulty threshold, the dose by the config's policy.
POLICY_ROUTES = ["cheap", "cheap", "mixture", "mixture"]


def promote_version(models_dir: Path, **thresholds: float) -> str:
    """A promoted version with the seed's weights and other calibrated thresholds."""
    registry = ModelRegistry(models_dir)
    seed = registry.load("seed")
    meta = {key: value for key, value in seed.meta.items() if key not in ("version", "created_at")}
    meta["thresholds"] = {**meta["thresholds"], **thresholds}
    version = registry.save(seed.scorer, meta)
    registry.promote(version)
    return version


def test_the_configs_policy_overrides_the_versions_thresholds(seed_model: LoadedModel) -> None:
    lines = [json.dumps({"prompt": prompt}) for prompt in POLICY_PROMPTS]
    assert [row["route"] for row in run_stream(seed_model, lines)[1]] == ["cheap"] * 4
    policy = PolicySettings(difficulty=0.9, stakes_min_difficulty=0.3)
    sink = io.BytesIO()
    assert score_stream(seed_model, io.BytesIO("\n".join(lines).encode()), sink, io.StringIO(), policy) == 0
    assert [json.loads(line)["route"] for line in sink.getvalue().splitlines()] == POLICY_ROUTES


def _score_command(
    args: list[str], cwd: Path, stdin: str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "LITELLM_LOCAL_MODEL_COST_MAP": "True", **(extra_env or {})}
    for name in ("MOA_ROUTER_DATA_DIR", "MOA_ROUTER_CONFIG"):
        if name not in (extra_env or {}):
            env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "router", "score", *args],
        input=stdin, capture_output=True, text=True, env=env, cwd=cwd, timeout=120, check=False,
    )  # fmt: skip


def test_with_a_config_score_routes_as_the_service_with_that_config_does(
    tmp_path: Path, sim_url: str, make_service: Any
) -> None:
    # The service reads the active version under the config's data_dir and the config's policy overrides.
    data_dir = tmp_path / "data"
    promote_version(data_dir / "models", difficulty=0.9)
    policy = {"stakes_min_difficulty": 0.3}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(settings_dict(sim_url, data_dir, policy=policy)), encoding="utf-8")
    base = make_service(policy=policy)
    served = []
    for prompt in POLICY_PROMPTS:
        response = httpx.post(
            f"{base}/v1/chat/completions",
            json={"model": "moa-router", "messages": [{"role": "user", "content": prompt}], "max_tokens": 8},
            timeout=30,
        )
        response.raise_for_status()
        served.append(response.headers["x-moa-route"])
    assert served == POLICY_ROUTES

    stdin = "".join(json.dumps({"prompt": prompt}) + "\n" for prompt in POLICY_PROMPTS)
    elsewhere = tmp_path / "elsewhere"  # not the config's data directory
    elsewhere.mkdir()
    for args, env in [
        (["--config", str(config)], None),
        ([], {"MOA_ROUTER_CONFIG": str(config)}),  # the file the service reads without --config
    ]:
        done = _score_command(args, elsewhere, stdin, env)
        assert done.returncode == 0, done.stderr
        assert [json.loads(line)["route"] for line in done.stdout.splitlines()] == served


def test_a_config_that_cannot_be_read_is_one_line_and_status_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("cheap: {model: openai/x}\npolicy: {difficulty: 2}\n", encoding="utf-8")
    for config in (bad, tmp_path / "missing.yaml"):
        done = _score_command(["--config", str(config)], tmp_path, json.dumps({"prompt": "hi"}) + "\n")
        assert done.returncode == 2 and done.stdout == ""
        assert done.stderr.startswith("moa-router score: ") and str(config) in done.stderr
        assert "Traceback" not in done.stderr
