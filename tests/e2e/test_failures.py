"""Failures end to end: retries, dead letters, poison input, breakers, replay, SIGKILL."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from streams.commands.audit import run_audit
from streams.engine.kafka import read_keys, read_records
from streams.settings import Settings
from tests.e2e.harness import Workers, cli, drained, settled
from tests.kafka_helpers import wait_for
from tests.poison import POISON, healthy_email
from topics import catalog
from topics import headers as h
from topics.codec import Codec

pytestmark = pytest.mark.e2e
DATA = Path(__file__).resolve().parents[2] / "processors" / "data"
FAST_RETRIES = {"MAILROOM_RETRY_DELAYS_S": "[0.2, 0.5, 1.0]"}
MODELS = ("classify", "urgency", "extract", "generate", "quality")


def batch(settings: Settings, start: int, count: int) -> Path:
    rows = [json.loads(line) for line in (DATA / "training.jsonl").read_text().splitlines()]
    path = settings.data_dir / f"batch-{start}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows[start : start + count]))
    return path


def keys(settings: Settings, topic: str) -> list[str]:
    return [(k or b"").decode() for k, _, _ in read_keys(settings, topic)]


def test_500_emails_with_12_percent_faults_on_every_model_lose_nothing(
    pipeline: tuple[Settings, Workers],
) -> None:
    settings, workers = pipeline
    faults = ";".join(f"{m}:error_rate=0.12" for m in MODELS)
    workers.start(
        MAILROOM_FAULTS=faults,
        MAILROOM_BREAKER_COOLDOWN_S="2",
        MAILROOM_JOIN_TIMEOUT_S="60",
        **FAST_RETRIES,
    )
    assert cli(settings, "produce", str(batch(settings, 0, 500))).returncode == 0
    wait_for(lambda: settled(settings, 500), timeout_s=420, what="every email terminal")
    report = run_audit(settings)
    assert report.inbound == 500
    assert report.missing == []
    assert report.duplicated == {}
    retried = 0
    for spec in (catalog.stage(m) for m in MODELS):
        for tier, topic in enumerate(spec.retry_topics(settings.retry_tiers), start=1):
            for record in read_records(settings, topic):
                retried += 1
                assert h.get(record.headers, h.RETRY_ATTEMPT) == str(tier)
        for record in read_records(settings, spec.dlq_topic):
            assert int(h.get(record.headers, h.RETRY_ATTEMPT) or 0) <= 3
    assert retried > 20  # transient failures were retried (breakers route some around)
    print(f"\n12% faults: {report.describe()}\nretried: {retried}")


def test_a_model_down_opens_its_breaker_and_it_closes_after_recovery(
    pipeline: tuple[Settings, Workers],
) -> None:
    settings, workers = pipeline
    switch = settings.data_dir / "urgency.down"
    switch.touch()  # the model is down from the first call until the file goes
    workers.start(
        MAILROOM_FAULTS=f"urgency:down_while={switch}",
        MAILROOM_BREAKER_COOLDOWN_S="2",
        **FAST_RETRIES,
    )
    assert cli(settings, "produce", str(batch(settings, 0, 20))).returncode == 0
    wait_for(lambda: settled(settings, 20), timeout_s=120, what="the first batch terminal")
    assert "breaker vader-cues: closed -> open" in workers.logs()
    assert "model_unavailable" in read_reasons(settings).values()
    switch.unlink()  # the model is back
    # One email at a time until the breaker's trial call has closed it: open emails
    # meanwhile are escalated, which is what an open breaker is for.
    producer = Producer(settings.confluent_config())
    probes = 0

    def closed() -> bool:
        nonlocal probes
        if "breaker vader-cues: half_open -> closed" in workers.logs():
            return True
        probes += 1
        n = 1000 + probes
        key = f"<healthy-{n}@example.com>".encode()  # the id in the email itself
        producer.produce(settings.topic(catalog.INBOUND), healthy_email(n), key=key)
        producer.flush(10)
        wait_for(lambda: settled(settings, 20 + probes), timeout_s=60, what="the probe terminal")
        return False

    wait_for(closed, timeout_s=180, what="the breaker to close")
    assert "breaker vader-cues: open -> half_open" in workers.logs()
    second = batch(settings, 20, 20)
    assert cli(settings, "produce", str(second)).returncode == 0
    wait_for(
        lambda: settled(settings, 40 + probes), timeout_s=120, what="the second batch terminal"
    )
    recovered = {json.loads(line)["message_id"] for line in second.read_text().splitlines()}
    reasons = read_reasons(settings)
    assert not [m for m in recovered if reasons.get(m) == "model_unavailable"]


def read_reasons(settings: Settings) -> dict[str, str]:
    """message id -> escalation reason."""
    codec = Codec("Escalation")
    decoded = [codec.decode(v) for _, v, _ in read_keys(settings, catalog.ESCALATIONS)]
    return {e["message_id"]: e["reason"] for e in decoded}


def test_poison_input_is_dead_lettered_and_the_email_behind_it_answered(
    pipeline: tuple[Settings, Workers],
) -> None:
    settings, workers = pipeline
    workers.start(MAILROOM_MAX_EMAIL_BYTES=str(256 * 1024), **FAST_RETRIES)
    producer = Producer(settings.confluent_config())
    inbound = settings.topic(catalog.INBOUND)
    for n, (name, value, _) in enumerate(POISON):
        producer.produce(inbound, value, key=f"poison-{name}".encode())
        producer.produce(inbound, healthy_email(n), key=f"<healthy-{n}@example.com>".encode())
    producer.produce(settings.topic(catalog.ACCEPTED), b"\x00garbage ticket", key=b"poison-ticket")
    assert producer.flush(10) == 0
    wait_for(
        lambda: settled(settings, 2 * len(POISON)),
        timeout_s=120,
        what="poison and healthy emails terminal",
    )
    dead = {(r.key or b"").decode(): r for r in read_records(settings, "prefilter.dlq")}
    for name, value, error_class in POISON:
        record = dead[f"poison-{name}"]
        assert h.get(record.headers, h.ERROR_CLASS) == error_class, name
        assert h.get(record.headers, h.ERROR_MESSAGE), name
        assert h.get(record.headers, h.ORIGIN_TOPIC) == inbound
        assert (record.value or b"") == (value or b""), name  # byte for byte
        assert h.get(record.headers, h.RETRY_ATTEMPT) == "0"  # never retried
    done = set(keys(settings, catalog.RESPONSES)) | set(keys(settings, catalog.ESCALATIONS))
    assert {f"<healthy-{n}@example.com>" for n in range(len(POISON))} <= done
    wait_for(
        lambda: "poison-ticket" in keys(settings, "classify.dlq"),
        timeout_s=60,
        what="the bad ticket dead-lettered",
    )
    (bad,) = [r for r in read_records(settings, "classify.dlq") if r.key == b"poison-ticket"]
    assert h.get(bad.headers, h.ERROR_CLASS) == "NotAvroError"
    listing = cli(settings, "dlq", "list")
    assert "TooLargeError" in listing.stdout
    shown = cli(settings, "dlq", "show", "prefilter", "--limit", "3")
    assert "redacted" in shown.stdout


def test_replay_answers_every_dead_letter_exactly_once(
    pipeline: tuple[Settings, Workers],
) -> None:
    settings, workers = pipeline
    # Always failing, breaker kept shut: every try goes through the tiers to extract.dlq.
    broken = workers.start(
        MAILROOM_FAULTS="extract:error_rate=1.0", MAILROOM_BREAKER_THRESHOLD="1000", **FAST_RETRIES
    )
    assert cli(settings, "produce", str(batch(settings, 0, 25))).returncode == 0
    wait_for(lambda: settled(settings, 25), timeout_s=120, what="all terminal or parked")
    parked = set(keys(settings, "extract.dlq"))
    assert len(parked) >= 10
    assert parked == set(run_audit(settings).dead_lettered)
    broken.terminate()
    broken.wait(timeout=30)
    workers.start(**FAST_RETRIES)  # the fault is cleared
    first = cli(settings, "replay", "extract.dlq")
    assert first.returncode == 0, first.stderr
    assert f"matched {len(parked)}" in first.stdout
    wait_for(
        lambda: not run_audit(settings).dead_lettered,
        timeout_s=120,
        what="every dead letter answered",
    )
    answered = keys(settings, catalog.RESPONSES) + keys(settings, catalog.ESCALATIONS)
    assert parked <= set(answered)
    second = cli(settings, "replay", "extract.dlq")
    assert second.returncode == 0
    wait_for(lambda: drained(settings), timeout_s=120, what="the second replay processed")
    again = keys(settings, catalog.RESPONSES) + keys(settings, catalog.ESCALATIONS)
    assert sorted(again) == sorted(answered)  # no second reply
    assert run_audit(settings).duplicated == {}
    assert "dropped a second outcome" in workers.logs()


def test_a_worker_killed_mid_run_loses_nothing(pipeline: tuple[Settings, Workers]) -> None:
    settings, workers = pipeline
    first = workers.start(MAILROOM_JOIN_TIMEOUT_S="60", **FAST_RETRIES)
    assert cli(settings, "produce", str(batch(settings, 0, 500))).returncode == 0
    wait_for(
        lambda: len(keys(settings, catalog.RESPONSES)) >= 100,
        timeout_s=180,
        what="the run under way",
    )
    workers.kill(first)
    killed = time.monotonic()
    workers.start(MAILROOM_JOIN_TIMEOUT_S="60", **FAST_RETRIES)
    wait_for(lambda: settled(settings, 500), timeout_s=300, what="every email terminal")
    recovered = time.monotonic() - killed
    report = run_audit(settings)
    assert report.inbound == 500
    assert report.missing == []
    assert report.duplicated == {}
    print(f"\nSIGKILL recovery: all 500 terminal {recovered:.1f}s after the kill")


def test_an_unwritable_dead_letter_topic_stalls_the_stage_without_losing_the_record(
    pipeline: tuple[Settings, Workers],
) -> None:
    settings, workers = pipeline
    admin = AdminClient(settings.confluent_config())
    dlq = ConfigResource(ConfigResource.Type.TOPIC, settings.topic("prefilter.dlq"))
    # Too small for the dead letter (its headers carry the error and traceback), large
    # enough for a transaction marker (~80 bytes): a broker whose abort marker is refused
    # wedges that transactional id for good (its coordinator throws on MESSAGE_TOO_LARGE).
    limit = ConfigEntry("max.message.bytes", "200", incremental_operation=AlterConfigOpType.SET)
    admin.incremental_alter_configs(
        [ConfigResource(dlq.restype, dlq.name, incremental_configs=[limit])]
    )[dlq].result()
    workers.start(**FAST_RETRIES)
    producer = Producer(settings.confluent_config())
    producer.produce(settings.topic(catalog.INBOUND), b"\xff not an email", key=b"poison-1")
    assert producer.flush(10) == 0
    wait_for(
        lambda: "stage prefilter stalled" in workers.logs(),
        timeout_s=60,
        what="the stage to report the stall",
    )
    group = f"{settings.app_id}.prefilter"
    inbound = settings.topic(catalog.INBOUND)

    def committed() -> int:
        request = [
            ConsumerGroupTopicPartitions(group, [TopicPartition(inbound, p) for p in range(6)])
        ]
        result = admin.list_consumer_group_offsets(request)[group].result()
        return sum(max(tp.offset, 0) for tp in result.topic_partitions)

    assert committed() == 0  # the poison record's offset is not committed
    assert keys(settings, "prefilter.dlq") == []
    reset = ConfigEntry("max.message.bytes", None, incremental_operation=AlterConfigOpType.DELETE)
    admin.incremental_alter_configs(
        [ConfigResource(dlq.restype, dlq.name, incremental_configs=[reset])]
    )[dlq].result()
    wait_for(
        lambda: keys(settings, "prefilter.dlq") == ["poison-1"],
        timeout_s=60,
        what="the dead letter written once the topic takes it",
    )
    wait_for(lambda: committed() == 1, timeout_s=30, what="the offset committed after")
    assert "stage prefilter recovered" in workers.logs()
