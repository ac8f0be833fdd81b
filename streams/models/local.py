"""The local models, loaded once per process: the classifier (a team's, trained with
``mailroom models train`` and named in the settings, or the built-in one, cached on disk by
content hash and trained on first use), VADER, the knowledge base, the brand guidelines."""

from __future__ import annotations

import hashlib
import inspect
import os
import pickle
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import sklearn

from processors import classify as classify_module
from processors.classify import TextModel, train, training_rows
from processors.kb import Index
from processors.quality import brand_phrases
from streams.errors import ModelMismatchError
from streams.models import trained
from streams.models.compiled import compile_model
from streams.models.knowledge import build_index
from streams.taxonomy import Taxonomy, load_taxonomy
from topics.catalog import CATEGORIES


def classifier_fingerprint() -> str:
    """Names the artifact: training data + training code + scikit-learn version."""
    digest = hashlib.sha256()
    digest.update(resources.files("processors.data").joinpath("training.jsonl").read_bytes())
    digest.update(inspect.getsource(classify_module).encode())
    digest.update(sklearn.__version__.encode())
    return digest.hexdigest()[:16]


def classifier_path(data_dir: Path) -> Path:
    return data_dir / "models" / f"classify-{classifier_fingerprint()}.pkl"


def train_classifier(data_dir: Path, *, force: bool = False) -> tuple[Path, bool]:
    """Train and store the classifier unless the same artifact exists. (path, trained?)"""
    path = classifier_path(data_dir)
    if path.exists() and not force:
        return path, False
    model = train(training_rows())
    path.parent.mkdir(parents=True, exist_ok=True)
    # Atomic: workers starting together never read a half-written file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as handle:
        pickle.dump(model, handle, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)
    return path, True


@dataclass
class LocalModels:
    """What the local processors need, built lazily and shared by all stages of a worker."""

    data_dir: Path
    taxonomy: Taxonomy = field(default_factory=load_taxonomy)
    classifier_id: str | None = None

    @cached_property
    def classifier(self) -> TextModel:
        """The classifier, compiled for scoring (``streams.models.compiled``: the same
        probabilities without scikit-learn's per-call overhead) where its shape allows."""
        model: TextModel
        if self.classifier_id:
            chosen = trained.load(self.data_dir, self.classifier_id)
            check_labels(f"model {chosen.id}", chosen.labels, self.taxonomy)
            model = chosen.model
        else:
            check_labels("the built-in classifier", list(CATEGORIES), self.taxonomy)
            path, _ = train_classifier(self.data_dir)
            with path.open("rb") as handle:
                model = pickle.load(handle)  # our own artifact, named by content hash
        compiled: TextModel = compile_model(model)
        return compiled

    @cached_property
    def kb(self) -> Index | None:
        built = build_index(self.data_dir, self.taxonomy)
        return built.index if built else None

    @cached_property
    def sentiment(self) -> Any:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        return SentimentIntensityAnalyzer()

    @cached_property
    def banned_phrases(self) -> tuple[str, ...]:
        own = self.taxonomy.brand.banned_phrases
        return tuple(p.lower() for p in own) if own else brand_phrases()


def check_labels(what: str, labels: list[str], taxonomy: Taxonomy) -> None:
    """A classifier must predict exactly the taxonomy's categories: refuse to start if not."""
    extra = sorted(set(labels) - set(taxonomy.names))
    missing = sorted(set(taxonomy.names) - set(labels))
    if not extra and not missing:
        return
    where = taxonomy.path or "the sample taxonomy"
    parts = []
    if extra:
        parts.append(f"{what} predicts labels {where} does not declare: {', '.join(extra)}")
    if missing:
        parts.append(f"{where} declares categories {what} never predicts: {', '.join(missing)}")
    raise ModelMismatchError(
        "; ".join(parts) + " (train on labels that match, or write the categories with "
        "`mailroom models train --taxonomy-out FILE`)"
    )
