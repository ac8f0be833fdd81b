"""The generator <-> quality loop: approve, revise, or give up, bounded by iterations.

A draft scoring at least ``stop_at`` (0.85) is approved at once. Below that, while
iterations remain, the draft goes back for a revision at a lower temperature with the
checker's feedback. After ``max_iterations`` the best draft so far is approved if it
reaches ``floor`` (0.7); otherwise the email is escalated as ``low_quality``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Step = Literal["approve", "revise", "escalate"]


@dataclass(frozen=True)
class LoopPolicy:
    max_iterations: int = 3
    stop_at: float = 0.85
    floor: float = 0.7
    start_temperature: float = 0.9
    cooling: float = 0.3


def next_step(
    score: float, iteration: int, best: float, *, policy: LoopPolicy = LoopPolicy()
) -> Step:
    """What to do after the draft of ``iteration`` (1-based) scored ``score``."""
    if score >= policy.stop_at:
        return "approve"
    if iteration < policy.max_iterations:
        return "revise"
    return "approve" if max(best, score) >= policy.floor else "escalate"


def temperature(iteration: int, *, policy: LoopPolicy = LoopPolicy()) -> float:
    """Each revision runs cooler: 0.9, 0.6, 0.3, ... never below 0.1."""
    return round(max(0.1, policy.start_temperature - policy.cooling * (iteration - 1)), 3)
