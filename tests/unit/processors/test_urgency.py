from __future__ import annotations

import pytest
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from processors.urgency import score_urgency

VADER = SentimentIntensityAnalyzer()


@pytest.mark.parametrize(
    ("body", "level", "cue"),
    [
        ("Our whole team is down, production is completely broken.", "critical", "outage"),
        ("Fix this or I will contact my lawyer and take legal action.", "critical", "legal_threat"),
        ("I can see other customers' invoices, this is a data breach.", "critical", "breach"),
        ("THIS IS UNACCEPTABLE. YOUR SERVICE IS TERRIBLE AND I HATE IT!!!", "critical", "shouting"),
        ("I need this by tomorrow, our audit deadline is Friday.", "high", "deadline"),
        ("I will cancel my subscription if this is not fixed.", "high", "cancellation"),
        (
            "This is the third time I am writing and nobody has answered.",
            "high",
            "repeated_contact",
        ),
        ("The export button is a bit confusing and annoying.", "medium", None),
        ("Thanks, I love the new dashboard. Just a small question about tags.", "low", None),
    ],
)
def test_urgency_levels(body: str, level: str, cue: str | None) -> None:
    result = score_urgency("Support", body, sentiment=VADER)
    assert result.level == level
    if cue:
        assert cue in result.cues
    assert -1.0 <= result.sentiment <= 1.0


def test_sentiment_sign_follows_the_text() -> None:
    happy = score_urgency("Thanks", "Wonderful service, thank you so much!", sentiment=VADER)
    angry = score_urgency("Awful", "Terrible, useless, the worst support ever.", sentiment=VADER)
    assert happy.sentiment > 0.5 > -0.5 > angry.sentiment
