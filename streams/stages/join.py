"""The triage join: classifier and urgency results for one message id, merged.

Both halves arrive keyed by message id on co-partitioned topics. The first half waits in
a table that is backed by the compacted ``join.changelog`` topic (written in the
transaction that commits the input offset; restored when a partition is assigned), so a
crash loses no half, and a joined pair's tombstone never outlives its output.
A half that waits longer than the join timeout is escalated with reason ``join_timeout``.
The wait is counted on the join's own clock, which leaves out the time the worker stood
still (the process stopped or its machine paused, the event loop blocked): after such a
stall the twin may be on its topic, unread, and gets the whole timeout to be read.
The same half twice (redelivered after a crash, or restored and then read again) is one
half: it never joins with itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import NamedTuple

from streams.engine.kafka import read_to_end
from streams.engine.records import Incoming, Output, TopicPartition
from streams.settings import Settings
from streams.stages.ticket import TICKET, Ticket, decision, decode, out
from topics import catalog
from topics import headers as h

log = logging.getLogger("mailroom.join")
Send = Callable[[list[Output]], None]  # see stages.registry


def merge(first: Ticket, second: Ticket) -> Ticket:
    """One ticket from the two halves: each half's result, both halves' calls and costs,
    the decision paths merged in time order (a decision both carry counted once)."""
    merged = first.copy()
    merged["classification"] = first["classification"] or second["classification"]
    merged["urgency"] = first["urgency"] or second["urgency"]
    merged["escalation_reason"] = first["escalation_reason"] or second["escalation_reason"]
    merged["escalation_detail"] = first["escalation_detail"] or second["escalation_detail"]
    merged["model_calls"] = first["model_calls"] + second["model_calls"]
    merged["cost"] = first["cost"] + second["cost"]
    seen = {(d["stage"], d["at"]) for d in first["decisions"]}
    extra = [d for d in second["decisions"] if (d["stage"], d["at"]) not in seen]
    merged["decisions"] = sorted(first["decisions"] + extra, key=lambda d: d["at"])
    return merged


class Waiting(NamedTuple):
    """A half waiting for its twin."""

    ticket: Ticket
    since: float  # on the join's clock (``TriageJoin.now``), when it started waiting
    partition: int
    half: str  # "classified" or "scored"; "unknown" if restored from an older changelog


class TriageJoin:
    def __init__(
        self,
        settings: Settings,
        timeout_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self.pending: dict[str, Waiting] = {}  # by message id
        # escalated on timeout: a late half is dropped (message id -> when, partition)
        self.timed_out: dict[str, tuple[float, int]] = {}
        self.clock = clock
        self.tick_s = min(1.0, timeout_s / 4)  # how often ``expire`` looks
        self.stalled_s = 0.0  # how long the worker stood still, all told
        self._ticked: float | None = None  # the clock at the last look

    def now(self) -> float:
        """The join's clock: monotonic time less the stalls ``take_expired`` saw."""
        return self.clock() - self.stalled_s

    async def handle(self, record: Incoming) -> list[Output]:
        began = time.perf_counter()
        ticket = decode(record.value)
        mid = ticket["message_id"]
        key = mid.encode()
        if mid in self.timed_out:
            log.info("join dropped the late half of %s: it was escalated on timeout", mid)
            return []
        half = self.half(record.topic)
        waiting = self.pending.get(mid)
        if waiting is not None and waiting.half == half:
            log.info("join kept the %s half of %s it had: this one is a redelivery", half, mid)
            return []
        if waiting is None:
            self.pending[mid] = Waiting(ticket, self.now(), record.partition, half)
            return [
                Output(catalog.JOIN_CHANGELOG, record.value, key, [(h.JOIN_HALF, half.encode())])
            ]
        del self.pending[mid]
        merged = merge(waiting.ticket, ticket)
        merged["decisions"].append(
            decision(
                "join",
                "triage-join",
                "joined",
                began,
                f"waited {self.now() - waiting.since:.3f}s",
            )
        )
        return [out(catalog.TRIAGED, merged), Output(catalog.JOIN_CHANGELOG, None, key)]

    def half(self, topic: str) -> str:
        """Which half a record read from ``topic`` (full name) is."""
        return "classified" if topic == self.settings.topic(catalog.CLASSIFIED) else "scored"

    async def restore(self, assigned: set[TopicPartition]) -> None:
        """Reload the waiting halves of the assigned partitions from the changelog."""
        numbers = {tp.partition for tp in assigned}
        if not numbers:
            return
        # Called when the partitions are given (or given back after a failed commit):
        # what was in hand for them is gone and their committed changelog is the state.
        state: dict[str, Waiting] = {}
        for rec in await read_to_end(self.settings, catalog.JOIN_CHANGELOG, numbers):
            mid = rec.key.decode()
            if rec.value is None:
                state.pop(mid, None)
            else:
                half = h.get(list(rec.headers or ()), h.JOIN_HALF) or "unknown"
                state[mid] = Waiting(decode(rec.value), self.now(), rec.partition, half)
        restored = 0
        for mid, entry in state.items():
            if mid in self.pending:
                continue
            self.pending[mid] = entry
            restored += 1
        if restored:
            log.info("join restored %d waiting halves for partitions %s", restored, sorted(numbers))

    async def revoke(self, revoked: set[TopicPartition]) -> None:
        """Forget the partitions another worker now owns (it restores them from the
        changelog), or whose uncommitted work was given up (restored next)."""
        numbers = {tp.partition for tp in revoked}
        for mid in [m for m, w in self.pending.items() if w.partition in numbers]:
            del self.pending[mid]
        for mid in [m for m, (_, p) in self.timed_out.items() if p in numbers]:
            del self.timed_out[mid]

    async def expire(self, send: Send, stop: asyncio.Event) -> None:
        """Escalate halves that waited longer than the timeout, written with ``send``."""
        while not stop.is_set():
            await asyncio.sleep(self.tick_s)
            outputs = self.take_expired()
            if outputs:
                send(outputs)

    def take_expired(self) -> list[Output]:
        """Remove every half waiting since before the timeout; their escalations.

        A look that comes much later than ``tick_s`` after the last one means the worker
        stood still in between: that time is left out of every wait, so no half expires
        for it before the stages have read what came in meanwhile.

        Synchronous, so no half can be joined while it is being expired; a second half
        that turns up later is dropped by ``handle``.
        """
        looked = self.clock()
        if self._ticked is not None:
            gap = looked - self._ticked
            if gap > self.tick_s + STALL_S:
                self.stalled_s += gap - self.tick_s
                log.warning("join: the worker stood still for %.1fs; not counted as waiting", gap)
        self._ticked = looked
        now = self.now()
        outputs: list[Output] = []
        for mid in [m for m, w in self.pending.items() if w.since < now - self.timeout_s]:
            waiting = self.pending.pop(mid)
            ticket = waiting.ticket
            self.timed_out[mid] = (now, waiting.partition)
            began = time.perf_counter()
            missing = "urgency" if ticket["urgency"] is None else "classification"
            ticket["escalation_reason"] = "join_timeout"
            detail = f"no {missing} result after {self.timeout_s:.0f}s"
            ticket["escalation_detail"] = detail
            ticket["decisions"].append(
                decision("join", "triage-join", "join_timeout", began, detail)
            )
            key = mid.encode()
            outputs += [
                Output(catalog.ESCALATE, TICKET.encode(ticket), key),
                Output(catalog.JOIN_CHANGELOG, None, key),
            ]
        forget = now - 20 * self.timeout_s
        self.timed_out = {m: t for m, t in self.timed_out.items() if t[0] > forget}
        return outputs


#: A look this much later than planned is a stall of the worker, not a slow event loop.
STALL_S = 2.0
