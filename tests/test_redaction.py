"""Redaction of texts before the outcome log stores them."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# The e-mail pattern as it was: its `\b` lets a match start at every character of a run, and each start
# scans the run to its end looking for "@".
_QUADRATIC_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="ab_é.+-@ ", max_size=40))
def test_email_redaction_masks_what_the_quadratic_pattern_masked(text: str) -> None:
    # The examples that tell a pattern tried at run starts only from the old one: addresses back to back.
    for glued in ("a@b.co+d@e.fg", "x.y@b.co-.z@e.fg", ".-a@b.co"):
        assert redact_common_secrets(glued) == _QUADRATIC_EMAIL.sub("[email]", glued)
    # No digits, no key prefixes, no "bearer": only the e-mail pattern can apply to these texts.
    assert redact_common_secrets(text) == _QUADRATIC_EMAIL.sub("[email]", text)


@pytest.mark.parametrize("run", ["a.", "a-", "1."])
def test_a_long_run_without_an_at_sign_is_redacted_in_one_pass(run: str) -> None:
    # A client's prompt (up to the 1 MB body limit) is redacted on the event loop before the outcome log
    # stores it. 128 KB of "a.a.a." took the old pattern about a minute (16 KB: 1 s; 1 MB: over an
    # hour), holding every request of the process; in one pass it is milliseconds. A subprocess, so that
    # a regression fails at the timeout instead of hanging the suite.
    code = (
        "from router.redaction import redact_common_secrets as r\n"
        f"text = {run!r} * 65536 + ' bob@corp.io'\n"
        "assert r(text).endswith(' [email]')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=15, cwd=Path(__file__).parents[1])


@pytest.mark.parametrize(
    ("source", "named"),
    [
        ("def redact(text:\n", "SyntaxError"),
        ("raise RuntimeError('no licence file')\n", "RuntimeError: no licence file"),
    ],
    ids=["syntax error", "raises on import"],
)
def test_a_hook_module_that_cannot_be_imported_is_a_config_error(
    source: str, named: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only a missing module or function was a config error; these were a traceback from `serve`.
    module = f"hook_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match=rf"^ledger\.redact: cannot load {module}:redact: {named}"):
        load_redactor(f"{module}:redact")
