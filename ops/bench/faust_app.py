"""The Faust peer of scenario 2: one agent that moves raw bytes from one topic to another
(the same no-op work as the mailroom hop's model), and optionally raises on one record.

Run as a worker by ``ops.bench.faust_hop``::

    python -m ops.bench.faust_app worker -l warn

configured by the environment: ``FAUST_BENCH_BROKER`` (host:port), ``FAUST_BENCH_APP``
(the app id, so the group id), ``FAUST_BENCH_IN``, ``FAUST_BENCH_OUT``, ``FAUST_BENCH_DATA``
(its table directory) and ``FAUST_BENCH_RAISE_ON`` (a key: the agent raises on that record).
Faust's own defaults otherwise (``stream_ack_exceptions`` on, as shipped).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import faust

env = os.environ
app = faust.App(
    env.get("FAUST_BENCH_APP", "faust-bench"),
    broker=f"kafka://{env.get('FAUST_BENCH_BROKER', '127.0.0.1:9092')}",
    datadir=env.get("FAUST_BENCH_DATA", "/tmp/faust-bench"),
    value_serializer="raw",
    key_serializer="raw",
    topic_allow_declare=False,  # the bench made the topics
    topic_disable_leader=True,
    web_enabled=False,
    producer_acks=-1,  # acks=all, as mailroom writes
)
source = app.topic(env.get("FAUST_BENCH_IN", "faust.in"), value_type=bytes, key_type=bytes)
sink = app.topic(env.get("FAUST_BENCH_OUT", "faust.out"), value_type=bytes, key_type=bytes)
RAISE_ON = env.get("FAUST_BENCH_RAISE_ON", "").encode()


class Poison(Exception):
    """The record the agent cannot handle."""


@app.agent(source)
async def hop(stream: faust.StreamT[Any]) -> AsyncIterator[None]:
    async for event in stream.events():
        if RAISE_ON and event.key == RAISE_ON:
            raise Poison(f"cannot handle {event.key!r}")
        await sink.send(key=event.key, value=event.value)
        yield None


if __name__ == "__main__":
    app.main()
