"""``mailroom trace``: an email's trace as a tree, from the span files or from Jaeger."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

from rich.markup import escape

from streams.errors import TraceError

log = logging.getLogger("mailroom.trace")


def load_spans(data_dir: Path, ident: str, *, jaeger: str | None = None) -> list[dict[str, Any]]:
    """Every span of the traces that ``ident`` (message id or trace id) names. A line that
    is not a span (the last one of a worker killed mid-write, say) is skipped and counted."""
    if jaeger:
        return _from_jaeger(jaeger, ident)
    spans: list[dict[str, Any]] = []
    for path in sorted((data_dir / "traces").glob("*.jsonl")):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:  # a folder of that name, unreadable
            log.warning("%s: not read: %s", path, exc.strerror or exc)
            continue
        damaged = 0
        for line in text.splitlines():
            if line.strip():
                span = _span(line)
                if span is None:
                    damaged += 1
                else:
                    spans.append(span)
        if damaged:
            log.warning("%s: %d lines that are not spans skipped", path, damaged)
    traces = {
        s["trace_id"]
        for s in spans
        if s["trace_id"] == ident
        or s["attributes"].get("mailroom.message_id") == ident
        or s["attributes"].get("messaging.kafka.message.key") == ident
    }
    return [s for s in spans if s["trace_id"] in traces]


_SPAN_FIELDS = {"trace_id": str, "span_id": str, "name": str, "start": int, "attributes": dict}


def _span(line: str) -> dict[str, Any] | None:
    """A span of a span file's line, or None if the line is not one."""
    try:
        span = json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(span, dict):
        return None
    if any(not isinstance(span.get(k), kind) for k, kind in _SPAN_FIELDS.items()):
        return None
    span.setdefault("parent_id", None)
    span.setdefault("end", 0)
    span.setdefault("status", "OK")
    return span


def _from_jaeger(base: str, trace_id: str) -> list[dict[str, Any]]:
    url = f"{base.rstrip('/')}/api/traces/{urllib.parse.quote(trace_id, safe='')}"
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            payload = json.load(r)
        return _jaeger_spans(payload)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return []
        raise TraceError(f"Jaeger at {base} answered {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:  # refused, no such host, a timeout
        why = getattr(exc, "reason", None) or exc
        raise TraceError(f"Jaeger at {base} cannot be reached: {why}") from exc
    except ValueError as exc:  # not a URL; not JSON
        raise TraceError(f"Jaeger at {base}: {exc}") from exc
    except (KeyError, TypeError, AttributeError) as exc:
        raise TraceError(f"Jaeger at {base} answered what is not a trace: {exc!r}") from exc


def _jaeger_spans(payload: Any) -> list[dict[str, Any]]:
    spans = []
    for trace in payload.get("data") or []:
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
    shown: set[str] = set()

    def walk(roots: list[dict[str, Any]]) -> None:
        # by a stack, not recursion: a chain of thousands of spans is still a tree to print
        stack = [(span, 0) for span in _by_start(roots)][::-1]
        while stack:
            span, depth = stack.pop()
            if span["span_id"] in shown:
                continue
            shown.add(span["span_id"])
            lines.append(_line(span, depth))
            stack += [(child, depth + 1) for child in _by_start(children[span["span_id"]])][::-1]

    walk(children[None])
    for span in _by_start(spans):  # in a cycle of parents: no root leads to them
        if span["span_id"] not in shown:
            walk([span])
    for trace_id in sorted({s["trace_id"] for s in spans}):
        lines.append(f"trace {trace_id}: {jaeger_ui.rstrip('/')}/trace/{trace_id}")
    return "\n".join(lines)


def _by_start(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(spans, key=lambda s: s["start"])


def _line(span: dict[str, Any], depth: int) -> str:
    a = span["attributes"]
    ms = (span["end"] - span["start"]) / 1e6 if span["end"] else 0.0
    bits = [f"{'  ' * depth}{escape(str(span['name']))}", f"{ms:.1f} ms"]
    for key in (
        "mailroom.stage",
        "mailroom.model",
        "mailroom.outcome",
        "mailroom.decision",
        "mailroom.retry.attempt",
    ):
        if a.get(key) not in (None, "", 0):
            bits.append(f"{key.split('.', 1)[1]}={escape(str(a[key]))}")
    if span["status"] == "ERROR":  # an error's text may quote an email: no markup of it
        bits.append(f"[red]error: {escape(str(span.get('error') or ''))}[/]")
    return "  ".join(bits)
