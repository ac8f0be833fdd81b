"""``mailroom trace``: an email's trace as a tree, from the span files or from Jaeger."""

from __future__ import annotations

import json
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any


def load_spans(data_dir: Path, ident: str, *, jaeger: str | None = None) -> list[dict[str, Any]]:
    """Every span of the traces that ``ident`` (message id or trace id) names."""
    if jaeger:
        return _from_jaeger(jaeger, ident)
    spans: list[dict[str, Any]] = []
    for path in sorted((data_dir / "traces").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.strip():
                spans.append(json.loads(line))
    traces = {
        s["trace_id"]
        for s in spans
        if s["trace_id"] == ident
        or s["attributes"].get("mailroom.message_id") == ident
        or s["attributes"].get("messaging.kafka.message.key") == ident
    }
    return [s for s in spans if s["trace_id"] in traces]


def _from_jaeger(base: str, trace_id: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{base.rstrip('/')}/api/traces/{trace_id}", timeout=10) as r:
        payload = json.load(r)
    spans = []
    for trace in payload.get("data", []):
        for span in trace["spans"]:
            parents = [
                ref["spanID"]
                for ref in span.get("references", [])
                if ref.get("refType") == "CHILD_OF"
            ]
            tags = {t["key"]: t["value"] for t in span.get("tags", [])}
            spans.append(
                {
                    "trace_id": span["traceID"],
                    "span_id": span["spanID"],
                    "parent_id": parents[0] if parents else None,
                    "name": span["operationName"],
                    "kind": tags.get("span.kind", ""),
                    "start": span["startTime"] * 1000,
                    "end": (span["startTime"] + span["duration"]) * 1000,
                    "status": "ERROR" if tags.get("error") else "OK",
                    "error": None,
                    "attributes": tags,
                }
            )
    return spans


def render(spans: list[dict[str, Any]], *, jaeger_ui: str) -> str:
    children: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    ids = {s["span_id"] for s in spans}
    for span in spans:
        parent = span["parent_id"] if span["parent_id"] in ids else None
        children[parent].append(span)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: s["start"]):
            a = span["attributes"]
            ms = (span["end"] - span["start"]) / 1e6 if span["end"] else 0.0
            bits = [f"{'  ' * depth}{span['name']}", f"{ms:.1f} ms"]
            for key in (
                "mailroom.stage",
                "mailroom.model",
                "mailroom.outcome",
                "mailroom.decision",
                "mailroom.retry.attempt",
            ):
                if a.get(key) not in (None, "", 0):
                    bits.append(f"{key.split('.', 1)[1]}={a[key]}")
            if span["status"] == "ERROR":
                bits.append(f"[red]error: {span.get('error') or ''}[/]")
            lines.append("  ".join(bits))
            walk(span["span_id"], depth + 1)

    walk(None, 0)
    for trace_id in sorted({s["trace_id"] for s in spans}):
        lines.append(f"trace {trace_id}: {jaeger_ui.rstrip('/')}/trace/{trace_id}")
    return "\n".join(lines)
