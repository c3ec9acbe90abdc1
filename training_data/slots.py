"""Shared helpers for the template generators: row construction and seeded choices."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

from authored import Row

T = TypeVar("T")


def single(text: str, domain: str, task_type: str, language: str, difficulty: int, stakes: int,
           source: str) -> Row:
    """A single-turn row."""
    return Row((("user", text),), domain, task_type, language, difficulty, stakes, source)


def conversation(turns: Sequence[tuple[str, str]], domain: str, task_type: str, language: str,
                 difficulty: int, stakes: int, source: str) -> Row:
    """A multi-turn row; the last turn must be the user's ask."""
    if not turns or turns[-1][0] != "user":
        raise ValueError("a conversation must end with a user turn")
    return Row(tuple(turns), domain, task_type, language, difficulty, stakes, source)


def pick(rng: random.Random, options: Sequence[T]) -> T:
    return options[rng.randrange(len(options))]


def sample(rng: random.Random, options: Sequence[T], count: int) -> list[T]:
    return rng.sample(list(options), min(count, len(options)))
