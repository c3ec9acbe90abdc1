"""Checks on the seed training data: schema, coverage, label balance and the near-duplicate rule."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import sparse

SEED_FILE = Path(__file__).resolve().parent.parent / "training_data" / "seed.jsonl"
KEYS = ["id", "messages", "domain", "task_type", "language", "difficulty", "stakes"]
MAX_JACCARD = 0.7


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    with SEED_FILE.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def _text(row: dict[str, Any]) -> str:
    joined = "\n".join(message["content"] for message in row["messages"])
    return re.sub(r"\s+", " ", joined.lower()).strip()


def _shingles(text: str) -> set[str]:
    return {text} if len(text) <= 5 else {text[i : i + 5] for i in range(len(text) - 4)}


def max_pairwise_jaccard(texts: list[str]) -> tuple[float, int, int]:
    """Largest Jaccard similarity of 5-gram shingle sets over all pairs, and the pair's indices."""
    vocabulary: dict[str, int] = {}
    indptr: list[int] = [0]
    indices: list[int] = []
    for text in texts:
        indices.extend(vocabulary.setdefault(gram, len(vocabulary)) for gram in _shingles(text))
        indptr.append(len(indices))
    incidence = sparse.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(len(texts), len(vocabulary)))
    overlap = (incidence @ incidence.T).toarray()
    sizes = np.diff(incidence.indptr)
    similarity = overlap / (sizes[:, None] + sizes[None, :] - overlap)
    np.fill_diagonal(similarity, 0.0)
    i, j = np.unravel_index(int(np.argmax(similarity)), similarity.shape)
    return float(similarity[i, j]), int(i), int(j)


def test_schema_of_every_row(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        assert list(row) == KEYS, row["id"]
        assert re.fullmatch(r"seed-\d{5}", row["id"])
        assert row["difficulty"] in (0, 1) and row["stakes"] in (0, 1), row["id"]
        assert isinstance(row["domain"], str) and row["domain"], row["id"]
        assert isinstance(row["task_type"], str) and row["task_type"], row["id"]
        assert re.fullmatch(r"[a-z]{2}", row["language"]), row["id"]
        messages = row["messages"]
        assert messages and messages[-1]["role"] == "user", row["id"]
        for message in messages:
            assert set(message) == {"role", "content"}, row["id"]
            assert message["role"] in ("system", "user", "assistant"), row["id"]
            assert isinstance(message["content"], str) and message["content"].strip(), row["id"]


def test_size_coverage_and_balance(rows: list[dict[str, Any]]) -> None:
    assert len(rows) >= 3000
    assert len({row["id"] for row in rows}) == len(rows)
    assert len({row["domain"] for row in rows}) >= 25
    languages = [row["language"] for row in rows]
    assert len(set(languages)) >= 5
    assert sum(lang != "en" for lang in languages) >= 0.10 * len(rows)
    for label in ("difficulty", "stakes"):
        assert {row[label] for row in rows} == {0, 1}
    hard = sum(row["difficulty"] for row in rows) / len(rows)
    risky = sum(row["stakes"] for row in rows) / len(rows)
    assert 0.35 <= hard <= 0.45 and 0.25 <= risky <= 0.35


def test_multi_turn_and_system_rows_present(rows: list[dict[str, Any]]) -> None:
    multi = [row for row in rows if sum(m["role"] == "user" for m in row["messages"]) > 1]
    assert len(multi) >= 0.05 * len(rows)
    assert all(any(m["role"] == "assistant" for m in row["messages"]) for row in multi)
    assert any(row["messages"][0]["role"] == "system" for row in rows)


def test_no_near_duplicates(rows: list[dict[str, Any]]) -> None:
    texts = [_text(row) for row in rows]
    worst, i, j = max_pairwise_jaccard(texts)
    assert worst < MAX_JACCARD, (rows[i]["id"], rows[j]["id"], worst)


def test_near_duplicate_check_detects_a_near_copy() -> None:
    base = "how many times does the letter r appear in the word strawberry, counting carefully?"
    worst, _, _ = max_pairwise_jaccard([base, base.replace("carefully", "carefuly"), "tell me a joke about cats"])
    assert worst >= MAX_JACCARD
