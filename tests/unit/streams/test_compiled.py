"""The classifier's fast path gives the fitted model's own probabilities, on real text."""

from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from processors.classify import classify_many, train, training_rows
from processors.textmodel import fit_text_model
from streams.models.compiled import CompiledModel, compile_model
from streams.models.local import LocalModels

SAME = 1e-9  # what compile_model itself asks of a probe


def real_texts(shared: Path, per_file: int = 200) -> list[str]:
    """Subjects and bodies of support tickets, consumer complaints and banking questions."""
    found: list[str] = []
    files = (
        ("tobi_bueck_customer_support_tickets/tickets_v4_en.csv", ("subject", "body")),
        ("cfpb_consumer_complaints/cfpb_complaints_with_narratives.csv",
         ("Issue", "Consumer complaint narrative")),
        ("banking77/test.csv", ("text",)),
    )  # fmt: skip
    for name, columns in files:
        with (shared / name).open(newline="", encoding="utf-8") as handle:
            for n, row in enumerate(csv.DictReader(handle)):
                if n >= per_file:
                    break
                found.append("\n".join(row.get(c) or "" for c in columns))
    return found


@pytest.fixture(scope="module")
def builtin() -> Any:
    return train(training_rows())


def test_the_built_in_classifier_scores_real_email_as_scikit_learn_does(
    builtin: Any, shared_data: Path
) -> None:
    compiled = compile_model(builtin)
    assert isinstance(compiled, CompiledModel)
    texts = [*real_texts(shared_data), "", "   ", "zzzz qqqq", "ÄÖÜ ß 日本語のメール"]
    expected = builtin.predict_proba(texts)
    found = compiled.predict_proba(texts)
    assert found.shape == expected.shape == (len(texts), len(builtin.classes_))
    assert np.abs(found - expected).max() <= SAME
    assert list(compiled.classes_) == list(builtin.classes_)
    # what the stage reads of it: the same category and confidence per email
    emails = [(t.split("\n")[0], t) for t in texts if t.strip()]
    for fast, slow in zip(
        classify_many(emails, model=compiled), classify_many(emails, model=builtin), strict=True
    ):
        assert fast.category == slow.category
        assert abs(fast.confidence - slow.confidence) <= SAME


def test_a_teams_model_with_embeddings_scores_as_scikit_learn_does(shared_data: Path) -> None:
    with (shared_data / "banking77/train.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    labels = sorted({r["category"] for r in rows})[:8]
    chosen = [r for r in rows if r["category"] in labels]
    random.Random(0).shuffle(chosen)
    chosen = chosen[:400]
    model = fit_text_model([r["text"] for r in chosen], [r["category"] for r in chosen])
    compiled = compile_model(model)
    assert isinstance(compiled, CompiledModel)
    texts = real_texts(shared_data, per_file=60)
    assert np.abs(compiled.predict_proba(texts) - model.predict_proba(texts)).max() <= SAME


def test_a_model_of_two_labels_scores_as_scikit_learn_does(shared_data: Path) -> None:
    texts = real_texts(shared_data, per_file=40)
    labels = ["long" if len(t) > 200 else "short" for t in texts]
    model = fit_text_model(texts, labels, embeddings=False)
    compiled = compile_model(model)
    assert isinstance(compiled, CompiledModel)
    assert np.abs(compiled.predict_proba(texts) - model.predict_proba(texts)).max() <= SAME


def test_a_model_of_another_shape_is_used_as_it_is(builtin: Any) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    rows = training_rows()
    texts = [f"{r['subject']}\n{r['body_text']}" for r in rows]
    plain = make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=500))
    plain.fit(texts, [r["category"] for r in rows])
    assert compile_model(plain) is plain


def test_a_fast_path_that_disagrees_with_its_model_is_not_used(builtin: Any) -> None:
    class Nudged(type(builtin)):  # type: ignore[misc]
        """The same pipeline, whose own answers differ from its parts' arithmetic."""

        def predict_proba(self, texts: Any) -> Any:
            return super().predict_proba(texts) * 0.999 + 0.001 / len(self.classes_)

    nudged = Nudged(builtin.steps)
    assert compile_model(nudged) is nudged


def test_the_workers_classifier_is_the_compiled_one(tmp_path: Path) -> None:
    models = LocalModels(tmp_path)
    assert isinstance(models.classifier, CompiledModel)
