"""Classifiers trained on a team's own labelled tickets: ``mailroom models train|eval``.

Rows come from CSV or JSON lines (``--text`` and ``--label`` name the columns). A model is
named by the hash of what made it (the rows, the code, scikit-learn's version) and kept
in ``<data dir>/models/trained-<id>.pkl``; ``LATEST`` names the one trained last.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import pickle
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sklearn

from processors import textmodel
from processors.tables import columns, field_text, present, read_table
from streams.errors import MailroomError


class TrainingDataError(MailroomError):
    """A file of labelled rows that cannot be used as it is."""


def read_rows(path: Path, text: str = "text", label: str = "category") -> list[tuple[str, str]]:
    """(text, label) pairs from a CSV (with a header) or a JSON-lines file; ``text`` may
    name several columns (``subject,body``), joined by a line break as a worker joins an
    email's subject and body."""
    if not path.exists():
        raise TrainingDataError(f"{path}: no such file")
    rows = read_table(path, TrainingDataError)
    named = present(rows)
    texts = columns(text)
    missing = [c for c in (*texts, label) if c not in named]
    if missing:
        raise TrainingDataError(
            f"{path}: no column {', '.join(missing)}; columns: {', '.join(sorted(named))} "
            "(choose with --text and --label)"
        )
    pairs = [
        ("\n".join(field_text(r.get(c)) for c in texts).strip(), field_text(r.get(label)))
        for r in rows
    ]
    kept = [(t, y) for t, y in pairs if t and y]
    if not kept:
        raise TrainingDataError(f"{path}: every row has an empty {text} or {label}")
    return kept


def models_dir(data_dir: Path) -> Path:
    return data_dir / "models"


def model_id(pairs: list[tuple[str, str]]) -> str:
    digest = hashlib.sha256()
    for text, label in pairs:
        digest.update(text.encode() + b"\0" + label.encode() + b"\n")
    digest.update(inspect.getsource(textmodel).encode())
    digest.update(sklearn.__version__.encode())
    return digest.hexdigest()[:16]


@dataclass
class Trained:
    id: str
    labels: list[str]
    rows: int
    model: Any = field(repr=False)


def train(
    data_dir: Path, pairs: list[tuple[str, str]], *, force: bool = False
) -> tuple[Trained, bool]:
    """Fit (or find) the model of these rows; it becomes the one trained last."""
    ident = model_id(pairs)
    path = models_dir(data_dir) / f"trained-{ident}.pkl"
    fitted = False
    if force or not path.exists():
        try:
            model = textmodel.fit_text_model([t for t, _ in pairs], [y for _, y in pairs])
        except Exception as exc:  # Rejected: too few labels or examples
            raise TrainingDataError(str(exc)) from exc
        trained = Trained(ident, sorted(set(y for _, y in pairs)), len(pairs), model)
        _write(path, pickle.dumps(trained, protocol=pickle.HIGHEST_PROTOCOL))
        fitted = True
    (models_dir(data_dir) / "LATEST").write_text(ident + "\n")
    return load(data_dir, ident), fitted


def load(data_dir: Path, ident: str | None = None) -> Trained:
    """The model ``ident``, or the one trained last."""
    if ident is None:
        latest = models_dir(data_dir) / "LATEST"
        if not latest.exists():
            raise TrainingDataError(f"no trained model in {models_dir(data_dir)}: run models train")
        ident = latest.read_text().strip()
    path = models_dir(data_dir) / f"trained-{ident}.pkl"
    if not path.exists():
        known = sorted(
            p.stem.removeprefix("trained-") for p in models_dir(data_dir).glob("trained-*.pkl")
        )
        raise TrainingDataError(f"no model {ident}; trained: {', '.join(known) or 'none'}")
    with path.open("rb") as handle:
        trained: Trained = pickle.load(handle)  # our own artifact, named by content hash
    return trained


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


@dataclass
class Evaluation:
    accuracy: float
    macro_f1: float
    per_class: dict[str, dict[str, float]]
    automated_share: float
    automated_accuracy: float
    floor: float
    confusions: list[tuple[str, str, int]]  # (true, predicted, count), most frequent first
    calibration: list[tuple[float, float, float, int]]  # (low, high, accuracy, count)
    confusion: Any = field(repr=False)
    labels: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "per_class": self.per_class,
            "automated_share": self.automated_share,
            "automated_accuracy": self.automated_accuracy,
        }


def evaluate(trained: Trained, pairs: list[tuple[str, str]], floor: float) -> Evaluation:
    """Accuracy, macro-F1, per class; at the confidence floor, the share automated and
    how often those are right; a calibration table in tenths of confidence."""
    from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

    texts, truth = [t for t, _ in pairs], [y for _, y in pairs]
    probabilities = trained.model.predict_proba(texts)
    classes = list(trained.model.classes_)
    best = probabilities.argmax(axis=1)
    predicted = [str(classes[i]) for i in best]
    confidence = [float(probabilities[n, i]) for n, i in enumerate(best)]
    correct = [p == t for p, t in zip(predicted, truth, strict=True)]
    labels = sorted(set(truth) | set(predicted))
    report = classification_report(
        truth, predicted, labels=labels, output_dict=True, zero_division=0
    )
    per_class = {
        label: {
            "precision": float(report[label]["precision"]),
            "recall": float(report[label]["recall"]),
            "f1": float(report[label]["f1-score"]),
            "support": float(report[label]["support"]),
        }
        for label in labels
    }
    automated = [ok for conf, ok in zip(confidence, correct, strict=True) if conf >= floor]
    confusions: Counter[tuple[str, str]] = Counter(
        (t, p) for t, p in zip(truth, predicted, strict=True) if t != p
    )
    return Evaluation(
        accuracy=float(accuracy_score(truth, predicted)),
        macro_f1=float(f1_score(truth, predicted, labels=labels, average="macro", zero_division=0)),
        per_class=per_class,
        automated_share=len(automated) / len(pairs),
        automated_accuracy=sum(automated) / len(automated) if automated else 0.0,
        floor=floor,
        confusions=[(t, p, n) for (t, p), n in confusions.most_common(10)],
        calibration=calibration(confidence, correct),
        confusion=confusion_matrix(truth, predicted, labels=labels),
        labels=labels,
    )


def calibration(
    confidence: list[float], correct: list[bool]
) -> list[tuple[float, float, float, int]]:
    """(low, high, accuracy, count) for each tenth of confidence that holds predictions."""
    table = []
    for tenth in range(10):
        low, high = tenth / 10, (tenth + 1) / 10
        inside = [
            ok
            for conf, ok in zip(confidence, correct, strict=True)
            if low <= conf < high or (tenth == 9 and conf >= 1.0)
        ]
        if inside:
            table.append((low, high, sum(inside) / len(inside), len(inside)))
    return table


def plot(evaluation: Evaluation, path: Path) -> None:
    """A PNG: the confusion matrix and the reliability curve."""
    try:
        import matplotlib
    except ImportError as exc:
        raise TrainingDataError("--plot needs matplotlib: pip install matplotlib") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(14, 6))
    left.imshow(evaluation.confusion, cmap="Blues")
    left.set_title("confusion matrix (rows: true, columns: predicted)")
    if len(evaluation.labels) <= 20:
        ticks = range(len(evaluation.labels))
        left.set_xticks(ticks, evaluation.labels, rotation=90, fontsize=7)
        left.set_yticks(ticks, evaluation.labels, fontsize=7)
    mids = [(low + high) / 2 for low, high, _, _ in evaluation.calibration]
    right.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
    right.plot(mids, [a for _, _, a, _ in evaluation.calibration], marker="o", label="model")
    right.axvline(evaluation.floor, color="red", linestyle=":", label=f"floor {evaluation.floor}")
    right.set_xlabel("confidence")
    right.set_ylabel("accuracy")
    right.set_title("reliability")
    right.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
