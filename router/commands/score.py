"""`moa-router score`: JSON lines of prompts on stdin -> JSON lines of scores and routes on stdout.

Each input line is `{"prompt": str}` or `{"messages": [...]}`; each output line, in the same order,
is `{"difficulty": float, "stakes": float, "route": "cheap"|"mixture"}`.

Invalid lines are never dropped: the output keeps one line per input line, an invalid line yields
`{"error": {"line": N, "message": "..."}}`, the same message goes to stderr as "line N: ...", and
the command exits with status 1 once all lines are done (0 when every line was valid). Blank lines
are invalid too, so that output line N always answers input line N.

With a config file (`--config`, or MOA_ROUTER_CONFIG as the service reads it), routes are decided as the
service with that config decides them: its `policy` thresholds override the classifier version's, and
the active version is the one under its `data_dir`.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Iterator, Mapping
from typing import IO, Any

import orjson
from pydantic import ValidationError

from classifier.artifacts import ArtifactError
from classifier.registry import LoadedModel, VersionNotFoundError, load_model
from classifier.text import messages_to_text
from router.commands.locations import EXIT_BAD_CONFIG, add_config_option, models_dir_of, service_settings
from router.config import ConfigError, PolicySettings
from router.policy import decide
from router.scoring import thresholds_for

EXIT_INVALID_LINES = 1
EXIT_NO_MODEL = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "score",
        help="score prompts (JSON lines on stdin) for difficulty, stakes and route",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        metavar="PATH",
        help="a classifier version id or version directory (default: the active version)",
    )
    add_config_option(parser, "its policy thresholds and data directory")


def run(args: argparse.Namespace) -> int:
    try:
        settings = service_settings(args.config)  # the file the service would read, if any
    except ConfigError as exc:
        print(f"moa-router score: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    policy = PolicySettings() if settings is None else settings.policy
    try:
        model = load_model(args.model, models_dir_of(settings))
    except (VersionNotFoundError, ArtifactError) as exc:
        print(f"moa-router score: {exc}", file=sys.stderr)
        return EXIT_NO_MODEL
    return score_stream(model, sys.stdin.buffer, sys.stdout.buffer, sys.stderr, policy)


_UTF8_BOM = b"\xef\xbb\xbf"


def score_stream(
    model: LoadedModel, source: IO[bytes], sink: IO[bytes], errors: IO[str], policy: PolicySettings | None = None
) -> int:
    """Score every line of `source` into `sink`, routing by `model`'s thresholds as a config's `policy`
    overrides them (as the service does); returns the exit status."""
    thresholds = thresholds_for(model.meta, policy or PolicySettings())
    invalid = 0
    for line_number, line in enumerate(_lines(source, sink), start=1):
        if line_number == 1 and line.startswith(_UTF8_BOM):  # files saved by Windows tools start with one
            line = line[len(_UTF8_BOM) :]
        try:
            if not line.strip():
                raise _InvalidLine("blank line")
            text = _input_text(orjson.loads(line))
        except (orjson.JSONDecodeError, _InvalidLine) as exc:
            message = _describe(exc)
            invalid += 1
            errors.write(f"line {line_number}: {message}\n")
            sink.write(orjson.dumps({"error": {"line": line_number, "message": message}}) + b"\n")
            continue
        scores = model.scorer.score_text(text)
        route = decide(scores, thresholds).route
        sink.write(
            orjson.dumps({"difficulty": round(scores.difficulty, 6), "stakes": round(scores.stakes, 6), "route": route})
            + b"\n"
        )
    sink.flush()
    if invalid:
        errors.write(f"moa-router score: {invalid} invalid line(s); each got an error object in the output\n")
        return EXIT_INVALID_LINES
    return 0


_CHUNK_BYTES = 1 << 16


def _lines(source: IO[bytes], sink: IO[bytes]) -> Iterator[bytes]:
    """The lines of `source` as they arrive. What was written to `sink` is flushed before each wait for more
    input: a program that writes one prompt and waits for its score gets it (Python keeps a pipe's output
    until 8 KiB have gathered, so such a program waited forever); a large file costs one flush a chunk."""
    read = source.read1 if isinstance(source, io.BufferedIOBase) else source.read
    partial: list[bytes] = []  # a line longer than a chunk, joined once it ends
    while True:
        sink.flush()
        chunk = read(_CHUNK_BYTES)
        if not chunk:
            break
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            partial.append(chunk[start : end + 1])
            yield b"".join(partial)
            partial.clear()
            start = end + 1
        if start < len(chunk):
            partial.append(chunk[start:])
    if partial:
        yield b"".join(partial)


class _InvalidLine(ValueError):
    pass


def _describe(exc: Exception) -> str:
    if isinstance(exc, orjson.JSONDecodeError):
        return f"not valid JSON ({exc.msg})" if exc.msg else "not valid JSON"
    return str(exc)


def _as_served(messages: list[Any]) -> list[dict[str, Any]]:
    """The messages as the service scores them: checked by its request schema and turned into what it
    sends upstream (`developer` as `system`, one text part as a string), so that a score here is the
    service's."""
    from router.api.errors import APIError
    from router.api.schemas import NO_USER_TURN, ChatMessage, without_tool_turns

    try:
        # An assistant turn as the SDK gives it back carries empty tool fields, which the service drops.
        messages = without_tool_turns(messages)
    except APIError as exc:  # a tool turn
        raise _InvalidLine(exc.message) from exc
    checked = []
    for index, message in enumerate(messages):
        try:
            checked.append(ChatMessage.model_validate(message))
        except ValidationError as exc:
            raise _InvalidLine(f"messages[{index}]{_problem(exc)}") from exc
    if not any(message.role == "user" for message in checked):
        raise _InvalidLine(NO_USER_TURN)  # the service answers 400: there is no route to score
    return [message.as_upstream() for message in checked]


def _problem(exc: ValidationError) -> str:
    """The most specific of pydantic's errors, as ".content.0: Input should be ..."."""
    error = max(exc.errors(), key=lambda error: len(error["loc"]))
    # pydantic names the union member tried ("str", "list[TextPart]"); it means nothing to the reader.
    where = [str(part) for part in error["loc"] if not str(part).startswith(("str", "list[", "literal[", "function-"))]
    return "".join(f".{part}" for part in where) + f": {error['msg']}"


def _input_text(value: Any) -> str:
    if not isinstance(value, Mapping):
        raise _InvalidLine('expected a JSON object with "prompt" or "messages"')
    if "prompt" in value and "messages" in value:
        raise _InvalidLine('give "prompt" or "messages", not both')
    if "prompt" in value:
        if not isinstance(value["prompt"], str):
            raise _InvalidLine('"prompt" must be a string')
        return value["prompt"]
    if "messages" in value:
        messages = value["messages"]
        if not isinstance(messages, list) or not messages:
            raise _InvalidLine('"messages" must be a non-empty list')
        return messages_to_text(_as_served(messages))
    raise _InvalidLine('expected "prompt" or "messages"')
