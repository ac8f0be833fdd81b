"""The whole pipeline: a worker in its own process, emails in through the CLI and kcat."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from streams.commands.audit import run_audit
from streams.engine.kafka import read_keys
from streams.settings import Settings
from streams.taxonomy import SAMPLE
from tests.e2e.harness import Workers, cli, settled
from tests.kafka_helpers import wait_for
from topics import catalog
from topics.codec import Codec

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "processors" / "data"
MAIL = ROOT / "tests" / "fixtures" / "mail"


def test_200_emails_and_a_kcat_email_all_end_in_exactly_one_terminal_topic(
    pipeline: tuple[Settings, Workers],
) -> None:
    settings, workers = pipeline
    workers.start()
    training = [json.loads(line) for line in (DATA / "training.jsonl").read_text().splitlines()]
    batch = settings.data_dir / "batch.jsonl"
    batch.write_text("".join(json.dumps(r) + "\n" for r in training[:200]))
    produced = cli(settings, "produce", str(batch))
    assert produced.returncode == 0, produced.stderr
    assert "produced 200 emails" in produced.stdout
    kcat = shutil.which("kcat")
    assert kcat, "kcat is installed by make setup / .ci/run"
    subprocess.run(
        [
            kcat,
            "-P",
            "-b",
            settings.bootstrap_servers,
            "-t",
            settings.topic(catalog.INBOUND),
            "-k",
            "<kcat-1@example.com>",
        ],
        input=b'{"sender": "kc@example.com", "subject": "Refund", '
        b'"body_text": "Please refund the double charge of $20 on INV-7781."}',
        check=True,
        timeout=60,
    )
    wait_for(lambda: settled(settings, 201), timeout_s=180, what="every email terminal")
    audit = cli(settings, "audit")
    assert audit.returncode == 0, audit.stdout
    assert "missing (in no terminal topic): 0" in audit.stdout
    assert "in more than one terminal topic: 0" in audit.stdout
    answered = {k for k, _, _ in read_keys(settings, catalog.RESPONSES)}
    escalated = {k for k, _, _ in read_keys(settings, catalog.ESCALATIONS)}
    assert b"<kcat-1@example.com>" in answered | escalated
    assert len(answered) > 100  # most sample emails are answered automatically


def test_a_critical_email_never_reaches_the_generator(
    pipeline: tuple[Settings, Workers], tmp_path: Path
) -> None:
    settings, workers = pipeline
    workers.start()
    mail = tmp_path / "critical.jsonl"
    mail.write_text(
        json.dumps(
            {
                "message_id": "<critical-1@example.com>",
                "sender": "cto@bigcustomer.example",
                "subject": "OUTAGE",
                "body_text": "Our whole team is down and production is completely "
                "broken since 9am. We are losing money every minute. Fix it now.",
            }
        )
        + "\n"
    )
    assert cli(settings, "produce", str(mail)).returncode == 0
    escalations = wait_for(
        lambda: read_keys(settings, catalog.ESCALATIONS), timeout_s=120, what="the escalation"
    )
    record = Codec("Escalation").decode(escalations[0][1])
    assert record["reason"] == "critical_urgency"
    stages = [d["stage"] for d in record["decisions"]]
    assert "generate" not in stages
    assert stages[-2:] == ["route", "escalate"]
    assert read_keys(settings, catalog.DRAFTS_GENERATED) == []


def test_a_draft_that_fails_a_check_is_revised_on_the_next_vetted_answer(
    pipeline: tuple[Settings, Workers], tmp_path: Path
) -> None:
    settings, workers = pipeline
    # The team's brand now bans a phrase its best answer about double charges still uses:
    # the first draft fails the brand check, the revision is built on the next answer.
    sample = SAMPLE.read_text().replace('source = "kb"', f'source = "{SAMPLE.parent / "kb"}"')
    config = tmp_path / "mailroom.toml"
    config.write_text(
        sample.replace("banned_phrases = [", 'banned_phrases = [\n  "speed things up",')
    )
    workers.start(MAILROOM_CONFIG=str(config))
    batch = tmp_path / "batch.jsonl"
    batch.write_text(
        "".join(
            json.dumps(
                {
                    "message_id": f"<twice-{n}@example.com>",
                    "sender": f"Ana Ruiz <ana{n}@example.com>",
                    "subject": "Charged twice",
                    "body_text": "Hello, I was charged twice for the same invoice; the payment "
                    "appears two times on my card. Please check. Thanks, Ana",
                }
            )
            + "\n"
            for n in range(5)
        )
    )
    assert cli(settings, "produce", str(batch)).returncode == 0
    wait_for(lambda: settled(settings, 5), timeout_s=180, what="every email terminal")
    responses = [Codec("Response").decode(v) for _, v, _ in read_keys(settings, catalog.RESPONSES)]
    escalated = [
        Codec("Escalation").decode(v) for _, v, _ in read_keys(settings, catalog.ESCALATIONS)
    ]
    assert len(responses) == 5, [(e["reason"], e["detail"]) for e in escalated]
    for record in responses:
        checks = [d for d in record["decisions"] if d["stage"] == "quality"]
        drafts = [d for d in record["decisions"] if d["stage"] == "generate"]
        assert checks[0]["outcome"] == "revise"
        assert "failed brand" in checks[0]["detail"]
        assert "answers double-charge" in drafts[0]["detail"]
        assert "answers double-charge" not in drafts[1]["detail"]
        assert "speed things up" not in record["body"]
        assert record["iteration"] == 2
        assert record["quality_score"] >= 0.85


def test_a_join_whose_second_half_never_arrives_escalates(
    pipeline: tuple[Settings, Workers], tmp_path: Path
) -> None:
    settings, workers = pipeline
    workers.start("prefilter,classify,join,route,extract,generate,quality,escalate")  # no urgency
    mail = tmp_path / "one.jsonl"
    mail.write_text(
        json.dumps(
            {
                "message_id": "<lonely-1@example.com>",
                "sender": "a@x.example",
                "body_text": "Please refund invoice INV-1234.",
            }
        )
        + "\n"
    )
    assert cli(settings, "produce", str(mail)).returncode == 0
    escalations = wait_for(
        lambda: read_keys(settings, catalog.ESCALATIONS), timeout_s=120, what="the join timeout"
    )
    record = Codec("Escalation").decode(escalations[0][1])
    assert record["reason"] == "join_timeout"
    assert "no urgency result" in record["detail"]


def test_two_workers_share_the_partitions(pipeline: tuple[Settings, Workers]) -> None:
    settings, workers = pipeline
    workers.start()
    workers.start()
    training = [json.loads(line) for line in (DATA / "training.jsonl").read_text().splitlines()]
    batch = settings.data_dir / "batch.jsonl"
    batch.write_text("".join(json.dumps(r) + "\n" for r in training[300:400]))
    assert cli(settings, "produce", str(batch), str(MAIL)).returncode == 0
    wait_for(lambda: settled(settings, 109), timeout_s=180, what="every email terminal")
    report = run_audit(settings)
    assert report.missing == []
    assert report.duplicated == {}
    logs = [p.read_text() for p in sorted(settings.data_dir.glob("worker-*.log"))]
    # Each worker was assigned some partitions of the prefilter's input.
    assert all("emails.inbound" in log and "newly assigned" in log for log in logs)


def test_four_workers_join_every_email_each_owning_both_halves_of_its_partitions(
    pipeline: tuple[Settings, Workers],
) -> None:
    from confluent_kafka.admin import AdminClient

    from streams.commands.admin import groups_not_ready

    settings, workers = pipeline
    # A half that waits for its twin on another worker waits forever; one that waits on a
    # busy machine does not: the join timeout here is long enough to tell the two apart.
    for _ in range(4):
        workers.start(MAILROOM_JOIN_TIMEOUT_S="120")
    admin = AdminClient(settings.confluent_config())
    group = f"{settings.app_id}.join"

    def joined() -> dict[str, set[tuple[str, int]]] | None:
        if groups_not_ready(settings, catalog.STAGE_NAMES, admin=admin):
            return None
        description = admin.describe_consumer_groups([group])[group].result()
        if len(description.members) != 4:
            return None
        return {
            m.member_id: {(tp.topic, tp.partition) for tp in m.assignment.topic_partitions}
            for m in description.members
        }

    members = wait_for(joined, timeout_s=240, what="four workers in every stage group")
    classified, scored = settings.topic(catalog.CLASSIFIED), settings.topic(catalog.SCORED)
    for parts in members.values():
        assert {p for t, p in parts if t == classified} == {p for t, p in parts if t == scored}
    training = [json.loads(line) for line in (DATA / "training.jsonl").read_text().splitlines()]
    batch = settings.data_dir / "batch.jsonl"
    batch.write_text("".join(json.dumps(r) + "\n" for r in training[400:500]))
    assert cli(settings, "produce", str(batch)).returncode == 0
    wait_for(lambda: settled(settings, 100), timeout_s=240, what="every email terminal")
    report = run_audit(settings)
    assert report.missing == []
    assert report.duplicated == {}
    reasons = [
        Codec("Escalation").decode(v)["reason"]
        for _, v, _ in read_keys(settings, catalog.ESCALATIONS)
    ]
    assert "join_timeout" not in reasons
