"""What every part of the eval shares: the data folder, the CLI as a user runs it, a fixed
stratified split, and the pipeline's stages run in-process over a list of emails."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.settings import Settings
from streams.stages.inline import Inline
from topics import catalog
from topics.codec import Codec

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("MAILROOM_SHARED_DATA", ROOT.parent / "shared" / "data"))
SEED = 0
#: what mailroom sent before the knowledge base: one template whatever the email said
BOILERPLATE = (
    "Dear customer,\n\nThank you for your message. We have received your message and will "
    "follow up if we need anything.\n\nKind regards,\nThe Support Team"
)


def mailroom(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``mailroom <args>`` in a subprocess, as a user runs it; fails the eval if it fails."""
    run = subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        env={**os.environ, "MAILROOM_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1", **env},
        capture_output=True,
        text=True,
    )
    if run.returncode != 0:
        raise SystemExit(f"mailroom {' '.join(args)} failed:\n{run.stdout}{run.stderr}")
    return run


@dataclass(frozen=True)
class Classifier:
    model: str  # its id
    categories: Path  # the [[categories]] `--taxonomy-out` wrote for its labels
    figures: dict[str, Any]  # what `models eval --json` wrote


def classifier(
    work: Path, name: str, train: list[dict[str, str]], test: list[dict[str, str]], *columns: str
) -> Classifier:
    """``models train`` on ``train`` and ``models eval`` on ``test``, as a user runs them;
    ``columns``: their ``--text``/``--label`` options."""
    train_csv = write_csv(work / f"{name}-train.csv", train)
    test_csv = write_csv(work / f"{name}-test.csv", test)
    categories = work / f"{name}-categories.toml"
    trained = mailroom(
        work,
        "models",
        "train",
        "--data",
        str(train_csv),
        *columns,
        "--taxonomy-out",
        str(categories),
    )
    figures = work / f"{name}-eval.json"
    mailroom(work, "models", "eval", "--data", str(test_csv), *columns, "--json", str(figures))
    return Classifier(trained.stdout.split()[1], categories, json.loads(figures.read_text()))


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def split(
    rows: list[dict[str, str]], label: str, test_size: float = 0.25
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """A fixed stratified split (seed 0): the same rows on every run and every machine."""
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(
        rows, test_size=test_size, stratify=[r[label] for r in rows], random_state=SEED
    )
    return list(train), list(test)


def email(n: int, subject: str, body: str, sender: str = "customer@example.com") -> dict[str, Any]:
    return {
        "message_id": f"<eval-{n}@example.com>",
        "received_at": 1_795_000_000_000 + n,
        "sender": sender,
        "recipient": "support@example.com",
        "subject": subject,
        "body_text": body,
        "body_html": None,
        "headers": {},
        "in_reply_to": None,
        "attachments": [],
        "source": "eval",
    }


@dataclass
class Outcome:
    email: dict[str, Any]
    kind: str  # sent, escalated, ignored
    record: dict[str, Any] = field(default_factory=dict)
    urgency: str | None = None

    @property
    def reason(self) -> str:
        return str(self.record.get("reason") or self.kind)

    def sources(self) -> list[str]:
        """The vetted answers the sent reply names in its decision path."""
        for d in reversed(self.record.get("decisions", [])):
            if d["stage"] == "generate" and "answers " in d["detail"]:
                listed = d["detail"].split("answers ", 1)[1].split(";", 1)[0]
                return [s.strip() for s in listed.split(",") if s.strip() != "none"]
        return []


def run_emails(settings: Settings, emails: list[dict[str, Any]]) -> list[Outcome]:
    """Every email through every stage, in one process; one outcome each."""

    async def go() -> list[Outcome]:
        pipeline = Inline(settings)
        outcomes = []
        try:
            for one in emails:
                outcome = Outcome(one, "none")
                for output in await pipeline.run(one):
                    if output.topic == catalog.SCORED:
                        ticket = Codec("Ticket").decode(output.value)
                        outcome.urgency = (ticket["urgency"] or {}).get("level")
                    elif output.topic == catalog.RESPONSES:
                        outcome.kind = "sent"
                        outcome.record = Codec("Response").decode(output.value)
                    elif output.topic == catalog.ESCALATIONS:
                        outcome.kind = "escalated"
                        outcome.record = Codec("Escalation").decode(output.value)
                    elif output.topic == catalog.IGNORED:
                        outcome.kind = "ignored"
                outcomes.append(outcome)
        finally:
            await pipeline.close()
        return outcomes

    return asyncio.run(go())


def reasons(outcomes: list[Outcome]) -> dict[str, int]:
    return dict(Counter(o.reason for o in outcomes if o.kind != "sent").most_common())


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 by the rouge-score package (Google's reference implementation)."""
    return float(_scorer().score(reference, candidate)["rougeL"].fmeasure)


_SCORER: Any = None


def _scorer() -> Any:
    global _SCORER
    if _SCORER is None:
        from rouge_score import rouge_scorer

        _SCORER = rouge_scorer.RougeScorer(["rougeL"])
    return _SCORER
