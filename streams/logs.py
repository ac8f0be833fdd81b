"""JSON log lines, one per model call and per routing decision, with the trace ids.

Email bodies are never logged unless ``MAILROOM_LOG_PAYLOADS`` is on; addresses, phone and
card numbers in any logged text are redacted by default.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

from opentelemetry import trace

# What must never be rewritten, tried first at each position: addresses of hosts, ports,
# offsets, partitions and ids are what an operator reads a log for.
_KEEP = (
    r"(?P<uuid>\b[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\b)",
    # IPv6 with '::' or all eight groups, optionally bracketed with a port: [::1]:9092
    r"(?P<ipv6>\[?(?<![\w:.])(?:(?=[0-9a-fA-F:.]*::)(?:[0-9a-fA-F]{0,4}:){2,7}"
    r"(?:[0-9a-fA-F]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?|(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4})"
    r"(?:\](?::\d{1,5})?)?)",
    r"(?P<ipv4>\b(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?\b)",
    # trace, span and other hex ids
    r"(?P<hexid>\b(?=[0-9a-fA-F]*[a-fA-F])(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{16,}\b)",
    # a number named for what it is: offset 123, partition=4, pid 4711, [3]@12345
    r"(?P<named>\b(?:offsets?|partitions?|port|pid|generation|epoch|attempt|id|ids|"
    r"trace_id|span_id|seq|sequence|ms|bytes)\b[\s=:#]*\[?\d[\d,]*\]?|\[\d+\]@\d+|@\d+\b)",
)
_REDACT = (
    r"(?P<email>[\w.+-]+@[\w-]+(?:\.[\w-]+)+)",
    r"(?P<card>(?<![\w.-])\d(?:[ -]?\d){12,18}(?![\w.-]))",
    # (415) 555-0199; +44 20 7946 0958; 555.123.4567; +4930123456; 0412345678
    r"(?P<phone>(?<![\w.:/+-])(?:\(\d{2,4}\)[ .-]?\d{2,4}(?:[ .-]\d{2,4}){1,3}"
    r"|\+?\d{1,4}(?:[ .-]\(?\d{2,4}\)?){2,5}|\+\d{8,15}|\d{10,12})(?![\w:/-]|\.\d))",
)
_PATTERN = re.compile("|".join(_KEEP + _REDACT))


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _replace(match: re.Match[str]) -> str:
    kind, text = match.lastgroup, match.group()
    if kind == "email":
        return "<email>"
    digits = "".join(ch for ch in text if ch.isdigit())
    if kind == "card" and _luhn(digits):
        return "<card>"
    if kind == "phone" and 9 <= len(digits) <= 15:
        return "<phone>"
    return text  # kept: an address, a port, an offset, an id, or not a card or phone after all


def redact(text: str) -> str:
    """Addresses, card numbers (Luhn-checked) and phone numbers out of free text; IP
    addresses, ports, offsets, partitions and ids stay as they are."""
    return _PATTERN.sub(_replace, text)


#: Fields a JSON line may carry, in this order.
FIELDS = (
    "event",
    "stage",
    "model",
    "message_id",
    "latency_ms",
    "input_size",
    "outcome",
    "decision",
    "error_type",
    "error",
    "traceback",
)


class JsonFormatter(logging.Formatter):
    def __init__(self, *, payloads: bool = False) -> None:
        super().__init__()
        self.payloads = payloads

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            line["trace_id"] = f"{span.trace_id:032x}"
            line["span_id"] = f"{span.span_id:016x}"
        for name in FIELDS:
            if hasattr(record, name):
                line[name] = getattr(record, name)
        if self.payloads and hasattr(record, "payload"):
            line["payload"] = record.payload
        if record.exc_info and "traceback" not in line:
            line["error_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            line["traceback"] = self.formatException(record.exc_info)
        if not self.payloads:
            for key in ("msg", "error", "traceback"):
                if isinstance(line.get(key), str):
                    line[key] = redact(line[key])
        return json.dumps(line, default=str)


def setup_logging(*, payloads: bool = False, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(payloads=payloads))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
