"""Helpers for tests that talk to the real broker: free ports, unique names, waits."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from confluent_kafka import Consumer

from streams.commands.admin import create_topics
from streams.settings import Settings
from topics.catalog import TopicSpec

T = TypeVar("T")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_port_block(size: int) -> int:
    """The first of ``size`` consecutive ports that are free now (a cluster's nodes)."""
    for _ in range(200):
        first = free_port()
        socks = []
        try:
            for port in range(first, first + size):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError(f"no {size} consecutive free ports")


def unique(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def wait_for(
    condition: Callable[[], T], *, timeout_s: float = 30.0, interval_s: float = 0.05, what: str = ""
) -> T:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what or condition}")
        time.sleep(interval_s)


def make_topics(settings: Settings, *names: str, partitions: int = 6) -> list[str]:
    specs = tuple(TopicSpec(n, None, "internal", "test", partitions=partitions) for n in names)
    create_topics(settings, specs)
    return [settings.topic(n) for n in names]


def consume_all(settings: Settings, topic: str, count: int, timeout_s: float = 30.0) -> list[Any]:
    """Read ``count`` records of ``topic`` from the beginning with confluent-kafka."""
    consumer = Consumer(
        settings.confluent_config(
            **{
                "group.id": unique("g"),
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
    )
    consumer.subscribe([topic])
    got: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                raise AssertionError(f"consume error: {msg.error()}")
            got.append(msg)
    finally:
        consumer.close()
    return got
