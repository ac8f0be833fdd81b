"""The local models, loaded once per process: the trained classifier (cached on disk by
content hash, trained on first use), VADER, the brand guidelines."""

from __future__ import annotations

import hashlib
import inspect
import os
import pickle
import tempfile
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import sklearn

from processors import classify as classify_module
from processors.classify import TextModel, train, training_rows
from processors.quality import brand_phrases


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

    @cached_property
    def classifier(self) -> TextModel:
        path, _ = train_classifier(self.data_dir)
        with path.open("rb") as handle:
            model: TextModel = pickle.load(handle)  # our own artifact, named by content hash
        return model

    @cached_property
    def sentiment(self) -> Any:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        return SentimentIntensityAnalyzer()

    @cached_property
    def banned_phrases(self) -> tuple[str, ...]:
        return brand_phrases()
