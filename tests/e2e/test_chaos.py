"""A small ``make chaos`` in CI: a 3-node cluster, real complaint text and auto-replies,
12% model faults, workers SIGKILLed and restarted, one broker SIGKILLed and restarted;
every email ends in exactly one outcome, none wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.chaos import CFPB, Chaos, Plan

pytestmark = pytest.mark.e2e


@pytest.mark.skipif(not CFPB.exists(), reason=f"needs {CFPB} (../shared/data)")
def test_kills_during_traffic_lose_nothing_and_answer_nothing_twice(tmp_path: Path) -> None:
    plan = Plan(
        emails=240,
        workers=2,
        kill_every_s=5.0,
        min_kills=4,
        broker_down_s=6.0,
        rate=10.0,
        drain_timeout_s=420.0,
    )
    report = Chaos(plan, tmp_path, say=lambda line: None).run()
    assert report.produced == plan.emails + plan.warmup
    assert report.lost == []
    assert report.duplicated == {}
    assert report.wrong == []
    assert report.ignored > 0  # the auto-replies took the prefilter's other way out
    assert len(report.worker_kills) >= 4
    assert report.broker_kill is not None
    assert report.audit_exit == 0
