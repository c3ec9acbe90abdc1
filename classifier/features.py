"""Cheap query features: hashed byte and word n-grams plus a few length and structure signals.

Everything here is numpy, bytes.translate and one precompiled regex, no scikit-learn: it runs on the
request path. Case folding is ASCII-only (on the bytes).

N-gram hashing is a polynomial hash over the UTF-8 bytes with prefix sums, so the hash of any
substring (a byte n-gram, a word) is two lookups and a multiply, vectorised over the whole text in
wrapping uint64 arithmetic. It is stable across processes and machines, unlike Python's salted
`hash()`, so weights learnt in one process index the same buckets in another.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from classifier.byte_tables import (
    ASCII_LOWER,
    BASE,
    BYTE_CLASS_CODES,
    BYTE_CLASSES,
    LOWER_PLUS_ONE,
    MIX,
    PAIR,
    PAIR_SALT,
    SALT_CHAR,
    SEPARATORS,
    UNCOUNTED,
    WORD_SALT,
    count_blanks,
    hash_salt,
    line_starts,
    power_table,
    word_bounds,
)
from classifier.lexicon import LEXICON
from classifier.native import native_requested
from classifier.text import focus_final_item

try:  # the optional C extension (setup.py); without a compiler the numpy path below serves alone
    from classifier import _native_features
except ImportError:
    _native_features = None  # type: ignore[assignment]
if TYPE_CHECKING:
    from classifier._native_features import NativeFeatures

IntArray = npt.NDArray[np.intp]
FloatArray = npt.NDArray[np.float64]
UInt64Array = npt.NDArray[np.uint64]
# Dtype objects passed positionally: numpy resolves them faster than type names or keywords.
_U8, _U64, _INTP, _BOOL = np.dtype(np.uint8), np.dtype(np.uint64), np.dtype(np.intp), np.dtype(np.bool_)

LEXICON_NAMES: tuple[str, ...] = tuple(LEXICON)
_N_LEXICON = len(LEXICON_NAMES)
_LEXICON_CODES = tuple(bytes([code]) for code in range(1, _N_LEXICON + 1))
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
    "few_shot_examples",
    "blanks",
    *(f"lexicon_{name}" for name in LEXICON_NAMES),
)

# Whether the C extension is built, and for these constants (a stale build after a change here is not used).
NATIVE_AVAILABLE = (
    _native_features is not None
    and (int(MIX), int(PAIR)) == (_native_features.MIX, _native_features.PAIR)
    and len(DENSE_FEATURE_NAMES) == _native_features.N_BASE_DENSE + _N_LEXICON
)


@dataclass(frozen=True, slots=True)
class FeatureConfig:
    """How text becomes features; stored in an artifact's meta.json so inference matches training.

    Only the first `head_chars` and last `tail_chars` characters are read: the ask of a long prompt is
    almost always at its start (instructions) or its end (the question after pasted material or
    few-shot examples), and the cap bounds the per-query cost whatever the prompt's length.

    Byte n-grams (`char_ngrams`) are hashed only for texts whose share of non-ASCII bytes is at least
    `char_min_non_ascii`: words and word pairs carry space-delimited text as well, at a third of the
    hashes (each hash is a weight gathered per query), while scripts written without spaces (Chinese,
    Japanese, Thai) form one "word" per sentence and need the byte n-grams. 0 hashes them always.
    """

    buckets_log2: int = 17
    char_ngrams: tuple[int, ...] = (4,)
    word_ngrams: tuple[int, ...] = (1, 2)
    head_chars: int = 256
    tail_chars: int = 768
    char_min_non_ascii: float = 0.5

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
            # Versions saved before the setting hashed byte n-grams of every text.
            char_min_non_ascii=float(data.get("char_min_non_ascii", 0.0)),
        )


def native_by_default() -> bool:
    """Whether new Featurizers use the C extension: when it is built, unless MOA_ROUTER_NATIVE=0."""
    return NATIVE_AVAILABLE and native_requested()


@dataclass(slots=True)
class Featurizer:
    """Turns one text into (hashed n-gram bucket indices, dense signals).

    `native`: single queries are scored by the C extension (native_features), which computes the same
    features; False forces the numpy path (transform_one), the reference.
    """

    config: FeatureConfig = field(default_factory=FeatureConfig)
    native: bool = field(default_factory=native_by_default)
    _powers: UInt64Array = field(init=False, repr=False)
    _inverse_powers: UInt64Array = field(init=False, repr=False)
    _shift: np.uint64 = field(init=False, repr=False)
    _char_salts: tuple[tuple[int, np.uint64], ...] = field(init=False, repr=False)
    _lexicon: npt.NDArray[np.uint8] = field(init=False, repr=False)
    _inverse_after: UInt64Array = field(init=False, repr=False)
    _word_pair_salts: UInt64Array = field(init=False, repr=False)
    _salt_split: int = field(init=False, repr=False)
    _with_words: bool = field(init=False, repr=False)
    _with_pairs: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # A window of N characters is at most 4N UTF-8 bytes, plus the two padding spaces.
        size = 4 * (self.config.head_chars + self.config.tail_chars + 1) + 3
        self._powers = power_table(BASE, size)
        self._inverse_powers = power_table(pow(BASE, -1, 2**64), size)
        self._shift = np.uint64(64 - self.config.buckets_log2)
        self._char_salts = tuple((n, hash_salt(SALT_CHAR + n)) for n in self.config.char_ngrams)
        self._lexicon = self._build_lexicon()
        self._inverse_after = self._inverse_powers[1:]
        # Word salts then pair salts; transform_one XORs a slice around the split onto its hashes.
        self._salt_split = size
        self._word_pair_salts = np.concatenate([np.full(size, WORD_SALT), np.full(size, PAIR_SALT)])
        self._with_words = 1 in self.config.word_ngrams
        self._with_pairs = 2 in self.config.word_ngrams

    def window(self, text: str) -> str:
        """The part of `text` that is read (see FeatureConfig); a few-shot prompt's final item."""
        return self.crop(focus_final_item(text).text)

    def crop(self, text: str) -> str:
        """The first head_chars and last tail_chars characters of an already focused text."""
        head, tail = self.config.head_chars, self.config.tail_chars
        if len(text) <= head + tail:
            return text
        return text[:head] + "\n" + text[-tail:]

    def transform_one(self, text: str) -> tuple[IntArray, list[float]]:
        """Bucket indices of every n-gram (repeats kept) and the dense signals of one text."""
        focused = focus_final_item(text)
        window = self.crop(focused.text)
        encoded = (" " + window + " ").encode("utf-8")
        length = len(encoded)
        n_bytes = length - 2
        # Uncounted bytes are deleted in the same pass, so the six counts read a short string.
        counted = encoded.translate(BYTE_CLASSES, UNCOUNTED)
        newlines, non_ascii, digits, math_symbols, code_symbols, questions = map(counted.count, BYTE_CLASS_CODES)
        with_chars = non_ascii >= self.config.char_min_non_ascii * n_bytes
        # Every numpy call costs about a microsecond whatever its size, so the steps below are as few
        # as possible and write in place: this is most of the per-query cost. One translation folds
        # case and adds the 1 that makes a zero byte still change the hash (UTF-8 has no 0xFF byte).
        weighted = np.frombuffer(encoded.translate(LOWER_PLUS_ONE), _U8).astype(_U64)
        weighted *= self._powers[:length]
        if with_chars:  # byte n-grams start at offset 0, so they need the prefix sums' leading zero
            prefix = np.empty(length + 1, _U64)
            prefix[0] = 0
            cumulative = np.add.accumulate(weighted, out=prefix[1:])
            n_char = sum(max(length - n + 1, 0) for n, _ in self._char_salts)
        else:
            cumulative = np.add.accumulate(weighted, out=weighted)
            n_char = 0
        # Word edges: the last separator byte before each word and each word's last byte. Prefix sums
        # at them differ by the word's hash times the power of its start, which the inverse undoes.
        separator = np.frombuffer(encoded.translate(SEPARATORS), _BOOL)
        edges = np.not_equal(separator[1:], separator[:-1]).nonzero()[0]
        n_words = edges.shape[0] >> 1
        n_word_hashes = n_words if self._with_words else 0
        n_pairs = n_words - 1 if self._with_pairs and n_words > 1 else 0
        # All hashes go into one array in the order chars, words, word pairs (the order of the sum of
        # their weights, hence of its rounding).
        hashes = np.empty(n_char + n_word_hashes + n_pairs, _U64)
        at = 0
        for n, salt in self._char_salts if with_chars else ():
            if length >= n:
                part = hashes[at : at + length - n + 1]
                np.subtract(prefix[n:], prefix[:-n], out=part)
                part *= self._inverse_powers[: length - n + 1]
                part ^= salt
                at += part.shape[0]
        words = hashes[n_char : n_char + n_words] if n_word_hashes else np.empty(n_words, _U64)
        bounds = cumulative.take(edges)
        np.subtract(bounds[1::2], bounds[::2], out=words)
        words *= self._inverse_after.take(edges[::2])
        if n_pairs:  # pairs before salting the words, which they are made of
            pairs = hashes[-n_pairs:]
            np.multiply(words[:-1], PAIR, out=pairs)
            pairs += words[1:]
        # One XOR salts the words and the pairs: a slice of a table of word salts followed by pair salts.
        hashes[n_char:] ^= self._word_pair_salts[self._salt_split - n_word_hashes : self._salt_split + n_pairs]
        hashes *= MIX
        hashes >>= self._shift
        # Bucket numbers are far below 2**63, so the uint64 bits read as int64 are the same numbers.
        indices = hashes.view(_INTP)
        categories = self._lexicon.take(indices[n_char:]).tobytes()
        list_items, choices = line_starts(window)
        return indices, [
            math.log1p(len(focused.text)),
            math.log1p(newlines),
            0.0 if n_words else 1.0,
            non_ascii / n_bytes if n_bytes else 0.0,
            math.log1p(digits),
            math.log1p(math_symbols),
            math.log1p(code_symbols),
            math.log1p(questions),
            math.log1p(list_items),
            math.log1p(choices),
            math.log1p(focused.examples),
            math.log1p(count_blanks(encoded)),
            *[math.log1p(categories.count(code)) for code in _LEXICON_CODES],
        ]

    def native_features(
        self,
        hashed_weights: npt.NDArray[np.float32] | None = None,
        dense_rows: FloatArray | None = None,
        bias: tuple[float, float] = (0.0, 0.0),
    ) -> NativeFeatures | None:
        """The C implementation of transform_one (its `indices` method) and, given a scorer's weights,
        of its linear heads (`logits`), over this featurizer's tables (validated once, here); None when
        the extension is not built. Buckets and dense signals are identical to
        transform_one's; hashed weights are summed in double, where numpy sums float32 rows (BLAS sdot),
        so logits differ by about 1e-6 (up to ~2e-4 on long repetitive texts; the C sum is the exact
        one). `dense_rows`: (low, high, difficulty weight, stakes weight) of
        each dense signal. QueryScorer uses it when `native` is on."""
        if not NATIVE_AVAILABLE:
            return None
        return _native_features.NativeFeatures(
            byte_classes=BYTE_CLASSES,
            separators=SEPARATORS,
            lower_plus_one=LOWER_PLUS_ONE,
            powers=self._powers,
            inverse_powers=self._inverse_powers,
            lexicon=self._lexicon.tobytes(),  # immutable: the C checks its categories once, then trusts them
            n_lexicon=_N_LEXICON,
            char_ngrams=[n for n, _ in self._char_salts],
            char_salts=[int(salt) for _, salt in self._char_salts],
            word_salt=int(WORD_SALT),
            pair_salt=int(PAIR_SALT),
            with_words=self._with_words,
            with_pairs=self._with_pairs,
            buckets_log2=self.config.buckets_log2,
            char_min_non_ascii=self.config.char_min_non_ascii,
            hashed_weights=hashed_weights,
            dense_rows=dense_rows,
            bias=bias,
        )

    def transform_batch(self, texts: Sequence[str]) -> tuple[IntArray, IntArray, FloatArray]:
        """The features of many texts at once: (indices, text of each index, dense signals (n, d)).

        Same features as transform_one, text by text, but computed over all the texts' bytes at once,
        which removes most of the per-call overhead.
        """
        n = len(texts)
        focused = [focus_final_item(text) for text in texts]
        windows = [self.crop(item.text) for item in focused]
        encoded = [(" " + window + " ").encode("utf-8").translate(ASCII_LOWER) for window in windows]
        lengths = np.fromiter(map(len, encoded), dtype=np.intp, count=n)
        joined = b"".join(encoded)
        data = np.frombuffer(joined, dtype=np.uint8)
        total = data.shape[0]
        doc = np.repeat(np.arange(n, dtype=np.intp), lengths)
        # Positions within each text, so that the power tables only need to cover one window.
        ends = np.cumsum(lengths)
        local = np.arange(total) - np.repeat(ends - lengths, lengths)
        remaining = np.repeat(lengths, lengths) - local  # bytes from each position to its text's end
        inverse = self._inverse_powers[local]
        prefix = np.zeros(total + 1, dtype=np.uint64)
        np.cumsum((data + np.uint64(1)) * self._powers[local], out=prefix[1:])

        codes = np.frombuffer(joined.translate(BYTE_CLASSES), dtype=np.uint8)
        byte_classes = np.bincount(doc * 7 + codes, minlength=n * 7).reshape(n, 7)[:, 1:]
        n_bytes = (lengths - 2).astype(np.float64)
        with_chars = byte_classes[:, 1] >= self.config.char_min_non_ascii * n_bytes

        parts: list[UInt64Array] = []
        owners: list[IntArray] = []
        for k, salt in self._char_salts:
            if total < k:
                continue
            # Only n-grams inside one text (each text is padded, so none of its own are lost), and only
            # of the texts that get byte n-grams.
            inside = remaining[: total - k + 1] >= k
            inside &= with_chars[doc[: total - k + 1]]
            hashes = ((prefix[k:] - prefix[:-k]) * inverse[: total - k + 1])[inside]
            hashes ^= salt
            parts.append(hashes)
            owners.append(doc[: total - k + 1][inside])
        n_char = sum(part.shape[0] for part in parts)
        word_starts, word_ends = word_bounds(joined)
        words = (prefix[word_ends] - prefix[word_starts]) * inverse[word_starts]
        word_doc = doc[word_starts]
        if 2 in self.config.word_ngrams:
            same = np.flatnonzero(word_doc[:-1] == word_doc[1:])
            pairs = words[same] * PAIR + words[same + 1]
            pairs ^= PAIR_SALT
        if 1 in self.config.word_ngrams:
            words ^= WORD_SALT
            parts.append(words)
            owners.append(word_doc)
        if 2 in self.config.word_ngrams:
            parts.append(pairs)
            owners.append(word_doc[same])
        indices = self._to_buckets(parts)
        owner = np.concatenate(owners) if owners else np.zeros(0, dtype=np.intp)

        lexicon = np.bincount(
            owner[n_char:] * (_N_LEXICON + 1) + self._lexicon[indices[n_char:]], minlength=n * (_N_LEXICON + 1)
        ).reshape(n, _N_LEXICON + 1)
        dense = np.empty((n, len(DENSE_FEATURE_NAMES)), dtype=np.float64)
        dense[:, 0] = np.log1p(np.fromiter((len(item.text) for item in focused), dtype=np.float64, count=n))
        dense[:, 1] = np.log1p(byte_classes[:, 0])
        dense[:, 2] = np.bincount(word_doc, minlength=n) == 0
        dense[:, 3] = np.divide(byte_classes[:, 1], n_bytes, out=np.zeros(n), where=n_bytes > 0)
        dense[:, 4:8] = np.log1p(byte_classes[:, 2:6])
        dense[:, 8:10] = np.log1p([line_starts(window) for window in windows])
        dense[:, 10] = np.log1p(np.fromiter((item.examples for item in focused), dtype=np.float64, count=n))
        dense[:, 11] = np.log1p(np.fromiter(map(count_blanks, encoded), dtype=np.float64, count=n))
        dense[:, 12:] = np.log1p(lexicon[:, 1:])
        return indices, owner, dense

    def _to_buckets(self, salted: list[UInt64Array]) -> IntArray:
        """Fibonacci hashing of salted hashes to bucket numbers."""
        if not salted:
            return np.zeros(0, dtype=np.intp)
        hashes = np.concatenate(salted)
        hashes *= MIX
        hashes >>= self._shift
        # Bucket numbers are far below 2**63, so the uint64 bits read as int64 are the same numbers.
        return hashes.view(np.intp)

    def _build_lexicon(self) -> npt.NDArray[np.uint8]:
        """A bucket -> lexicon category (1-based; 0 = none) table over word and word-pair buckets."""
        table = np.zeros(self.config.n_buckets, dtype=np.uint8)
        for category, name in enumerate(LEXICON_NAMES, start=1):
            for entry in LEXICON[name]:
                encoded = (" " + entry + " ").encode("utf-8").translate(ASCII_LOWER)
                data = np.frombuffer(encoded, dtype=np.uint8)
                prefix = np.zeros(data.shape[0] + 1, dtype=np.uint64)
                np.cumsum((data + np.uint64(1)) * self._powers[: data.shape[0]], out=prefix[1:])
                starts, ends = word_bounds(encoded)
                words = (prefix[ends] - prefix[starts]) * self._inverse_powers[starts]
                if words.shape[0] == 1 and 1 in self.config.word_ngrams:
                    table[self._to_buckets([words ^ WORD_SALT])] = category
                elif words.shape[0] == 2 and 2 in self.config.word_ngrams:
                    table[self._to_buckets([(words[:1] * PAIR + words[1:]) ^ PAIR_SALT])] = category
        return table
