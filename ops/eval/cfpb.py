"""The CFPB complaints (../shared/data/cfpb_consumer_complaints): real consumers' words,
answered by a consumer-finance company's support with a knowledge base written for this
eval (``ops/eval/cfpb/kb``: seventeen vetted answers, by product and issue).

A fixed stratified 25% (by product, seed 0) is held out; the rest trains the product
classifier. The held-out complaints go through every stage: the share answered, the
escalations by reason, and every complaint the urgency scorer calls critical escalated.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from ops.eval.common import (
    DATA,
    Outcome,
    classifier,
    email,
    mailroom,
    read_csv,
    reasons,
    run_emails,
    split,
)
from streams.settings import Settings

FILE = DATA / "cfpb_consumer_complaints" / "cfpb_complaints_with_narratives.csv"
KB = Path(__file__).resolve().parent / "cfpb" / "kb"
MIN_ROWS = 20  # products with fewer complaints are one class, "Other products"
TEAM = """
[company]
name = "Consumer Finance Support"
support_address = "support@example.com"

[brand]
greeting = "Dear {{customer_name}},"
anonymous_greeting = "Dear customer,"
sign_off = "Sincerely,\\nConsumer Support"

[escalation]
confidence_floor = 0.6

[kb]
source = "{source}"
relevance_floor = 0.3
languages = ["en"]
"""


def run(work: Path) -> tuple[dict[str, Any], list[Outcome]]:
    rows = read_csv(FILE)
    sizes = Counter(r["Product"] for r in rows)
    table = [
        {
            "text": r["Consumer complaint narrative"],
            "product": r["Product"] if sizes[r["Product"]] >= MIN_ROWS else "Other products",
        }
        for r in rows
    ]
    train, test = split(table, "product")
    products = classifier(work, "cfpb", train, test, "--label", "product")
    config = work / "cfpb.toml"
    config.write_text(products.categories.read_text() + TEAM.format(source=KB))
    mailroom(work, "kb", "index", MAILROOM_CONFIG=str(config))
    settings = Settings(data_dir=work, tracing=False, config=config, classifier=products.model)
    outcomes = run_emails(settings, [email(n, "Complaint", r["text"]) for n, r in enumerate(test)])
    critical = [o for o in outcomes if o.urgency == "critical"]
    figures = {
        "cfpb product macro-F1": products.figures["macro_f1"],
        "cfpb answered share": sum(o.kind == "sent" for o in outcomes) / len(outcomes),
        "cfpb critical complaints": len(critical),
        "cfpb critical complaints escalated": sum(o.kind == "escalated" for o in critical),
        "cfpb escalated by reason": reasons(outcomes),
    }
    return figures, outcomes
