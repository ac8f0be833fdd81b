"""Classify: a trained text model (TF-IDF + logistic regression, calibrated) -> category.

``train`` fits the model on labelled rows; ``classify`` asks a fitted model (anything with
``predict_proba`` and ``classes_``) for calibrated probabilities. Caching the fitted model
on disk is the runtime's business (``streams.models``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from importlib import resources
from typing import Any, Protocol

from processors.errors import Rejected
from processors.models import Classification
from topics.catalog import CATEGORIES

MODEL_NAME = "tfidf-logreg"


class TextModel(Protocol):
    classes_: Any

    def predict_proba(self, texts: Sequence[str]) -> Any: ...


def training_rows() -> list[dict[str, Any]]:
    """Our own labelled sample emails (``processors/data/training.jsonl``)."""
    text = resources.files("processors.data").joinpath("training.jsonl").read_text("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def text_of(subject: str, body: str) -> str:
    return f"{subject}\n{body}"


def train(rows: Iterable[dict[str, Any]], *, seed: int = 0) -> TextModel:
    """Fit TF-IDF (word 1-2 grams + char 3-5 grams) + calibrated logistic regression."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, make_pipeline

    rows = list(rows)
    texts = [text_of(str(r["subject"]), str(r["body_text"])) for r in rows]
    labels = [str(r["category"]) for r in rows]
    unknown = set(labels) - set(CATEGORIES)
    if unknown:
        raise Rejected(f"training rows have unknown categories: {sorted(unknown)}")
    features = FeatureUnion(
        [
            (
                "words",
                TfidfVectorizer(
                    ngram_range=(1, 2), sublinear_tf=True, min_df=1, stop_words="english"
                ),
            ),
            (
                "chars",
                TfidfVectorizer(
                    analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, min_df=2
                ),
            ),
        ]
    )
    classifier = CalibratedClassifierCV(
        LogisticRegression(C=4.0, max_iter=2000, random_state=seed), method="sigmoid", cv=5
    )
    model: TextModel = make_pipeline(features, classifier).fit(texts, labels)
    return model


def classify(subject: str, body: str, *, model: TextModel) -> Classification:
    """The most likely category with its calibrated probability and every category's score."""
    return classify_many([(subject, body)], model=model)[0]


def classify_many(emails: Sequence[tuple[str, str]], *, model: TextModel) -> list[Classification]:
    """``classify`` of each (subject, body), in one call of the model (a one-row call
    spends most of its time checking its input)."""
    texts = [text_of(subject, body) for subject, body in emails]
    if not all(t.strip() for t in texts):
        raise Rejected("nothing to classify: subject and body are empty")
    results = []
    for probabilities in model.predict_proba(texts):
        scores = {str(c): float(p) for c, p in zip(model.classes_, probabilities, strict=True)}
        category = max(scores, key=scores.__getitem__)
        results.append(
            Classification(category=category, confidence=scores[category], scores=scores)
        )
    return results


KEYWORDS = {
    "billing": ("invoice", "charge", "charged", "refund", "payment", "bill", "price", "receipt"),
    "technical": ("error", "crash", "bug", "broken", "not working", "fails", "slow", "server"),
    "account": ("password", "log in", "login", "account", "username", "profile", "locked"),
    "feature_request": ("feature", "would be great", "please add", "suggest", "would love"),
}
FALLBACK_MODEL = "keyword-rules"


def classify_keywords(subject: str, body: str) -> Classification:
    """The fallback: keyword counts, with a modest confidence so a person double-checks."""
    text = text_of(subject, body).lower()
    hits = {c: sum(text.count(word) for word in words) for c, words in KEYWORDS.items()}
    total = sum(hits.values())
    if total == 0:
        return Classification("other", 0.5, {c: 0.0 for c in CATEGORIES} | {"other": 0.5})
    category = max(hits, key=hits.__getitem__)
    scores = {c: round(0.6 * hits.get(c, 0) / total, 4) for c in CATEGORIES}
    return Classification(category, scores[category], scores)
