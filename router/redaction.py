"""Redaction of prompt and answer texts before the outcome log stores them (`ledger.redact`): the built-in
hook, none, or an operator's own `module:function`."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Redactor = Callable[[str], str]

_SECRETS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"), "[email]"),
    (re.compile(r"\b(?:sk|pk|rk|ghp|gho|xox[abp]|AKIA)[-_A-Za-z0-9]{12,}\b"), "[secret]"),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{16,}"), "Bearer [secret]"),
    (re.compile(r"\b(?:\d[ -]?){13,19}\b"), "[number]"),  # card and account numbers
    (re.compile(r"(?<![\w.])\+?\d{1,3}[ .-]?\(?\d{2,4}\)?[ .-]?\d{3,4}[ .-]?\d{3,4}\b"), "[phone]"),
)


def redact_common_secrets(text: str) -> str:
    """The built-in redaction hook: masks e-mail addresses, API-key-like tokens, long card or account
    numbers and phone numbers. Not a guarantee; name your own hook in `ledger.redact` when it matters."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def _unchanged(text: str) -> str:
    return text


def load_redactor(spec: str) -> Redactor:
    """`builtin`, `none`, or `package.module:function` (a str -> str function)."""
    if spec == "builtin":
        return redact_common_secrets
    if spec == "none":
        return _unchanged
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"ledger.redact must be 'builtin', 'none' or 'module:function', got {spec!r}")
    function = getattr(importlib.import_module(module_name), attribute)
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
