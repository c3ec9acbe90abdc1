"""Cheap query features: hashed byte and word n-grams plus a few length and structure signals.

Everything here is numpy and two precompiled regexes, no scikit-learn: it runs on the request path.

N-gram hashing is a polynomial hash over the UTF-8 bytes with prefix sums, so the hash of any
substring (a byte n-gram, a word) is two lookups and a multiply, vectorised over the whole text in
wrapping uint64 arithmetic. It is stable across processes and machines, unlike Python's salted
`hash()`, so weights learnt in one process index the same buckets in another.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from classifier.lexicon import LEXICON

IntArray = npt.NDArray[np.intp]
UInt64Array = npt.NDArray[np.uint64]

_MASK64 = 0xFFFFFFFFFFFFFFFF
_BASE = 0x100000001B3  # odd, hence invertible modulo 2**64
_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: the top bits of h * _MIX are well spread
_PAIR = np.uint64(0xD6E8FEB86659FD93)  # combines two word hashes into a word-pair hash
_SALT_CHAR = 0x51ED270B27D3A1C5
_SALT_WORD = 0x2545F4914F6CDD1D


def _byte_table(chars: str) -> npt.NDArray[np.bool_]:
    table = np.zeros(256, dtype=np.bool_)
    table[list(chars.encode("ascii"))] = True
    return table


# Words are runs of anything but ASCII whitespace and punctuation, so non-Latin scripts form words too.
_SEPARATOR = _byte_table(" \t\n\r\x0b\x0c!\"#$%&'()*+,-./:;<=>?@[\\]^`{|}~")
# Byte counts @ _BYTE_CLASSES = counts of: newlines, non-ASCII bytes, digits, maths and code symbols, "?".
_BYTE_CLASSES = np.stack(
    [
        _byte_table("\n"),
        np.arange(256) >= 128,
        _byte_table("0123456789"),
        _byte_table("=+*/^<>%"),
        _byte_table("{};`_[]#|\\"),
        _byte_table("?"),
    ],
    axis=1,
).astype(np.int64)

_LIST_ITEM_RE = re.compile(r"\n[ \t]*(?:\d{1,2}[.)]|[-*•])[ \t]")
_CHOICE_RE = re.compile(r"\n[ \t]*[A-Ea-e][).:][ \t]")

LEXICON_NAMES: tuple[str, ...] = tuple(LEXICON)
_N_LEXICON = len(LEXICON_NAMES)
DENSE_FEATURE_NAMES: tuple[str, ...] = (
    "log_chars",
    "log_lines",
    "empty",
    "non_ascii_share",
    "digits",
    "math_symbols",
    "code_symbols",
    "questions",
    "list_items",
    "choices",
    *(f"lexicon_{name}" for name in LEXICON_NAMES),
)


@dataclass(frozen=True, slots=True)
class FeatureConfig:
    """How text becomes features; stored in an artifact's meta.json so inference matches training.

    Only the first `head_chars` and last `tail_chars` characters are read: the ask of a long prompt is
    almost always at its start (instructions) or its end (the question after pasted material or
    few-shot examples), and the cap bounds the per-query cost whatever the prompt's length.
    """

    buckets_log2: int = 17
    char_ngrams: tuple[int, ...] = (3, 5)
    word_ngrams: tuple[int, ...] = (1, 2)
    head_chars: int = 768
    tail_chars: int = 1280

    @property
    def n_buckets(self) -> int:
        return 1 << self.buckets_log2

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["char_ngrams"] = list(self.char_ngrams)
        data["word_ngrams"] = list(self.word_ngrams)
        data["dense_features"] = list(DENSE_FEATURE_NAMES)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeatureConfig:
        names = data.get("dense_features")
        if names is not None and list(names) != list(DENSE_FEATURE_NAMES):
            raise ValueError(
                f"artifact was trained with dense features {names}, this code computes {list(DENSE_FEATURE_NAMES)}"
            )
        word_ngrams = tuple(int(n) for n in data["word_ngrams"])
        if not set(word_ngrams) <= {1, 2}:
            raise ValueError(f"word n-grams must be 1 and/or 2, got {word_ngrams}")
        return cls(
            buckets_log2=int(data["buckets_log2"]),
            char_ngrams=tuple(int(n) for n in data["char_ngrams"]),
            word_ngrams=word_ngrams,
            head_chars=int(data["head_chars"]),
            tail_chars=int(data["tail_chars"]),
        )


@dataclass(slots=True)
class Featurizer:
    """Turns one text into (hashed n-gram bucket indices, dense signals)."""

    config: FeatureConfig = field(default_factory=FeatureConfig)
    _powers: UInt64Array = field(init=False, repr=False)
    _inverse_powers: UInt64Array = field(init=False, repr=False)
    _shift: np.uint64 = field(init=False, repr=False)
    _char_salts: tuple[tuple[int, np.uint64], ...] = field(init=False, repr=False)
    _lexicon: npt.NDArray[np.uint8] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # A window of N characters is at most 4N UTF-8 bytes, plus the two padding spaces.
        size = 4 * (self.config.head_chars + self.config.tail_chars + 1) + 3
        self._powers = _power_table(_BASE, size)
        self._inverse_powers = _power_table(pow(_BASE, -1, 2**64), size)
        self._shift = np.uint64(64 - self.config.buckets_log2)
        self._char_salts = tuple((n, _salt(_SALT_CHAR + n)) for n in self.config.char_ngrams)
        self._lexicon = self._build_lexicon()

    def window(self, text: str) -> str:
        """The part of `text` that is read (see FeatureConfig)."""
        head, tail = self.config.head_chars, self.config.tail_chars
        if len(text) <= head + tail:
            return text
        return text[:head] + "\n" + text[-tail:]

    def transform_one(self, text: str) -> tuple[IntArray, list[float]]:
        """Bucket indices of every n-gram (repeats kept) and the dense signals of one text."""
        window = self.window(text)
        data = np.frombuffer(b" " + window.lower().encode("utf-8") + b" ", dtype=np.uint8)
        length = data.shape[0]
        prefix = np.zeros(length + 1, dtype=np.uint64)
        # +1 so that a zero byte still changes the hash.
        np.cumsum((data + np.uint64(1)) * self._powers[:length], out=prefix[1:])

        parts: list[UInt64Array] = []
        for n, salt in self._char_salts:
            if length > n:  # more than the padding
                parts.append(self._bucket((prefix[n:] - prefix[:-n]) * self._inverse_powers[: length - n + 1], salt))
        n_char = sum(part.shape[0] for part in parts)
        parts.extend(self._word_buckets(data, prefix))
        indices = np.concatenate(parts).astype(np.intp) if parts else np.zeros(0, dtype=np.intp)

        lexicon_counts = np.bincount(self._lexicon[indices[n_char:]], minlength=_N_LEXICON + 1)
        newlines, non_ascii, digits, math_symbols, code_symbols, questions = (
            np.bincount(data, minlength=256) @ _BYTE_CLASSES
        ).tolist()
        n_bytes = length - 2
        return indices, [
            math.log1p(len(text)),
            math.log1p(newlines),
            0.0 if indices.shape[0] > n_char else 1.0,
            non_ascii / n_bytes if n_bytes else 0.0,
            math.log1p(digits),
            math.log1p(math_symbols),
            math.log1p(code_symbols),
            math.log1p(questions),
            math.log1p(len(_LIST_ITEM_RE.findall(window))),
            math.log1p(len(_CHOICE_RE.findall(window))),
            *map(math.log1p, lexicon_counts[1:].tolist()),
        ]

    def _word_buckets(self, data: npt.NDArray[np.uint8], prefix: UInt64Array) -> list[UInt64Array]:
        words = self._word_hashes(data, prefix)
        buckets = []
        if 1 in self.config.word_ngrams and words.shape[0]:
            buckets.append(self._bucket(words.copy(), _WORD_SALT))
        if 2 in self.config.word_ngrams and words.shape[0] > 1:
            buckets.append(self._bucket(words[:-1] * _PAIR + words[1:], _PAIR_SALT))
        return buckets

    def _word_hashes(self, data: npt.NDArray[np.uint8], prefix: UInt64Array) -> UInt64Array:
        separator = _SEPARATOR[data]
        word = ~separator
        # The text is padded with spaces, so every word has a start and an end.
        starts = np.nonzero(separator[:-1] & word[1:])[0] + 1
        ends = np.nonzero(word[:-1] & separator[1:])[0] + 1
        hashes: UInt64Array = (prefix[ends] - prefix[starts]) * self._inverse_powers[starts]
        return hashes

    def _bucket(self, hashes: UInt64Array, salt: np.uint64) -> UInt64Array:
        """Map raw substring hashes to bucket indices in place (salted per n-gram kind)."""
        hashes ^= salt
        hashes *= _MIX
        hashes >>= self._shift
        return hashes

    def _build_lexicon(self) -> npt.NDArray[np.uint8]:
        """A bucket -> lexicon category (1-based; 0 = none) table over word and word-pair buckets."""
        table = np.zeros(self.config.n_buckets, dtype=np.uint8)
        for category, name in enumerate(LEXICON_NAMES, start=1):
            for entry in LEXICON[name]:
                data = np.frombuffer(b" " + entry.lower().encode("utf-8") + b" ", dtype=np.uint8)
                prefix = np.zeros(data.shape[0] + 1, dtype=np.uint64)
                np.cumsum((data.astype(np.uint64) + np.uint64(1)) * self._powers[: data.shape[0]], out=prefix[1:])
                words = self._word_hashes(data, prefix)
                if words.shape[0] == 1 and 1 in self.config.word_ngrams:
                    table[self._bucket(words, _WORD_SALT)] = category
                elif words.shape[0] == 2 and 2 in self.config.word_ngrams:
                    table[self._bucket(words[:1] * _PAIR + words[1:], _PAIR_SALT)] = category
        return table


def _salt(value: int) -> np.uint64:
    return np.uint64(value & _MASK64)


_WORD_SALT = _salt(_SALT_WORD + 1)
_PAIR_SALT = _salt(_SALT_WORD + 2)


def _power_table(base: int, size: int) -> UInt64Array:
    table = np.ones(size, dtype=np.uint64)
    np.cumprod(np.full(size - 1, base, dtype=np.uint64), out=table[1:])  # wraps modulo 2**64
    return table
