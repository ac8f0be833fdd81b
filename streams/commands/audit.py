"""``mailroom audit``: the ledger invariant, checked against the topics themselves.

Every message id seen on ``emails.inbound`` must end in exactly one of ``responses``,
``escalations`` and ``emails.ignored``, or, failing that, in a dead-letter topic (parked
for a person to replay). A dead letter that was replayed and then answered counts once,
as answered. Two replies for one message id count as a duplicate too.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from streams.engine.kafka import read_keys
from streams.settings import Settings
from topics import catalog
from topics.codec import InboundCodec
from topics.errors import CodecError

FINAL = (catalog.RESPONSES, catalog.ESCALATIONS, catalog.IGNORED)


@dataclass
class AuditReport:
    inbound: int = 0
    terminal: dict[str, int] = field(default_factory=dict)
    dead_lettered: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    duplicated: dict[str, list[str]] = field(default_factory=dict)

    def describe(self) -> str:
        lines = [f"inbound message ids: {self.inbound}"]
        lines += [f"  {topic}: {count}" for topic, count in sorted(self.terminal.items()) if count]
        lines.append(f"dead-lettered (not replayed): {len(self.dead_lettered)}")
        lines.append(f"missing (in no terminal topic): {len(self.missing)}")
        lines += [f"  {mid}" for mid in self.missing[:20]]
        lines.append(f"in more than one terminal topic: {len(self.duplicated)}")
        lines += [f"  {mid}: {', '.join(t)}" for mid, t in list(self.duplicated.items())[:20]]
        return "\n".join(lines)


def inbound_ids(settings: Settings) -> list[str]:
    codec = InboundCodec()
    ids = []
    for key, value, timestamp in read_keys(settings, catalog.INBOUND):
        try:
            ids.append(codec.decode_inbound(value, key=key, timestamp_ms=timestamp)["message_id"])
        except CodecError:
            # Undecodable: its dead letter keeps the same key (or none) - count by key.
            ids.append((key or b"").decode("utf-8", errors="replace"))
    return ids


def run_audit(settings: Settings) -> AuditReport:
    report = AuditReport()
    ids = inbound_ids(settings)
    report.inbound = len(set(ids))
    final: dict[str, list[str]] = defaultdict(list)
    parked: set[str] = set()
    for topic in catalog.terminal_topics():
        keys = Counter(
            (k or b"").decode("utf-8", errors="replace") for k, _, _ in read_keys(settings, topic)
        )
        report.terminal[topic] = len(keys)
        if topic in FINAL:
            for key, count in keys.items():
                final[key].extend([topic] * count)
        else:
            parked.update(keys)
    for mid in dict.fromkeys(ids):
        found = final.get(mid, [])
        if len(found) > 1:
            report.duplicated[mid] = found
        elif not found and mid in parked:
            report.dead_lettered.append(mid)
        elif not found:
            report.missing.append(mid)
    return report
