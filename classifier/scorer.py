"""The query scorer: two calibrated logistic heads (difficulty, stakes) over the features.

Inference is numpy and plain Python over the learnt weights; scikit-learn is imported only by `fit`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from classifier.booster import ARRAY_NAMES as BOOSTER_ARRAY_NAMES
from classifier.booster import Booster
from classifier.calibration import Platt
from classifier.features import DENSE_FEATURE_NAMES, FeatureConfig, Featurizer
from classifier.text import focus_final_item, messages_to_text

if TYPE_CHECKING:
    from classifier._native_features import NativeFeatures

FloatArray = npt.NDArray[np.float64]
HEADS: tuple[str, str] = ("difficulty", "stakes")
# Batches are scored in chunks that keep the working arrays in cache while amortising per-call overhead.
CHUNK_TEXTS = 1024
CHUNK_CHARS = 65536
_DEFAULT_FEATURES = FeatureConfig()
ARRAY_NAMES: tuple[str, ...] = (
    "hashed_weights",
    "dense_weights",
    "dense_mean",
    "dense_scale",
    "dense_low",
    "dense_high",
    "intercept",
)


@dataclass(frozen=True, slots=True)
class Scores:
    """Calibrated probabilities for one query."""

    difficulty: float  # the cheap model's answer is inadequate
    stakes: float  # a wrong answer would cause real harm or cost


class NotFittedError(RuntimeError):
    """The scorer was used before `fit` (or before its weights were loaded)."""


class QueryScorer:
    """Scores queries for difficulty and stakes; follows scikit-learn's estimator contract.

    Parameters are the feature settings (see FeatureConfig), the inverse regularisation strength `C`
    of both logistic heads, and the number of folds whose out-of-fold logits fit the Platt calibration.
    """

    def __init__(
        self,
        *,
        buckets_log2: int = _DEFAULT_FEATURES.buckets_log2,
        char_ngrams: tuple[int, ...] = _DEFAULT_FEATURES.char_ngrams,
        word_ngrams: tuple[int, ...] = _DEFAULT_FEATURES.word_ngrams,
        head_chars: int = _DEFAULT_FEATURES.head_chars,
        tail_chars: int = _DEFAULT_FEATURES.tail_chars,
        char_min_non_ascii: float = _DEFAULT_FEATURES.char_min_non_ascii,
        C: float = 4.0,
        calibration_folds: int = 5,
        random_state: int = 0,
    ) -> None:
        self.buckets_log2 = buckets_log2
        self.char_ngrams = char_ngrams
        self.word_ngrams = word_ngrams
        self.head_chars = head_chars
        self.tail_chars = tail_chars
        self.char_min_non_ascii = char_min_non_ascii
        self.C = C
        self.calibration_folds = calibration_folds
        self.random_state = random_state

    # scikit-learn's contract without importing scikit-learn here.
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _PARAM_NAMES}

    def set_params(self, **params: Any) -> QueryScorer:
        for name, value in params.items():
            if name not in _PARAM_NAMES:
                raise ValueError(f"unknown parameter {name!r}")
            setattr(self, name, value)
        return self

    def feature_config(self) -> FeatureConfig:
        return FeatureConfig(
            buckets_log2=self.buckets_log2,
            char_ngrams=tuple(self.char_ngrams),
            word_ngrams=tuple(self.word_ngrams),
            head_chars=self.head_chars,
            tail_chars=self.tail_chars,
            char_min_non_ascii=self.char_min_non_ascii,
        )

    def fit(
        self,
        texts: Sequence[str],
        y_difficulty: Sequence[float] | FloatArray,
        y_stakes: Sequence[float] | FloatArray,
        sample_weight: Sequence[float] | FloatArray | None = None,
    ) -> QueryScorer:
        """Learn both heads and their calibration from labelled texts (labels 0/1)."""
        from classifier.fitting import fit_heads  # scikit-learn stays off the inference path

        featurizer = Featurizer(self.feature_config())
        fitted = fit_heads(
            featurizer,
            texts,
            np.asarray(y_difficulty, dtype=np.float64),
            np.asarray(y_stakes, dtype=np.float64),
            None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64),
            C=self.C,
            folds=self.calibration_folds,
            random_state=self.random_state,
        )
        self._set_state(featurizer, fitted.arrays, fitted.platt)
        return self

    @classmethod
    def from_state(
        cls,
        arrays: Mapping[str, npt.NDArray[Any]],
        feature_config: FeatureConfig,
        calibration: Mapping[str, Platt],
        params: Mapping[str, Any] | None = None,
    ) -> QueryScorer:
        """A fitted scorer from saved weights (see classifier.artifacts); the booster arrays, when
        present, are a correction of the difficulty head learnt on outcomes (classifier.adaptation)."""
        scorer = cls(**dict(params or {}))
        scorer.set_params(
            buckets_log2=feature_config.buckets_log2,
            char_ngrams=feature_config.char_ngrams,
            word_ngrams=feature_config.word_ngrams,
            head_chars=feature_config.head_chars,
            tail_chars=feature_config.tail_chars,
            char_min_non_ascii=feature_config.char_min_non_ascii,
        )
        booster = None
        if any(name in arrays for name in BOOSTER_ARRAY_NAMES):
            booster = Booster.from_arrays({name: arrays[name] for name in BOOSTER_ARRAY_NAMES})
        platt = (calibration["difficulty"], calibration["stakes"])
        scorer._set_state(Featurizer(feature_config), arrays, platt, booster)
        return scorer

    def _set_state(
        self,
        featurizer: Featurizer,
        arrays: Mapping[str, npt.NDArray[Any]],
        platt: tuple[Platt, Platt],
        booster: Booster | None = None,
    ) -> None:
        n_buckets, n_dense = featurizer.config.n_buckets, len(DENSE_FEATURE_NAMES)
        expected = {
            "hashed_weights": (n_buckets, 2),
            "dense_weights": (n_dense, 2),
            "dense_mean": (n_dense,),
            "dense_scale": (n_dense,),
            "dense_low": (n_dense,),
            "dense_high": (n_dense,),
            "intercept": (2,),
        }
        for name, shape in expected.items():
            if name not in arrays or arrays[name].shape != shape:
                got = arrays[name].shape if name in arrays else "missing"
                raise ValueError(f"weights array {name!r}: expected shape {shape}, got {got}")
        self.featurizer_ = featurizer
        self.hashed_weights_ = np.ascontiguousarray(arrays["hashed_weights"], dtype=np.float32)
        self.dense_weights_ = np.asarray(arrays["dense_weights"], dtype=np.float64)
        self.dense_mean_ = np.asarray(arrays["dense_mean"], dtype=np.float64)
        self.dense_scale_ = np.asarray(arrays["dense_scale"], dtype=np.float64)
        # Signals are clipped to the range seen in training: a linear head must not extrapolate
        # (a prompt ten times longer than any training row is not ten times "harder").
        self.dense_low_ = np.asarray(arrays["dense_low"], dtype=np.float64)
        self.dense_high_ = np.asarray(arrays["dense_high"], dtype=np.float64)
        self.intercept_ = np.asarray(arrays["intercept"], dtype=np.float64)
        self.platt_ = platt
        if booster is not None and platt[0].a <= 0:
            raise ValueError("a booster needs a difficulty calibration with a positive slope")
        self.booster_ = booster
        # For single queries, clipping of the dense signals folded into the trees' thresholds.
        self._booster_unclipped = None if booster is None else booster.for_unclipped(self.dense_low_, self.dense_high_)
        # Standardisation folded into the dense weights and intercept.
        self._dense_effective = self.dense_weights_ / self.dense_scale_[:, None]
        self._bias = self.intercept_ - (self.dense_mean_ / self.dense_scale_) @ self.dense_weights_
        self._ones = np.ones(0, dtype=np.float32)
        self._bias_pair = (float(self._bias[0]), float(self._bias[1]))
        self._dense_rows = [
            (float(low), float(high), float(weights[0]), float(weights[1]))
            for low, high, weights in zip(self.dense_low_, self.dense_high_, self._dense_effective, strict=True)
        ]
        # The C extension's single-query path, when built and not switched off (Featurizer.native).
        self._native = self._native_features() if featurizer.native else None

    def set_native(self, enabled: bool) -> None:
        """Score single queries with the C extension (when it is built) or, False, with numpy."""
        self._check_fitted()
        self._native = self._native_features() if enabled else None
        if enabled and self._native is None:
            raise RuntimeError("the C extension classifier._native_features is not built")

    def _native_features(self) -> NativeFeatures | None:
        return self.featurizer_.native_features(
            self.hashed_weights_, np.array(self._dense_rows, dtype=np.float64), self._bias_pair
        )

    @property
    def native(self) -> bool:
        """Whether single queries are scored by the C extension."""
        return getattr(self, "_native", None) is not None

    def _check_fitted(self) -> None:
        if not hasattr(self, "hashed_weights_"):
            raise NotFittedError("QueryScorer is not fitted: call fit() or load a version")

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        """The learnt weights, by name, for saving."""
        self._check_fitted()
        arrays: dict[str, npt.NDArray[Any]] = {
            "hashed_weights": self.hashed_weights_,
            "dense_weights": self.dense_weights_,
            "dense_mean": self.dense_mean_,
            "dense_scale": self.dense_scale_,
            "dense_low": self.dense_low_,
            "dense_high": self.dense_high_,
            "intercept": self.intercept_,
        }
        if self.booster_ is not None:
            arrays.update(self.booster_.arrays())
        return arrays

    def with_booster(self, booster: Booster | None) -> QueryScorer:
        """A copy of this fitted scorer whose difficulty head is corrected by `booster`."""
        self._check_fitted()
        copy = QueryScorer(**self.get_params())
        base_arrays = {name: value for name, value in self.arrays().items() if name not in BOOSTER_ARRAY_NAMES}
        copy._set_state(self.featurizer_, base_arrays, self.platt_, booster)
        if self._native is None:
            copy._native = None  # switched off on this scorer: off on its copy too
        return copy

    # The C object is not picklable: a pickled or deep-copied scorer rebuilds it from its own weights.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_native"] = state.get("_native") is not None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        native = bool(state.pop("_native", False))
        self.__dict__.update(state)
        if hasattr(self, "hashed_weights_"):
            self._native = self._native_features() if native else None

    def _boosted(self, z_difficulty: FloatArray, clipped_dense: FloatArray) -> FloatArray:
        """Raw difficulty logits after the booster: the calibrated logit plus the trees' margin, mapped
        back through the calibration so that Platt scaling gives sigmoid(calibrated + margin)."""
        assert self.booster_ is not None
        platt = self.platt_[0]
        calibrated = platt.a * z_difficulty + platt.b
        margin = self.booster_.margins(np.column_stack([calibrated, clipped_dense]))
        result: FloatArray = z_difficulty + margin / platt.a
        return result

    def logits_one(self, text: str) -> tuple[float, float]:
        """Raw (uncalibrated) logits of both heads for one text."""
        native = self._native
        if native is None:
            return self._logits_one_numpy(text)
        # One C call: transform_one's features and the linear heads below, in the same order.
        focused = focus_final_item(text)
        z_difficulty, z_stakes, dense = native.logits(
            self.featurizer_.crop(focused.text), len(focused.text), focused.examples
        )
        if self._booster_unclipped is not None:
            platt = self.platt_[0]
            calibrated = platt.a * z_difficulty + platt.b
            z_difficulty += self._booster_unclipped.margin_one([calibrated, *dense]) / platt.a
        return z_difficulty, z_stakes

    def _logits_one_numpy(self, text: str) -> tuple[float, float]:
        """logits_one with numpy: the reference of the C extension's path."""
        indices, dense = self.featurizer_.transform_one(text)
        z_difficulty, z_stakes = self._bias_pair
        # A dozen clipped products: plain Python beats numpy's per-call overhead at this size.
        for value, (low, high, w_difficulty, w_stakes) in zip(dense, self._dense_rows, strict=True):
            clipped = low if value < low else high if value > high else value
            z_difficulty += clipped * w_difficulty
            z_stakes += clipped * w_stakes
        n = indices.shape[0]
        if n:
            if self._ones.shape[0] < n:
                self._ones = np.ones(max(n, 2 * self._ones.shape[0]), dtype=np.float32)
            # ones . rows sums the gathered rows; much faster than .sum(axis=0) on an (n, 2) gather.
            # np.dot calls the same BLAS routine as the @ operator (same sum, same rounding) with less
            # dispatch overhead.
            rows = self.hashed_weights_.take(indices, axis=0)
            hashed_difficulty, hashed_stakes = np.dot(self._ones[:n], rows).tolist()
            scale = 1.0 / math.sqrt(n)
            z_difficulty += hashed_difficulty * scale
            z_stakes += hashed_stakes * scale
        if self._booster_unclipped is not None:
            platt = self.platt_[0]
            calibrated = platt.a * z_difficulty + platt.b
            z_difficulty += self._booster_unclipped.margin_one([calibrated, *dense]) / platt.a
        return z_difficulty, z_stakes

    def decision_function(self, texts: Sequence[str]) -> FloatArray:
        """Raw logits, shape (n, 2): difficulty, stakes.

        With the C extension each text goes through logits_one, which is several times faster than the
        vectorised numpy path below and gives exactly what the service computes for a request."""
        self._check_fitted()
        if self._native is not None:
            return np.array([self.logits_one(text) for text in texts], dtype=np.float64).reshape(len(texts), 2)
        result = np.empty((len(texts), 2), dtype=np.float64)
        for start, stop in _chunks(texts):
            chunk = texts[start:stop]
            indices, owner, dense = self.featurizer_.transform_batch(chunk)
            n = len(chunk)
            counts = np.bincount(owner, minlength=n)
            scale = 1.0 / np.sqrt(np.maximum(counts, 1))
            gathered = self.hashed_weights_.take(indices, axis=0)
            clipped = np.clip(dense, self.dense_low_, self.dense_high_)
            z = self._bias + clipped @ self._dense_effective
            for head in range(2):
                z[:, head] += np.bincount(owner, weights=gathered[:, head], minlength=n) * scale
            if self.booster_ is not None:
                z[:, 0] = self._boosted(z[:, 0], clipped)
            result[start : start + n] = z
        return result

    def predict_proba(self, texts: Sequence[str]) -> FloatArray:
        """Calibrated probabilities, shape (n, 2): difficulty, stakes."""
        logits = self.decision_function(texts)
        difficulty, stakes = self.platt_
        return np.stack([difficulty.apply(logits[:, 0]), stakes.apply(logits[:, 1])], axis=1)

    def score_text(self, text: str) -> Scores:
        """Scores for one already-flattened text."""
        self._check_fitted()
        z_difficulty, z_stakes = self.logits_one(text)
        difficulty, stakes = self.platt_
        return Scores(difficulty.apply_one(z_difficulty), stakes.apply_one(z_stakes))

    def score_messages(self, messages: Sequence[Mapping[str, Any]]) -> Scores:
        """Scores for one chat request's messages: the hot path of the router."""
        return self.score_text(messages_to_text(messages))


def _chunks(texts: Sequence[str]) -> list[tuple[int, int]]:
    bounds = []
    start, chars = 0, 0
    for index, text in enumerate(texts):
        chars += min(len(text), CHUNK_CHARS)
        if index + 1 - start >= CHUNK_TEXTS or chars >= CHUNK_CHARS:
            bounds.append((start, index + 1))
            start, chars = index + 1, 0
    if start < len(texts):
        bounds.append((start, len(texts)))
    return bounds


_FEATURE_PARAM_NAMES = ("buckets_log2", "char_ngrams", "word_ngrams", "head_chars", "tail_chars", "char_min_non_ascii")
_PARAM_NAMES: tuple[str, ...] = (*_FEATURE_PARAM_NAMES, "C", "calibration_folds", "random_state")
