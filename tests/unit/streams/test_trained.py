"""``mailroom models train|eval`` on a team's own labelled tickets, any label set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.models import trained as models

ROWS = {
    "billing": ["I was charged twice", "refund my payment", "my invoice is wrong",
                "the price on my bill is too high", "cancel the duplicate charge"],
    "login": ["I cannot log in", "password reset does not work", "my account is locked",
              "two factor code never arrives", "login page shows an error"],
    "shipping": ["my parcel never arrived", "where is my order", "the delivery is late",
                 "tracking number does not work", "the package was damaged"],
}  # fmt: skip


def write_csv(path: Path, text: str = "text", label: str = "category") -> Path:
    lines = [f"{text},{label}"] + [f'"{t}",{y}' for y, ts in ROWS.items() for t in ts]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_train_then_eval_on_any_label_set_by_content_hash(tmp_path: Path) -> None:
    pairs = models.read_rows(write_csv(tmp_path / "t.csv"))
    model, fitted = models.train(tmp_path, pairs)
    assert fitted
    assert model.labels == ["billing", "login", "shipping"]
    again, fitted_again = models.train(tmp_path, pairs)
    assert (again.id, fitted_again) == (model.id, False)  # same rows, same model
    assert models.load(tmp_path).id == model.id  # the one trained last
    evaluation = models.evaluate(model, pairs, floor=0.0)
    assert evaluation.accuracy >= 0.9  # it learned its training rows
    figures = evaluation.as_json()
    assert set(figures) == {
        "accuracy",
        "macro_f1",
        "per_class",
        "automated_share",
        "automated_accuracy",
    }
    assert set(figures["per_class"]["login"]) == {"precision", "recall", "f1", "support"}
    assert figures["automated_share"] == 1.0  # floor 0: everything automated
    assert sum(count for *_, count in evaluation.calibration) == len(pairs)
    json.dumps(figures)


def test_json_lines_and_other_column_names(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(
        "".join(json.dumps({"body": t, "queue": y}) + "\n" for y, ts in ROWS.items() for t in ts)
    )
    assert len(models.read_rows(path, text="body", label="queue")) == 15


def test_json_lines_may_leave_a_field_out_or_give_a_number(tmp_path: Path) -> None:
    """A later line without the label raised KeyError: only the first line's were checked."""
    path = tmp_path / "t.jsonl"
    rows = [
        {"text": "refund me", "category": "billing"},
        {"text": "hi"},
        {"text": 7, "category": 1},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert models.read_rows(path) == [("refund me", "billing"), ("7", "1")]


def test_a_misnamed_column_of_a_ragged_csv_is_named(tmp_path: Path) -> None:
    """A row longer than the header raised TypeError while naming the columns."""
    path = tmp_path / "t.csv"
    path.write_text("txt,category\nhello,billing,extra\n")
    with pytest.raises(models.TrainingDataError, match="no column text; columns: category, txt"):
        models.read_rows(path)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("text,category\n", "no rows"),
        ("words,queue\nhello,a\n", "no column text, category"),
        ("text,category\n,billing\nhi,\n", "empty text or category"),
    ],
)
def test_bad_training_files_are_refused_with_what_is_wrong(
    tmp_path: Path, content: str, problem: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(models.TrainingDataError, match=problem):
        models.read_rows(path)


def test_too_few_examples_of_a_label_is_refused(tmp_path: Path) -> None:
    pairs = [("charged twice", "billing")] * 5 + [("cannot log in", "login")]
    with pytest.raises(models.TrainingDataError, match="at least 3 examples"):
        models.train(tmp_path, pairs)
