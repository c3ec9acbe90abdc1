"""The reference docs list what the code has: every metric, config key and command option, and nothing
that is gone. A name the docs keep after the code dropped it (or a new one they never got) misleads the
operators who read them."""

from __future__ import annotations

import argparse
import re
import typing
from pathlib import Path

import pytest
from prometheus_client import Counter, Gauge, Histogram
from pydantic import BaseModel

from router.cli import build_parser
from router.config import ModelEntry, Settings
from router.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# The first cell of a reference table's row: `name` (and for metrics `name{label,label}`).
_FIRST_CELL = re.compile(r"^\| `([^`]+)` \|", re.MULTILINE)


def _section(path: Path, heading: str) -> str:
    text = path.read_text(encoding="utf-8")
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _documented_metrics() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for cell in _FIRST_CELL.findall(_section(DOCS / "operations.md", "Metrics")):
        name, _, labels = cell.partition("{")
        found[name] = set(filter(None, labels.rstrip("}").split(",")))
    return found


def _exported_metrics() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for metric in vars(Metrics()).values():
        if isinstance(metric, Counter | Gauge | Histogram):
            suffix = "_total" if isinstance(metric, Counter) else ""  # how a scrape names a counter
            found[metric._name + suffix] = set(metric._labelnames)
    return found


def test_the_metrics_table_lists_every_series_with_its_labels() -> None:
    assert _documented_metrics() == _exported_metrics()


def _config_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        nested = [
            candidate
            for outer in (field.annotation, *typing.get_args(field.annotation))
            for candidate in (outer, *typing.get_args(outer))
            if isinstance(candidate, type) and issubclass(candidate, BaseModel) and candidate is not ModelEntry
        ]
        is_list = typing.get_origin(field.annotation) is tuple
        if nested:
            keys |= _config_keys(nested[0], f"{prefix}{name}{'[]' if is_list else ''}.")
            if is_list:
                keys.add(prefix + name)  # the list itself is a row too
        else:
            keys.add(prefix + name)
    return keys


def test_the_config_reference_lists_every_key_and_no_other() -> None:
    cells = _FIRST_CELL.findall((DOCS / "configuration.md").read_text(encoding="utf-8"))
    documented = {cell for cell in cells if not cell.isupper()}  # not the environment variables' table
    assert documented == _config_keys(Settings) | set(ModelEntry.model_fields)


def _commands(parser: argparse.ArgumentParser, path: str = "") -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(_commands(sub, f"{path} {name}".strip()))
    options = {
        option
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction)
        for option in action.option_strings
    }
    if path:
        found[path] = options
    return found


@pytest.mark.parametrize(("command", "options"), sorted(_commands(build_parser()).items()))
def test_the_command_reference_names_every_command_and_option(command: str, options: set[str]) -> None:
    top = command.split()[0]
    section = _section(DOCS / "cli.md", f"`moa-router {top}`")
    if command != top:
        assert f"`{command.split()[1]}" in section
    missing = {option for option in options if not re.search(rf"{re.escape(option)}\b", section)}
    assert not missing, f"docs/cli.md does not name {sorted(missing)} of moa-router {command}"


@pytest.mark.parametrize("page", [ROOT / "README.md", *sorted(DOCS.glob("*.md"))], ids=lambda path: path.name)
def test_relative_links_lead_to_files_and_headings_that_exist(page: Path) -> None:
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        assert linked.exists(), f"{page.name} links to {target}, which does not exist"
        if anchor and linked.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", linked.read_text(encoding="utf-8"), re.MULTILINE)
            slugs = {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}
            assert anchor in slugs, f"{page.name} links to {target}: no such heading"
