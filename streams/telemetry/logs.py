"""JSON log lines, one per model call and per routing decision, with the trace ids.

Email bodies are never logged unless ``MAILROOM_LOG_PAYLOADS`` is on; addresses, phone and
card numbers in any logged text are redacted by default.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import orjson
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


#: Every address has an @ and every card or phone number a digit: text with neither has
#: nothing to redact (most log lines), and is not run through the whole pattern.
_MAYBE = re.compile(r"[@\d]")


def redact(text: str) -> str:
    """Addresses, card numbers (Luhn-checked) and phone numbers out of free text; IP
    addresses, ports, offsets, partitions and ids stay as they are."""
    if _MAYBE.search(text) is None:
        return text
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


def one_line(text: str, limit: int) -> str:
    """Redacted, on one line, at most ``limit`` characters: for headers and span status."""
    return redact(text.replace("\n", " "))[:limit]


def error_summary(exc: BaseException, limit: int = 200) -> str:
    """``Type: message`` of an exception, redacted, on one line."""
    return one_line(f"{type(exc).__name__}: {exc}", limit)


class JsonFormatter(logging.Formatter):
    """One JSON object per line (orjson: a model call's line is on every message's path)."""

    def __init__(self, *, payloads: bool = False) -> None:
        super().__init__()
        self.payloads = payloads
        self._second = -1
        self._stamp = ""

    def _ts(self, created: float) -> str:
        second = int(created)
        if second != self._second:  # formatted once a second
            self._second, self._stamp = (
                second,
                time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)),
            )
        return f"{self._stamp}.{int((created - second) * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": self._ts(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            line["trace_id"] = f"{span.trace_id:032x}"
            line["span_id"] = f"{span.span_id:016x}"
        given = record.__dict__
        for name in FIELDS:
            if name in given:
                line[name] = given[name]
        if self.payloads and "payload" in given:
            line["payload"] = given["payload"]
        if record.exc_info and "traceback" not in line:
            line["error_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            line["traceback"] = self.formatException(record.exc_info)
        if not self.payloads:
            for key in ("msg", "error", "traceback"):
                if isinstance(line.get(key), str):
                    line[key] = redact(line[key])
        try:
            return orjson.dumps(line, default=str).decode()
        except (orjson.JSONEncodeError, TypeError):  # e.g. an integer past 64 bits
            return json.dumps(line, default=str)


class PlainFormatter(logging.Formatter):
    """``level logger: message`` for people at a terminal, redacted like the JSON lines."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()} {record.name}: {redact(record.getMessage())}"


def setup_cli_logging(level: int = logging.WARNING) -> None:
    """Warnings and errors of a command (its Kafka clients' included) as plain lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PlainFormatter())
    handler.addFilter(OUTAGES)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class BatchedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Lines into a buffer that is written out every ``every_s`` (and at exit, by
    ``logging.shutdown``), at once for warnings and errors: a worker writes a line per
    model call, and a write per line cost 17 us of a hop's ~110 on the bench machine.
    A SIGKILL loses at most the last ``every_s`` of info lines, as a batched span
    processor loses its last spans."""

    def __init__(self, stream: Any, every_s: float = 0.2) -> None:
        super().__init__(stream)
        self.every_s = every_s
        threading.Thread(target=self._flush_often, name="log-flush", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + self.terminator)
            if record.levelno >= logging.WARNING:
                self.stream.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def _flush_often(self) -> None:
        while True:
            time.sleep(self.every_s)
            self.flush()


def setup_logging(*, payloads: bool = False, level: int = logging.INFO) -> None:
    # What no line of ours shows, not looked up for every record (the logging module's
    # documented switches; a model call's line is on every message's path).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # No line says where in the source it was logged from: no frame walk per record (the
    # logging HOWTO's "Optimization": ``logging._srcfile = None``).
    logging._srcfile = None
    stream = open(  # noqa: SIM115 - stderr's own buffer, kept open for the process's life
        sys.stderr.fileno(),
        "w",
        buffering=1 << 16,
        encoding="utf-8",
        errors="replace",
        closefd=False,
    )
    handler = BatchedStreamHandler(stream)
    handler.setFormatter(JsonFormatter(payloads=payloads))
    handler.addFilter(OUTAGES)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


# -- the Kafka clients' own logs ----------------------------------------------------------

#: Retries every client makes on its own while a group coordinator or partition leader
#: moves or loads: debug, not warnings.
TRANSIENT = re.compile(
    r"Coordinator load in progress|[Nn]ot coordinator|COORDINATOR_LOAD_IN_PROGRESS|"
    r"NOT_COORDINATOR|Leader not available|NOT_LEADER|retrying|Purging \d+ unserved events|"
    # aiokafka while a group coordinator loads (every start) or moves
    r"GroupCoordinatorNotAvailable|Marking the coordinator dead|"
    r"is either not started or not valid"
)
#: A connection to a broker failed or broke, or a client retries because of it: counted
#: while the cluster is unreachable (seen in a worker while its one broker was down for
#: 40 s: 44,753 such lines from 20 clients, 22,186 of them "Unable connect to node").
CONNECTION_FAILED = re.compile(
    r"Connect call failed|Connection refused|Connect to .* failed|Unable connect|"
    r"KafkaConnectionError|NodeNotReadyError|Connection at .* (?:broken|closed)|"
    r"[Aa]ll brokers are down|Broker transport failure|Unable to update metadata|"
    r"Failed fetch messages|Group Coordinator Request failed: (?:NodeNotReady|KafkaConnection)|"
    r"Heartbeat (?:send request failed|session expired|failed: )|Error sending \w+Request|"
    r"RequestTimedOutError|Connection reset|No route to host|Got error produce response"
)
#: A client talks to the cluster again (no client logs a plain "connected").
RECOVERED = re.compile(r"Discovered coordinator|Successfully synced group|Joined group")
#: Whose lines the tracker reads: the Kafka clients', never mailroom's own.
CLIENT_LOGGERS = ("aiokafka", "mailroom.kafka")


@dataclass
class _Down:
    since: float
    last_at: float
    failures: int
    last_error: str


class Outages(logging.Filter):
    """An unreachable Kafka cluster is logged once per outage, not once per retry.

    A handler filter over the clients' loggers (aiokafka's, and librdkafka's through
    ``ClientLog``): the first failed connection goes through as ``unreachable`` with its
    error; the retries after it are counted, not logged. The outage is over at the first
    sign of life (a group finding its coordinator again) or, failing that, after
    ``quiet_s`` without a failure (the clients retry many times a second while it lasts);
    then one line says it is back, with the count and the last error, and for ``settle_s``
    the clients' reconnection chatter (heartbeats, coordinator changes) is not logged.
    """

    def __init__(
        self, logger: logging.Logger, *, quiet_s: float = 5.0, settle_s: float = 10.0
    ) -> None:
        super().__init__()
        self.logger = logger
        self.quiet_s = quiet_s
        self.settle_s = settle_s
        self.down: _Down | None = None
        self.back_at = -settle_s
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(CLIENT_LOGGERS):
            return True
        message = record.getMessage()
        now = time.monotonic()
        over: _Down | None = None
        keep = True
        with self._lock:
            if RECOVERED.search(message):
                if self.down is not None:
                    over = self._over(now)
                elif now - self.back_at < self.settle_s:
                    keep = False  # every group finds its coordinator again: said once
            if record.levelno >= logging.WARNING and CONNECTION_FAILED.search(message):
                if self.down is not None:
                    self.down.failures += 1
                    self.down.last_at, self.down.last_error = now, message
                    keep = False
                elif now - self.back_at < self.settle_s:
                    keep = False  # reconnection chatter just after an outage
                else:
                    self.down = _Down(now, now, 1, message)
                    if self._watcher is None:
                        self._watcher = threading.Thread(target=self._watch, daemon=True)
                        self._watcher.start()
                    record.msg = "kafka unreachable: %s (retrying; failures counted until back)"
                    record.args = (message,)
                    record.levelno, record.levelname = logging.WARNING, "WARNING"
            elif record.levelno > logging.DEBUG and TRANSIENT.search(message):
                # A coordinator loading or moving: the client retries; not news.
                record.levelno, record.levelname = logging.DEBUG, "DEBUG"
                keep = logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        if over is not None:
            self._say_back(over, "a client found its group coordinator again")
        return keep

    def _over(self, now: float) -> _Down | None:
        """End the outage (lock held); what it was."""
        over, self.down, self.back_at = self.down, None, now
        return over

    def _say_back(self, over: _Down, why: str) -> None:
        self.logger.warning(
            "kafka reachable again (%s) after %d failed attempts over %.1fs; last error: %s",
            why,
            over.failures,
            over.last_at - over.since,
            over.last_error,
        )

    def _watch(self) -> None:
        """Ends an outage that has been quiet for ``quiet_s``; stops when none is left."""
        while True:
            time.sleep(min(1.0, self.quiet_s / 2))
            now = time.monotonic()
            with self._lock:
                over = None
                if self.down is not None and now - self.down.last_at >= self.quiet_s:
                    over = self._over(now)
                done = self.down is None
                if done:
                    self._watcher = None
            if over is not None:
                self._say_back(over, f"no failure for {self.quiet_s:g}s")
            if done:
                return


class ClientLog:
    """confluent-kafka's ``logger`` option: librdkafka's lines through Python logging
    (logger ``mailroom.kafka``), transient retries at debug, not raw on stderr."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def log(self, level: int, fmt: str, *args: Any) -> None:
        try:
            facility, client, message = (*map(str, args), "", "", "")[:3]
            if level <= logging.WARNING and TRANSIENT.search(message):
                level = logging.DEBUG
            self.logger.log(level, "%s %s: %s", client, facility, message)
        except Exception:  # an exception here would make the client's poll() raise
            return


KAFKA_LOG = logging.getLogger("mailroom.kafka")
CLIENT_LOG = ClientLog(KAFKA_LOG)
OUTAGES = Outages(logging.getLogger("mailroom.outage"))
