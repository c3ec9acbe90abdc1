"""Redaction of texts before the outcome log stores them."""

from __future__ import annotations

import pytest

from router.redaction import load_redactor, redact_common_secrets, redact_messages


def test_redaction_hook() -> None:
    text = "mail bob@corp.io, key sk-abcdefghijklmnop1234, call +44 20 7946 0958, pay 5500-0000-0000-0004"
    redacted = redact_common_secrets(text)
    for secret in ("bob@corp.io", "sk-abcdefghijklmnop1234", "7946", "5500"):
        assert secret not in redacted
    assert (
        redact_common_secrets("Explain the 1990s recession in 3 points.") == "Explain the 1990s recession in 3 points."
    )
    assert load_redactor("none")(text) == text
    assert load_redactor("builtin") is redact_common_secrets
    assert load_redactor("router.redaction:redact_common_secrets") is redact_common_secrets
    with pytest.raises(ValueError):
        load_redactor("not-a-spec")
    parts = redact_messages(
        [{"role": "user", "content": [{"type": "text", "text": "to x@y.org"}, {"type": "image_url", "image_url": {}}]}],
        redact_common_secrets,
    )
    assert parts[0]["content"][0]["text"] == "to [email]" and parts[0]["content"][1]["type"] == "image_url"
