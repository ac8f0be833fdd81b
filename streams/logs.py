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

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
CARD = re.compile(r"\b\d(?:[ -]?\d){12,18}\b")
PHONE = re.compile(r"(?<![\w-])\+?\d[\d ()./-]{7,}\d\b")

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


def redact(text: str) -> str:
    """Addresses, card numbers and phone numbers out of free text."""
    text = EMAIL.sub("<email>", text)
    text = CARD.sub("<card>", text)
    return PHONE.sub("<phone>", text)


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
