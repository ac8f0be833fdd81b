from __future__ import annotations

import csv
import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from processors.classify import classify, train, training_rows
from processors.errors import Rejected
from topics.catalog import CATEGORIES


@pytest.fixture(scope="module")
def model() -> Any:
    return train(training_rows())


def test_training_set_is_ours_varied_and_balanced() -> None:
    rows = training_rows()
    assert len(rows) >= 400
    assert {r["category"] for r in rows} == set(CATEGORIES)
    assert len({r["body_text"] for r in rows}) >= 0.95 * len(rows)


@pytest.mark.parametrize(
    ("subject", "body", "category"),
    [
        (
            "Double charge",
            "You charged my card twice for invoice INV-2231, please refund.",
            "billing",
        ),
        (
            "App crash",
            "The desktop client crashes with error E1023 whenever I export.",
            "technical",
        ),
        ("Login", "I cannot log in, the password reset email never arrives.", "account"),
        ("Idea", "It would be great if you added a dark mode to the dashboard.", "feature_request"),
        ("Visit", "Do you have an office in Lisbon? I would like to visit.", "other"),
    ],
)
def test_clear_emails_get_their_category(
    model: Any, subject: str, body: str, category: str
) -> None:
    result = classify(subject, body, model=model)
    assert result.category == category
    assert result.confidence == max(result.scores.values())
    assert sum(result.scores.values()) == pytest.approx(1.0, abs=1e-6)


def test_holdout_accuracy(model: Any) -> None:
    text = resources.files("processors.data").joinpath("holdout.jsonl").read_text()
    rows = [json.loads(line) for line in text.splitlines()]
    right = sum(
        classify(r["subject"], r["body_text"], model=model).category == r["category"] for r in rows
    )
    assert right / len(rows) >= 0.95


MAPPING = {
    "Billing and Payments": "billing",
    "Technical Support": "technical",
    "Product Support": "technical",
    "IT Support": "technical",
    "Service Outages and Maintenance": "technical",
    "Returns and Exchanges": "other",
    "Sales and Pre-Sales": "other",
    "General Inquiry": "other",
}


def test_accuracy_on_real_world_tickets_nobody_on_the_team_wrote(
    model: Any, shared_data: Path
) -> None:
    """Tobi Bueck's support tickets (CC BY-NC 4.0), read from ../shared/data, never copied.

    Measured 0.662 with this training set; the floor guards against regressions.
    """
    path = shared_data / "tobi_bueck_customer_support_tickets" / "tickets_v4_en.csv"
    with path.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["queue"] in MAPPING]
    right = sum(
        classify(r["subject"], r["body"], model=model).category == MAPPING[r["queue"]] for r in rows
    )
    assert right / len(rows) >= 0.6


def test_empty_text_is_rejected(model: Any) -> None:
    with pytest.raises(Rejected, match="nothing to classify"):
        classify("", "  ", model=model)
