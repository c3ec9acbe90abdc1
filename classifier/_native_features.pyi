"""C implementation of the classifier's single-query features (classifier/_native_features*.c)."""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

MIX: int
PAIR: int
N_BASE_DENSE: int

# Any C-contiguous buffer of the right item format and length is accepted; these are what Featurizer passes.

class NativeFeatures:
    """Featurizer.transform_one's features of one window and, given a scorer's weights, its logits.

    Build it with Featurizer.native_features(), which passes the featurizer's own tables.
    """

    def __new__(
        cls,
        byte_classes: bytes,
        separators: bytes,
        lower_plus_one: bytes,
        powers: npt.NDArray[np.uint64],
        inverse_powers: npt.NDArray[np.uint64],
        lexicon: bytes | npt.NDArray[np.uint8],
        n_lexicon: int,
        char_ngrams: Sequence[int],
        char_salts: Sequence[int],
        word_salt: int,
        pair_salt: int,
        with_words: bool,
        with_pairs: bool,
        buckets_log2: int,
        char_min_non_ascii: float,
        hashed_weights: npt.NDArray[np.float32] | None = None,
        dense_rows: npt.NDArray[np.float64] | None = None,
        bias: tuple[float, float] = (0.0, 0.0),
    ) -> NativeFeatures: ...
    def logits(self, window: str, n_chars: int, examples: int, /) -> tuple[float, float, list[float]]:
        """(difficulty logit, stakes logit, dense signals) of the linear heads, before any booster."""
    def indices(self, window: str, n_chars: int, examples: int, /) -> tuple[bytes, list[float]]:
        """(every bucket as native int64 bytes, in transform_one's order; dense signals)."""
