"""The C extensions are built by `make install` (setup.py) and used: the single-query latency target
depends on them, and a build that silently fell back to Python would pass every other test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from classifier import features, text
from classifier.registry import load_model

ROOT = Path(__file__).resolve().parent.parent


def test_both_extensions_are_built_and_used() -> None:
    assert features.NATIVE_AVAILABLE, "classifier._native_features is not built: run `make install` (needs gcc)"
    assert text.focus_final_item is not text._focus_final_item_python, "classifier._native_focus is not used"
    assert load_model(None).scorer.native


def test_moa_router_native_0_switches_both_off() -> None:
    code = (
        "from classifier import text; from classifier.registry import load_model\n"
        "print(text.focus_final_item is text._focus_final_item_python, load_model(None).scorer.native)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
        env={"MOA_ROUTER_NATIVE": "0", "PATH": "/usr/bin:/bin", "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False"]
