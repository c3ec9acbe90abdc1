"""Redaction of prompt and answer texts before the outcome log stores them (`ledger.redact`): the built-in
hook, none, or an operator's own `module:function`."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Redactor = Callable[[str], str]

_DOMAIN = r"@[\w-]+(?:\.[\w-]+)+\b"
# E-mail addresses are looked for once per run of address characters ([\w.+-]), from its first word
# character (the ".+-" before it are kept): a pattern starting with `\b` tried again at every character of
# a run, each try scanning the run to its end for an "@", so a long prompt of "a.a.a." took quadratic time
# on the event loop (16 KB: a second; 1 MB: an hour). One address can follow another inside a run
# ("a@b.c+d@e.f"): right after one, the next is looked for where it ends.
_ADDRESS_AT_RUN_START = re.compile(r"(?<![\w.+-])(?P<lead>[.+-]*+)\w[\w.+-]*" + _DOMAIN)
_ADDRESS_HERE = re.compile(r"(?P<lead>)\b[\w.+-]+" + _DOMAIN)

_SECRETS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(?:sk|pk|rk|ghp|gho|xox[abp]|AKIA)[-_A-Za-z0-9]{12,}\b"), "[secret]"),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{16,}"), "Bearer [secret]"),
    (re.compile(r"\b(?:\d[ -]?){13,19}\b"), "[number]"),  # card and account numbers
    (re.compile(r"(?<![\w.])\+?\d{1,3}[ .-]?\(?\d{2,4}\)?[ .-]?\d{3,4}[ .-]?\d{3,4}\b"), "[phone]"),
)


def _mask_addresses(text: str) -> str:
    pieces: list[str] = []
    kept_up_to = 0
    found = _ADDRESS_AT_RUN_START.search(text)
    while found is not None:
        pieces += [text[kept_up_to : found.end("lead")], "[email]"]
        kept_up_to = found.end()
        found = _ADDRESS_HERE.match(text, kept_up_to) or _ADDRESS_AT_RUN_START.search(text, kept_up_to)
    pieces.append(text[kept_up_to:])
    return "".join(pieces)


def redact_common_secrets(text: str) -> str:
    """The built-in redaction hook: masks e-mail addresses, API-key-like tokens, long card or account
    numbers and phone numbers. Not a guarantee; name your own hook in `ledger.redact` when it matters.
    Linear in the text's length: it runs on the event loop, over texts a client chooses."""
    text = _mask_addresses(text)
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def no_redaction(text: str) -> str:
    return text


def load_redactor(spec: str) -> Redactor:
    """`builtin`, `none`, or `package.module:function` (a str -> str function)."""
    if spec == "builtin":
        return redact_common_secrets
    if spec == "none":
        return no_redaction
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"ledger.redact must be 'builtin', 'none' or 'module:function', got {spec!r}")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    # The operator's module may fail to import in any way (a syntax error, an exception of its own): all of
    # them are this config's error, said in one line before serving (router.commands.serve).
    except Exception as exc:
        raise ValueError(f"ledger.redact: cannot load {spec}: {type(exc).__name__}: {exc}") from None
    if not callable(function):
        raise ValueError(f"ledger.redact: {spec} is not callable")
    redactor: Redactor = function
    return redactor


def redact_messages(messages: Sequence[Mapping[str, Any]], redact: Redactor) -> list[dict[str, Any]]:
    """Messages with every text content passed through `redact` (string contents and text parts)."""
    result: list[dict[str, Any]] = []
    for message in messages:
        copy = dict(message)
        content = copy.get("content")
        if isinstance(content, str):
            copy["content"] = redact(content)
        elif isinstance(content, list):
            copy["content"] = [
                {**part, "text": redact(part["text"])}
                if isinstance(part, dict) and isinstance(part.get("text"), str)
                else part
                for part in content
            ]
        result.append(copy)
    return result
