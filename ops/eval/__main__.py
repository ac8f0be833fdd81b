"""``make eval`` / ``python -m ops.eval [--json PATH] [--only PART ...]``: quality on real
public data, read from ``../shared/data`` at run time (never copied), through the commands
a user runs (``models train|eval``, ``kb index``) and every stage of the pipeline.

- banking77: 77 intents, the official train -> test split;
- the support tickets: queues, urgency against priority, and replies against the agents'
  answers (``ops/eval/tickets.py``);
- the cascade: paid calls and cost per 100 tickets with and without it
  (``ops/eval/cascade.py``);
- the CFPB complaints: products, the share answered from a consumer-finance knowledge
  base, escalations by reason, critical complaints escalated (``ops/eval/cfpb.py``).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ops.eval import cascade, cfpb, tickets
from ops.eval.common import DATA, ROOT, mailroom

PARTS = ("banking77", "tickets", "cascade", "cfpb")
#: (measure, bar, higher is better)
BARS: dict[str, tuple[float, bool]] = {
    "banking77 macro-F1": (0.93, True),
    "tickets answered share": (0.60, True),
    "tickets ROUGE-L of sent replies": (0.28, True),
    "tickets ungrounded statements in sent replies": (0, False),
    "cascade: paid calls saved": (0.40, True),
}


def banking77(work: Path) -> dict[str, Any]:
    folder = DATA / "banking77"
    began = time.monotonic()
    mailroom(work, "models", "train", "--data", str(folder / "train.csv"))
    trained_s = time.monotonic() - began
    figures = work / "banking77.json"
    mailroom(work, "models", "eval", "--data", str(folder / "test.csv"), "--json", str(figures))
    result = json.loads(figures.read_text())
    return {
        "banking77 macro-F1": result["macro_f1"],
        "banking77 accuracy": result["accuracy"],
        "banking77 automated share at 0.8": result["automated_share"],
        "banking77 accuracy of the automated": result["automated_accuracy"],
        "banking77 training seconds": round(trained_s, 1),
    }


def ungrounded(run: tickets.TicketsRun) -> int:
    """Statements of sent replies that neither the email nor the answers it names state."""
    from processors.grounding import ungrounded as findings
    from streams.models.knowledge import build_index

    built = build_index(run.settings.data_dir, run.settings.taxonomy)
    company = run.settings.taxonomy.company
    total = 0
    for outcome in (o for o in run.outcomes if o.kind == "sent"):
        answers = [built.index.get(i) for i in outcome.sources()] if built else []
        total += len(
            findings(
                outcome.record["body"],
                email_text=f"{outcome.email['subject']}\n{outcome.email['body_text']}",
                sources=[a.text for a in answers if a is not None],
                allowed=[*company.allowed(), *company.slots().values()],
            )
        )
    return total


def shown(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items()) or "none"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", type=Path, default=ROOT / ".eval" / "results.json")
    parser.add_argument("--only", nargs="*", choices=PARTS, default=list(PARTS))
    args = parser.parse_args()
    logging.getLogger("mailroom").setLevel(logging.WARNING)  # absl turns the root to INFO
    if not DATA.exists():
        raise SystemExit(f"no shared data at {DATA} (set MAILROOM_SHARED_DATA)")
    began = time.monotonic()
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        if "banking77" in args.only:
            figures.update(banking77(work))
        if "tickets" in args.only or "cascade" in args.only:
            run = tickets.run(work)
            figures.update(run.figures)
            figures["tickets ungrounded statements in sent replies"] = ungrounded(run)
            if "cascade" in args.only:
                figures.update(cascade.run(run))
        if "cfpb" in args.only:
            figures.update(cfpb.run(work)[0])
    figures["eval seconds"] = round(time.monotonic() - began, 1)
    table = Table("measure", "value", "bar", "met", title="mailroom eval (one run)")
    failed = []
    for name, value in figures.items():
        bar, higher = BARS.get(name, (None, True))
        met = ""
        if bar is not None:
            met = "yes" if (value >= bar if higher else value <= bar) else "NO"
        if met == "NO":
            failed.append(name)
        limit = "" if bar is None else (f">= {bar}" if higher else f"<= {bar}")
        table.add_row(name, shown(value), limit, met)
    Console().print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=1))
    if failed:
        raise SystemExit(f"below the bar: {', '.join(failed)}")


if __name__ == "__main__":
    main()
