"""Running the pipeline as a user does: workers as processes, the CLI as a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from streams.commands.audit import run_audit
from streams.settings import Settings
from tests.cli import run_cli


def env_for(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "MAILROOM_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "MAILROOM_TOPIC_PREFIX": settings.topic_prefix,
        "MAILROOM_APP_ID": settings.app_id,
        "MAILROOM_DATA_DIR": str(settings.data_dir),
        "MAILROOM_JOIN_TIMEOUT_S": str(settings.join_timeout_s),
        "MAILROOM_METRICS_PORT": "0",
    }


def cli(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env={**env_for(settings), **env}, timeout=300)


class Workers:
    """Worker processes of one test, stopped (by pid) when it ends."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, stages: str = "", **env: str) -> subprocess.Popen[bytes]:
        args = [sys.executable, "-m", "streams.cli", "worker"]
        if stages:
            args += ["--stages", stages]
        with (self.settings.data_dir / f"worker-{len(self.procs)}.log").open("wb") as log:
            proc = subprocess.Popen(
                args, env={**env_for(self.settings), **env}, stdout=log, stderr=subprocess.STDOUT
            )
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL, by pid: no shutdown, no final commit."""
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def logs(self) -> str:
        return "".join(
            p.read_text(errors="replace")
            for p in sorted(self.settings.data_dir.glob("worker-*.log"))
        )


def settled(settings: Settings, expected: int) -> bool:
    """Every inbound email (at least ``expected``) has an outcome."""
    report = run_audit(settings)
    return report.inbound >= expected and not report.missing


def drained(settings: Settings) -> bool:
    """Every stage's consumer group has committed up to the end of each of its inputs."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient, OffsetSpec

    from topics import catalog

    admin = AdminClient(settings.confluent_config())
    for spec in catalog.STAGES:
        for group, topics in (
            (f"{settings.app_id}.{spec.name}", spec.inputs),
            (f"{settings.app_id}.{spec.name}.retry", spec.retry_topics(settings.retry_tiers)),
        ):
            names = [settings.topic(t) for t in topics]
            parts = [TopicPartition(n, p) for n in names for p in range(6)]
            ends = {
                (tp.topic, tp.partition): f.result().offset
                for tp, f in admin.list_offsets({tp: OffsetSpec.latest() for tp in parts}).items()
            }
            request = [ConsumerGroupTopicPartitions(group, parts)]
            committed = admin.list_consumer_group_offsets(request)[group].result()
            for tp in committed.topic_partitions:
                end = ends[(tp.topic, tp.partition)]
                if end > 0 and tp.offset < end:
                    return False
    return True
