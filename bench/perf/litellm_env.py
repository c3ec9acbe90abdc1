"""LiteLLM's proxy in a virtual environment of its own (bench/.litellm-venv), installed from a hash-checked
lock so that the comparison is reproducible and cannot pull in a compromised release."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

LOCK = Path(__file__).with_name("litellm-proxy.lock")
VENV = Path(__file__).resolve().parents[1] / ".litellm-venv"
LITELLM_VERSION = "1.110.2"
_COMPROMISED = ("litellm==1.82.7", "litellm==1.82.8")
_STAMP = "installed-from-lock.sha256"


def _lock_digest() -> str:
    return hashlib.sha256(LOCK.read_bytes()).hexdigest()


def check_lock() -> None:
    text = LOCK.read_text(encoding="utf-8")
    if f"litellm=={LITELLM_VERSION} " not in text or any(bad in text for bad in _COMPROMISED):
        raise RuntimeError(f"{LOCK} must pin litellm=={LITELLM_VERSION} (and never 1.82.7 or 1.82.8)")


def litellm_command(venv: Path = VENV) -> list[str]:
    return [str(venv / "bin" / "litellm")]


def ensure_litellm_proxy(venv: Path = VENV, log: Path | None = None) -> list[str]:
    """Creates the venv and installs the lock into it unless that lock is installed already; returns the
    command that starts the proxy. Takes a minute or two the first time (about 170 MB of wheels)."""
    check_lock()
    stamp = venv / _STAMP
    if stamp.is_file() and stamp.read_text().strip() == _lock_digest():
        return litellm_command(venv)
    print(f"installing LiteLLM's proxy {LITELLM_VERSION} into {venv} (first run only) ...", flush=True)
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        (venv / ".gitignore").write_text("*\n")  # never committed, whatever the repository's .gitignore says
    output = log.open("ab") if log is not None else None
    try:
        subprocess.run(
            [
                str(venv / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--require-hashes",
                "--no-deps",
                "-r",
                str(LOCK),
            ],
            check=True,
            stdout=output,
            stderr=output,
        )
    except subprocess.CalledProcessError as exc:
        where = f"; see {log}" if log is not None else ""
        raise RuntimeError(f"installing LiteLLM's proxy failed (pip exited {exc.returncode}){where}") from exc
    finally:
        if output is not None:
            output.close()
    stamp.write_text(_lock_digest() + "\n")
    return litellm_command(venv)
