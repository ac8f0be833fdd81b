"""Which handler runs each stage, and what else the stage needs from the runtime.

One ``Binding`` per stage of the catalog: its handler, the hooks its group's rebalances
call (the join reloads its waiting halves, the decider its ledger), and background work
beside its loop (the join's timeout). The worker starts whatever is bound here; nothing
is wired by name elsewhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from streams.engine.records import Handler, Output, Rebalance
from streams.settings import Settings
from streams.stages.calls import ModelCalls
from streams.stages.escalate import Escalate, TerminalLedger
from streams.stages.join import TriageJoin
from streams.stages.reply import Reply
from streams.stages.triage import Triage
from topics import catalog

#: Writes outputs with the stage's next commit (``StageRunner.emit``).
Send = Callable[[list[Output]], None]
Background = Callable[[Send, asyncio.Event], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class Binding:
    handler: Handler
    on_assign: Rebalance | None = None
    on_revoke: Rebalance | None = None
    background: tuple[Background, ...] = ()


def bind_stages(settings: Settings, calls: ModelCalls) -> dict[str, Binding]:
    """Every stage of the catalog, bound to its handler and hooks; ``calls`` is the
    worker's models, gate and LLM backends, shared by its stages."""
    triage = Triage(calls, settings.max_email_bytes)
    taxonomy = calls.models.taxonomy
    policy = taxonomy.policy()
    allowed = (*settings.reply_allow, *taxonomy.company.allowed())
    reply = Reply(calls, policy=policy, allowed=allowed)
    ledger = TerminalLedger(settings)
    join = TriageJoin(settings, settings.join_timeout_s)
    bindings = {
        "prefilter": Binding(triage.prefilter),
        "classify": Binding(triage.classify),
        "urgency": Binding(triage.urgency),
        "join": Binding(join.handle, join.restore, join.revoke, (join.expire,)),
        "route": Binding(triage.route),
        "extract": Binding(reply.extract),
        "generate": Binding(reply.generate),
        "quality": Binding(reply.quality),
        "escalate": Binding(
            Escalate(ledger, calls.models, policy=policy, allowed=allowed).handle,
            ledger.restore,
            ledger.revoke,
        ),
    }
    missing = set(catalog.STAGE_NAMES) ^ set(bindings)
    if missing:  # a stage added to the catalog and not here, or the other way round
        raise RuntimeError(f"stages without a binding or a catalog entry: {sorted(missing)}")
    return bindings
