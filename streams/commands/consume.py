"""``mailroom consume``: read a topic and print its records decoded."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape

from streams.engine.kafka import reader
from streams.settings import Settings
from topics import catalog
from topics import headers as h
from topics.codec import Codec, InboundCodec
from topics.errors import CodecError


def decode(topic: str, value: bytes | None, key: bytes | None) -> dict[str, Any] | None:
    try:
        spec = catalog.topic(topic)
    except KeyError:
        return None
    if spec.schema is None:
        return None
    try:
        if spec.name == catalog.INBOUND:
            return InboundCodec().decode_inbound(value, key=key)
        return Codec(spec.schema).decode(value)
    except CodecError:
        return None


def pretty(topic: str, record: dict[str, Any]) -> str:
    """Console markup of a record; every field of it escaped (an email's subject may
    hold "[/b]", which rich would read as markup and refuse)."""
    if topic == catalog.RESPONSES:
        return (
            f"[bold green]reply[/] {escape(record['message_id'])} -> "
            f"{escape(record['recipient'])} ({escape(str(record['category']))}, draft "
            f"{record['iteration']}, score {record['quality_score']:.2f})\n"
            f"{escape(record['body'])}\n"
        )
    if topic == catalog.ESCALATIONS:
        return (
            f"[bold yellow]escalated[/] {escape(record['message_id'])}: "
            f"{escape(record['reason'])} ({escape(str(record['detail']))}) subject: "
            f"{escape(record['email']['subject'])}"
        )
    return escape(json.dumps(record, default=str)[:400])


def consume_topic(
    settings: Settings, topic: str, *, follow: bool, as_json: bool, limit: int, console: Console
) -> int:
    consumer = reader(settings)
    consumer.subscribe([settings.topic(topic)])
    shown, idle = 0, 0
    try:
        while limit == 0 or shown < limit:
            msg = consumer.poll(0.5)
            if msg is None:
                idle += 1
                if not follow and idle > 6:
                    break
                continue
            idle = 0
            if msg.error():
                continue
            record = decode(topic, msg.value(), msg.key())
            if record is None:  # retry/DLQ topics: raw bytes and metadata headers
                record = {
                    "key": (msg.key() or b"").decode(errors="replace"),
                    "headers": {
                        k: (v or b"").decode(errors="replace")[:200]
                        for k, v in msg.headers() or ()
                        if k != h.ERROR_STACKTRACE
                    },
                    "value_bytes": len(msg.value() or b""),
                }
            if as_json:
                console.print_json(json.dumps(record, default=str))
            else:
                console.print(pretty(topic, record))
            shown += 1
    finally:
        consumer.close()
    return shown
