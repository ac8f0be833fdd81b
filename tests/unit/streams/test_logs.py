from __future__ import annotations

import json
import logging

import pytest

from streams.telemetry.logs import JsonFormatter, redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to ana.ruiz+x@mail.example.com now", "write to <email> now"),
        ("card 4111 1111 1111 1111 expired", "card <card> expired"),
        ("card 4111-1111-1111-1111", "card <card>"),
        ("call +44 20 7946 0958 today", "call <phone> today"),
        ("call (415) 555-0199", "call <phone>"),
        ("or 555.123.4567, or +4930123456.", "or <phone>, or <phone>."),
        ("invoice INV-2291 for 49.00", "invoice INV-2291 for 49.00"),
        # a 16-digit number that fails the Luhn check is an order number, not a card
        ("order 4111111111111112", "order 4111111111111112"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Connect call failed ('127.0.0.1', 45105)",
        "Connect call failed ('::1', 45105, 0, 0)",
        "broker [fe80::1ff:fe23:4567:890a]:9092 is down; 2001:db8:85a3::8a2e:370:7334 too",
        "trace 4bf92f3577b34da6a3ce929d0e0e4736 span 00f067aa0ba902b7",
        "committed emails.inbound[3]@1234567890123, offset 9876543210, partition 4",
        "at 2026-11-24 19:01:52.123 (2026-11-24T19:01:52Z), timestamp 1764010912123",
        "worker id 123e4567-e89b-12d3-a456-426614174000, pid 4711",
    ],
)
def test_redact_keeps_addresses_ports_offsets_and_ids(text: str) -> None:
    assert redact(text) == text


def record(msg: str, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("mailroom.stage", logging.INFO, __file__, 1, msg, None, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_json_lines_carry_fields_and_redact_unless_payloads_are_on() -> None:
    rec = record(
        "failed for bo@x.example",
        event="model_call",
        stage="classify",
        latency_ms=1.5,
        error="bad value bo@x.example",
    )
    line = json.loads(JsonFormatter().format(rec))
    assert line["event"] == "model_call"
    assert line["stage"] == "classify"
    assert line["latency_ms"] == 1.5
    assert "bo@x.example" not in json.dumps(line)
    raw = json.loads(JsonFormatter(payloads=True).format(rec))
    assert raw["error"] == "bad value bo@x.example"


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[str, int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.name, record.levelno, record.getMessage()))


def outage_loggers(outages: object) -> tuple[logging.Logger, Lines]:
    """A client logger named like aiokafka's and the tracker's logger, both to one handler
    that carries the tracker, as the worker's handler does."""
    lines = Lines()
    lines.addFilter(outages)  # type: ignore[arg-type]
    client = logging.getLogger("aiokafka.test_outage")
    for logger in (client, logging.getLogger("test.outage.told")):
        logger.propagate = False
        logger.setLevel(logging.INFO)
        logger.handlers[:] = [lines]
    return client, lines


def fail(client: logging.Logger, times: int) -> None:
    for _ in range(times):
        client.error(
            "Unable connect to node with id %s: %s",
            1,
            "[Errno 111] Connect call failed ('127.0.0.1', 45105)",
        )
        client.error("Unable to update metadata from %s", [1])


def test_a_broker_outage_is_logged_once_down_and_once_back_when_a_group_finds_it() -> None:
    from streams.telemetry.logs import Outages

    outages = Outages(logging.getLogger("test.outage.told"), quiet_s=60, settle_s=60)
    client, lines = outage_loggers(outages)
    fail(client, 500)
    client.warning("Heartbeat failed for group g because it is rebalancing")  # not a failure
    client.info("Discovered coordinator 1 for group mailroom.route")
    fail(client, 50)  # reconnection chatter just after: not logged either
    messages = [m for _, _, m in lines.lines]
    assert len(messages) == 4, messages
    assert messages[0].startswith("kafka unreachable: Unable connect to node with id 1")
    assert "('127.0.0.1', 45105)" in messages[0]
    assert messages[1] == "Heartbeat failed for group g because it is rebalancing"
    assert "reachable again (a client found its group coordinator again)" in messages[2]
    assert "after 1000 failed attempts" in messages[2]
    assert messages[3].startswith("Discovered coordinator")


def test_an_outage_without_a_group_ends_when_the_failures_stop() -> None:
    from streams.telemetry.logs import Outages
    from tests.kafka_helpers import wait_for

    outages = Outages(logging.getLogger("test.outage.told"), quiet_s=0.2, settle_s=0)
    client, lines = outage_loggers(outages)
    fail(client, 100)
    back = wait_for(
        lambda: [m for _, _, m in lines.lines if "reachable again" in m],
        timeout_s=10,
        what="the outage to be reported over",
    )
    assert "after 200 failed attempts" in back[0]
    fail(client, 1)  # a new outage is news again
    assert sum("unreachable" in m for _, _, m in lines.lines) == 2


def test_mailroom_lines_are_never_taken_for_client_failures() -> None:
    from streams.telemetry.logs import Outages

    outages = Outages(logging.getLogger("test.outage.told"), quiet_s=60)
    lines = Lines()
    lines.addFilter(outages)
    ours = logging.getLogger("mailroom.test_outage")
    ours.propagate = False
    ours.handlers[:] = [lines]
    for _ in range(3):
        ours.error("stage s stalled: cannot write 1 outputs (KafkaConnectionError: refused)")
    assert len(lines.lines) == 3


def test_librdkafka_lines_go_through_python_logging_with_transient_ones_at_debug() -> None:
    from streams.telemetry.logs import ClientLog

    lines = Lines()
    logger = logging.getLogger("test.rdkafka")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(lines)
    client = ClientLog(logger)
    client.log(
        logging.WARNING,
        "%s [%s] %s",
        "GETPID",
        "rdkafka#producer-3",
        "[thrd:main]: Failed to acquire idempotence PID from broker 1: "
        "Broker: Coordinator load in progress: retrying",
    )
    client.log(logging.ERROR, "%s [%s] %s", "ERROR", "rdkafka#producer-3", "Local: Fatal error")
    (transient, fatal) = lines.lines
    assert transient[1] == logging.DEBUG
    assert "rdkafka#producer-3 GETPID" in transient[2]
    assert fatal[1] == logging.ERROR


def test_a_coordinator_still_loading_at_start_is_not_an_outage() -> None:
    """Seen at every worker start: the group coordinator loads while 18 groups join."""
    from streams.telemetry.logs import Outages

    outages = Outages(logging.getLogger("test.outage.told"), quiet_s=60, settle_s=60)
    client, lines = outage_loggers(outages)
    client.error("Group Coordinator Request failed: [Error 15] GroupCoordinatorNotAvailableError")
    client.warning("Marking the coordinator dead (node 1)for group mailroom.route.retry.")
    client.info("Discovered coordinator 1 for group mailroom.route.retry")
    assert outages.down is None
    assert [m for _, _, m in lines.lines] == [
        "Discovered coordinator 1 for group mailroom.route.retry"
    ]  # the retries went to debug, below the INFO the worker logs at
