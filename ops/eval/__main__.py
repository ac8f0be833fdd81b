"""``make eval`` / ``python -m ops.eval [--json PATH]``: quality on real public data, read
from ``../shared/data`` at run time (never copied), through the same commands a user runs.

So far: banking77 (77 intents; the official train -> test split), trained and evaluated
with ``mailroom models train`` and ``mailroom models eval``. The support tickets and the
CFPB complaints (answers against the agents', the share answered, escalations) come with
the knowledge base.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("MAILROOM_SHARED_DATA", ROOT.parent / "shared" / "data"))
BAR = {"banking77 macro-F1": 0.93}


def mailroom(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MAILROOM_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "streams.cli", *args], env=env, capture_output=True, text=True
    )
    if run.returncode != 0:
        raise SystemExit(f"mailroom {' '.join(args)} failed:\n{run.stdout}{run.stderr}")
    return run


def banking77(work: Path) -> dict[str, float]:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", type=Path, default=ROOT / ".eval" / "results.json")
    args = parser.parse_args()
    if not DATA.exists():
        raise SystemExit(f"no shared data at {DATA} (set MAILROOM_SHARED_DATA)")
    with tempfile.TemporaryDirectory() as work:
        figures = banking77(Path(work))
    table = Table("measure", "value", "bar", "met", title="mailroom eval (one run)")
    failed = []
    for name, value in figures.items():
        bar = BAR.get(name)
        met = "" if bar is None else ("yes" if value >= bar else "NO")
        if met == "NO":
            failed.append(name)
        table.add_row(
            name,
            f"{value:.4f}" if value < 10 else f"{value}",
            "" if bar is None else f">= {bar}",
            met,
        )
    Console().print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=1))
    if failed:
        raise SystemExit(f"below the bar: {', '.join(failed)}")


if __name__ == "__main__":
    main()
