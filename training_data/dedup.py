"""Near-duplicate detection: Jaccard similarity of character 5-gram shingle sets.

The text of a row is all of its message contents joined by newlines, lower-cased, with runs of
whitespace collapsed, so that case or spacing alone never makes two rows "different".
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

SHINGLE_SIZE = 5
MAX_JACCARD = 0.7
_SPACES = re.compile(r"\s+")


def normalise(text: str) -> str:
    return _SPACES.sub(" ", text.lower()).strip()


def shingles(text: str, size: int = SHINGLE_SIZE) -> set[str]:
    """Character ``size``-grams of the normalised text (the whole text when shorter)."""
    norm = normalise(text)
    if len(norm) <= size:
        return {norm}
    return {norm[i : i + size] for i in range(len(norm) - size + 1)}


def jaccard_matrix(texts: Sequence[str]) -> npt.NDArray[np.float64]:
    """Dense matrix of pairwise Jaccard similarities, computed through a sparse incidence matrix."""
    from scipy import sparse

    vocabulary: dict[str, int] = {}
    indptr = [0]
    indices: list[int] = []
    for text in texts:
        for gram in sorted(shingles(text)):
            indices.append(vocabulary.setdefault(gram, len(vocabulary)))
        indptr.append(len(indices))
    data = np.ones(len(indices), dtype=np.float64)
    incidence = sparse.csr_matrix((data, indices, indptr), shape=(len(texts), len(vocabulary)))
    intersections = (incidence @ incidence.T).toarray()
    sizes = np.diff(incidence.indptr).astype(np.float64)
    unions = sizes[:, None] + sizes[None, :] - intersections
    return np.asarray(intersections / np.maximum(unions, 1.0), dtype=np.float64)


def keep_mask(texts: Sequence[str], threshold: float = MAX_JACCARD) -> list[bool]:
    """Greedy filter: keep a text unless an earlier kept text is at least ``threshold`` similar."""
    similarity = jaccard_matrix(texts)
    kept: list[int] = []
    mask: list[bool] = []
    for i in range(len(texts)):
        duplicate = bool(kept) and bool((similarity[i, kept] >= threshold).any())
        mask.append(not duplicate)
        if not duplicate:
            kept.append(i)
    return mask
