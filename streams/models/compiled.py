"""A fitted text classifier's ``predict_proba`` without scikit-learn's per-call overhead.

Both classifiers mailroom trains (``processors.classify``, ``processors.textmodel``) are
``Pipeline(FeatureUnion(...), CalibratedClassifierCV(<linear model>, method="sigmoid"))``.
Asked for one email, that pipeline spent 7.3 ms on the bench machine, of which well under
a tenth is arithmetic: ``FeatureUnion`` goes through joblib even with one job, and each of
the calibrated models (five for the built-in classifier) checks its input again, makes a
``LabelEncoder`` and scores its classes one by one. ``compile_model`` reads the fitted
parts once (the feature transformers as they are, every linear model's weights and every
sigmoid's ``a`` and ``b`` side by side in one matrix) and scores a batch with one sparse
product, the same arithmetic as scikit-learn's. It is used only when it gives the same
probabilities as the model itself on probe texts (to 1e-9); for any other model shape,
or if it does not, the model is used as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

log = logging.getLogger("mailroom.models")

#: Texts both fast and slow paths score at load; they must agree on every one.
PROBES = (
    "I was charged twice for my subscription this month, please refund one charge",
    "The app crashes with error 500 every time I open the settings page",
    "I cannot log in to my account, the password reset link has expired",
    "It would be great if you could add a dark mode to the dashboard",
    "Thanks!",
    "x",
    "Grüße aus München: Rechnung Nr. 12345 ist doppelt abgebucht worden.",
)
TOLERANCE = 1e-9


class TermBlock:
    """A fitted ``TfidfVectorizer``'s part of the scores: its analyzer, vocabulary and idf
    applied to one text the way ``transform`` does, then straight into the weights."""

    def __init__(self, vectorizer: Any, weight: float) -> None:
        self.analyze = vectorizer.build_analyzer()
        self.vocabulary: dict[str, int] = vectorizer.vocabulary_
        self.binary = bool(vectorizer.binary)
        self.sublinear = bool(vectorizer.sublinear_tf)
        self.idf = np.asarray(vectorizer.idf_, dtype=float) if vectorizer.use_idf else None
        self.norm = vectorizer.norm
        self.weight = weight
        self.width = len(self.vocabulary)

    def vector(self, text: str) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """The text's column indices and tf-idf values (normalised, as ``transform``)."""
        counts: dict[int, int] = {}
        vocabulary = self.vocabulary
        for term in self.analyze(text):
            j = vocabulary.get(term)
            if j is not None:
                counts[j] = counts.get(j, 0) + 1
        index = np.fromiter(counts.keys(), dtype=np.intp, count=len(counts))
        if self.binary:
            value = np.ones(len(counts))
        else:
            value = np.fromiter(counts.values(), dtype=float, count=len(counts))
            if self.sublinear:
                value = np.log(value) + 1.0
        if self.idf is not None:
            value *= self.idf[index]
        if self.norm == "l2":
            length = np.sqrt(np.dot(value, value))
            if length > 0:
                value /= length
        elif self.norm == "l1":
            length = np.abs(value).sum()
            if length > 0:
                value /= length
        if self.weight != 1.0:
            value *= self.weight
        return index, value


class CompiledModel:
    """``predict_proba`` and ``classes_`` of a fitted pipeline of the shape above."""

    def __init__(
        self,
        blocks: list[tuple[Any, float]],
        weights: np.ndarray[Any, Any],
        intercepts: np.ndarray[Any, Any],
        a: np.ndarray[Any, Any],
        b: np.ndarray[Any, Any],
        columns: np.ndarray[Any, Any],
        members: int,
        classes: np.ndarray[Any, Any],
    ) -> None:
        """``blocks``: the union's transformers in order, a ``TermBlock`` for each TF-IDF
        one; ``weights``: every member's coefficients side by side (features x members
        times scored classes)."""
        self.blocks: list[tuple[Any, np.ndarray[Any, Any]]] = []
        start = 0
        for block, width in blocks:
            self.blocks.append((block, weights[start : start + int(width)]))
            start += int(width)
        if start != weights.shape[0]:
            raise ValueError(f"the features are {start} wide, the weights {weights.shape[0]}")
        self.intercepts = intercepts
        self.a, self.b = a, b
        self.columns = columns  # the class each scored column is the probability of
        self.members = members
        self.classes_ = classes

    def decision(self, texts: list[str]) -> np.ndarray[Any, Any]:
        """Every member's score of every class it scores, per text."""
        scores = np.tile(self.intercepts, (len(texts), 1))
        for block, weights in self.blocks:
            if isinstance(block, TermBlock):
                for i, text in enumerate(texts):
                    index, value = block.vector(text)
                    if len(index):
                        scores[i] += value @ weights[index]
            else:
                transformer, weight = block
                part = transformer.transform(texts)
                scores += np.asarray(part @ weights) * weight
        return scores

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray[Any, Any]:
        scores = self.decision(list(texts))
        calibrated = 1.0 / (1.0 + np.exp(self.a * scores + self.b))  # expit(-(a*T + b))
        n, k = scores.shape[0], len(self.classes_)
        proba = np.zeros((n, self.members, k))
        per = scores.shape[1] // self.members
        for m in range(self.members):
            cols = slice(m * per, (m + 1) * per)
            proba[:, m, self.columns[cols]] = calibrated[:, cols]
        if k == 2:
            proba[:, :, 0] = 1.0 - proba[:, :, 1]
        else:
            total = proba.sum(axis=2, keepdims=True)
            proba = np.divide(proba, total, out=np.full_like(proba, 1 / k), where=total != 0)
        proba[(proba > 1.0) & (proba <= 1.0 + 1e-5)] = 1.0
        mean: np.ndarray[Any, Any] = proba.mean(axis=1)
        return mean


def compile_model(model: Any) -> Any:
    """A ``CompiledModel`` giving ``model``'s probabilities, or ``model`` itself."""
    try:
        compiled = _compile(model)
    except Exception as exc:  # an unexpected shape: the model as it is
        log.debug("classifier not compiled: %r", exc)
        return model
    if compiled is None:
        return model
    try:
        expected = model.predict_proba(list(PROBES))
        found = compiled.predict_proba(list(PROBES))
        same = found.shape == expected.shape and np.allclose(
            found, expected, rtol=0, atol=TOLERANCE
        )
    except Exception as exc:
        log.warning("classifier not compiled: its fast path failed on a probe: %r", exc)
        return model
    if not same:
        log.warning("classifier not compiled: its fast path disagrees with the model")
        return model
    return compiled


def _compile(model: Any) -> CompiledModel | None:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.pipeline import FeatureUnion, Pipeline

    if not isinstance(model, Pipeline) or len(model.steps) != 2:
        return None
    union, calibrated = model.steps[0][1], model.steps[1][1]
    if not isinstance(union, FeatureUnion) or not isinstance(calibrated, CalibratedClassifierCV):
        return None
    if calibrated.method != "sigmoid":
        return None
    from sklearn.feature_extraction.text import TfidfVectorizer

    given = union.transformer_weights or {}
    blocks: list[tuple[Any, float]] = []
    for name, transformer in union.transformer_list:
        if isinstance(transformer, str) or transformer is None:
            return None  # "drop", "passthrough"
        weight = float(given.get(name, 1.0))
        if type(transformer) is TfidfVectorizer:
            term = TermBlock(transformer, weight)
            blocks.append((term, term.width))
        else:  # any other transformer (the WordLlama embeddings), asked as it is
            width = transformer.transform(["probe"]).shape[1]
            blocks.append(((transformer, weight), width))
    classes = np.asarray(calibrated.classes_)
    weights, intercepts, a, b, columns = [], [], [], [], []
    members = calibrated.calibrated_classifiers_
    per: int | None = None
    for member in members:
        estimator = member.estimator
        coef = np.asarray(estimator.coef_, dtype=float)
        intercept = np.asarray(estimator.intercept_, dtype=float).reshape(-1)
        if not hasattr(estimator, "decision_function") or coef.ndim != 2:
            return None
        if len(classes) == 2:
            if coef.shape[0] != 1:
                return None
            scored = np.array([1])  # the positive class's column
        else:
            scored = np.searchsorted(classes, np.asarray(estimator.classes_))
            if coef.shape[0] != len(scored):
                return None
        if len(member.calibrators) != coef.shape[0]:
            return None
        if per is None:
            per = coef.shape[0]
        elif per != coef.shape[0]:
            return None
        weights.append(coef.T)
        intercepts.append(intercept)
        a.append([c.a_ for c in member.calibrators])
        b.append([c.b_ for c in member.calibrators])
        columns.append(scored)
    return CompiledModel(
        blocks,
        np.ascontiguousarray(np.hstack(weights)),
        np.concatenate(intercepts),
        np.concatenate(a).astype(float),
        np.concatenate(b).astype(float),
        np.concatenate(columns),
        len(members),
        classes,
    )
