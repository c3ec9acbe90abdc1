"""The simulated models' answers: OpenAI's shapes, streamed or not, deterministic, each model in its own voice,
aggregations that name their candidates, token limits and the judge's verdict line."""

from __future__ import annotations

import httpx
import orjson
import pytest

from router.simulator import SimulatorServer
from router.simulator.answers import count_tokens, find_candidates, prompt_tokens
from tests.support.simulator import (
    QUESTION,
    answer_text,
    client,
    faulty_fleet,
    faulty_sim,
    sim_chat,
    stream_events,
)

__all__ = ["client", "faulty_sim"]  # fixtures, used by name


def test_completion_has_openai_shape_and_consistent_usage(client: httpx.Client) -> None:
    body = sim_chat(client, "alpha").json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == "alpha"
    assert isinstance(body["created"], int)
    (choice,) = body["choices"]
    assert choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["completion_tokens"] == count_tokens(choice["message"]["content"])
    assert usage["completion_tokens"] >= 40
    assert usage["prompt_tokens"] == prompt_tokens(QUESTION)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_stream_yields_the_same_answer_with_a_usage_chunk(client: httpx.Client) -> None:
    whole = sim_chat(client, "alpha").json()
    events = stream_events(client, "alpha", stream_options={"include_usage": True})
    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(event) for event in events[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == whole["choices"][0]["message"]["content"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == whole["usage"]


def test_stream_without_include_usage_has_no_usage_chunk(client: httpx.Client) -> None:
    chunks = [orjson.loads(event) for event in stream_events(client, "beta")[:-1]]
    assert all("usage" not in chunk for chunk in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_answers_are_deterministic_per_seed(client: httpx.Client) -> None:
    first, second = answer_text(sim_chat(client, "alpha")), answer_text(sim_chat(client, "alpha"))
    assert first == second
    with SimulatorServer(faulty_fleet(seed=8)) as other, httpx.Client(base_url=other.root_url) as other_client:
        assert answer_text(sim_chat(other_client, "alpha")) != first


def test_each_model_answers_in_its_own_voice_about_the_question(client: httpx.Client) -> None:
    answers = {name: answer_text(sim_chat(client, name)) for name in ("alpha", "beta", "gamma")}
    assert len(set(answers.values())) == 3
    for answer in answers.values():
        assert "photosynthesis" in answer
    other_question = [{"role": "user", "content": "Which volcanoes erupted during the eighteenth century?"}]
    assert "volcanoes" in answer_text(sim_chat(client, "alpha", other_question))


def test_aggregation_request_names_and_merges_the_candidates(client: httpx.Client) -> None:
    proposals = [answer_text(sim_chat(client, name)) for name in ("alpha", "beta", "gamma")]
    numbered = "\n\n".join(f"Candidate {i}: {text}" for i, text in enumerate(proposals, 1))
    messages = [
        {"role": "system", "content": f"Critically merge these candidate answers.\n\n{numbered}"},
        *QUESTION,
    ]
    answer = answer_text(sim_chat(client, "maestro", messages))
    assert "3 candidate answers" in answer
    for index, proposal in enumerate(proposals, 1):
        assert f'Candidate {index} says: "{" ".join(proposal.split()[:4])}' in answer
    assert "photosynthesis" in answer


def test_plain_numbered_candidates_are_found_but_a_short_list_is_a_question() -> None:
    long_answer = "This candidate explains the topic at some length with several plain words. " * 2
    question, candidates = find_candidates([f"Question: why?\n1. {long_answer}\n2. {long_answer}"])
    assert candidates == [long_answer.strip(), long_answer.strip()]
    assert question.strip() == "Question: why?"
    _, none = find_candidates(["Compare:\n1. apples\n2. pears"])
    assert none == []


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_token_limit_stops_with_length(client: httpx.Client, field: str) -> None:
    full = answer_text(sim_chat(client, "alpha"))
    body = sim_chat(client, "alpha", **{field: 5}).json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 5
    assert full.startswith(body["choices"][0]["message"]["content"])
    chunks = [
        orjson.loads(e)
        for e in stream_events(client, "alpha", stream_options={"include_usage": True}, **{field: 5})[:-1]
    ]
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"]["completion_tokens"] == 5


def test_a_generous_limit_changes_nothing(client: httpx.Client) -> None:
    body = sim_chat(client, "beta", max_tokens=10_000).json()
    assert body["choices"][0]["finish_reason"] == "stop"


def test_a_judge_prompt_gets_a_verdict_line(sim_url: str) -> None:
    from router.shadow import judge_messages, parse_verdict

    messages = judge_messages([{"role": "user", "content": "2+2?"}], "4", "five")
    verdicts = set()
    for attempt in range(12):
        response = httpx.post(
            f"{sim_url}/chat/completions",
            timeout=10,
            json={"model": "judge-1", "messages": [*messages, {"role": "user", "content": f"case {attempt}"}]},
        )
        verdicts.add(parse_verdict(response.json()["choices"][0]["message"]["content"]))
    assert None not in verdicts and len(verdicts) > 1
