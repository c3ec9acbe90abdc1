"""The byte-level tables and small scans under the query features (classifier/features.py): the
hash constants, the bytes.translate tables (case folding, word separators, counted byte classes), word
bounds, list items and answer options at line starts, and fill-in-the-blank slots. The C extension
(classifier/_native_features*.c) holds the same constants; features.py checks they match.
"""

from __future__ import annotations

import re

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.intp]
UInt64Array = npt.NDArray[np.uint64]

MASK64 = 0xFFFFFFFFFFFFFFFF
BASE = 0x100000001B3  # odd, hence invertible modulo 2**64
MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: the top bits of h * MIX are well spread
PAIR = np.uint64(0xD6E8FEB86659FD93)  # combines two word hashes into a word-pair hash
SALT_CHAR = 0x51ED270B27D3A1C5
SALT_WORD = 0x2545F4914F6CDD1D


def translation(*classes: bytes) -> bytes:
    """A bytes.translate table mapping each byte to the 1-based number of its class (0 = none)."""
    table = bytearray(256)
    for code, members in enumerate(classes, start=1):
        for byte in members:
            if table[byte]:
                raise ValueError(f"byte {byte} is in two classes")
            table[byte] = code
    return bytes(table)


# Case folding is ASCII-only, on the bytes: str.lower() costs several times more on non-ASCII text.
ASCII_LOWER = bytes.maketrans(bytes(range(65, 91)), bytes(range(97, 123)))
# Words are runs of anything but ASCII whitespace and punctuation, so non-Latin scripts form words too.
SEPARATORS = translation(b" \t\n\r\x0b\x0c!\"#$%&'()*+,-./:;<=>?@[\\]^`{|}~")
# Counted byte classes, in DENSE_FEATURE_NAMES order: newlines, non-ASCII, digits, maths, code, "?".
BYTE_CLASSES = translation(b"\n", bytes(range(128, 256)), b"0123456789", b"=+*/^<>%", b"{};`_[]#|\\", b"?")
BYTE_CLASS_CODES = tuple(bytes([code]) for code in range(1, 7))
UNCOUNTED = bytes(byte for byte in range(256) if not BYTE_CLASSES[byte])
# Case folding and the +1 of the hash in one translation; UTF-8 never contains the byte 0xFF.
LOWER_PLUS_ONE = bytes((byte + 32 if 65 <= byte <= 90 else byte) + 1 & 0xFF for byte in range(256))

# Numbered or bulleted list items (group 1) and lettered answer options (group 2), at line starts.
LINE_START_RE = re.compile(r"\n[ \t]*+(?:\d{1,2}[.)]|[-*•]|([A-Ea-e])[).:])[ \t]")

# A lone underscore is the slot of a fill-in-the-blank item; " __init__" and snake_case are not.
BLANKS = (b" _ ", b" _.", b" _,", b" _?", b" _'", b" _\n")


def word_bounds(encoded: bytes) -> tuple[IntArray, IntArray]:
    """Start and end offsets of the words of space-padded bytes."""
    separator = np.frombuffer(encoded.translate(SEPARATORS), dtype=np.bool_)
    changes = np.empty(separator.shape[0], dtype=np.bool_)
    changes[0] = False
    np.not_equal(separator[1:], separator[:-1], out=changes[1:])
    # Padding makes the first change a separator->word edge, and edges then alternate.
    edges = changes.nonzero()[0]
    return edges[0::2], edges[1::2]


def count_blanks(encoded: bytes) -> int:
    # Most texts have no blank at all, and one search is much cheaper than six counts.
    if b" _" not in encoded:
        return 0
    return sum(encoded.count(blank) for blank in BLANKS)


def line_starts(window: str) -> tuple[int, int]:
    """(list items, lettered answer options) at the starts of lines."""
    if "\n" not in window:
        return 0, 0
    # The one group is empty for a list item and the option letter for an answer option.
    found = LINE_START_RE.findall(window)
    list_items = found.count("")
    return list_items, len(found) - list_items


def hash_salt(value: int) -> np.uint64:
    return np.uint64(value & MASK64)


WORD_SALT = hash_salt(SALT_WORD + 1)
PAIR_SALT = hash_salt(SALT_WORD + 2)


def power_table(base: int, size: int) -> UInt64Array:
    table = np.ones(size, dtype=np.uint64)
    np.cumprod(np.full(size - 1, base, dtype=np.uint64), out=table[1:])  # wraps modulo 2**64
    return table
