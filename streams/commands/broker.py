"""The embedded broker: real Apache Kafka nodes (KRaft, broker + controller) as processes.

The jars come from Maven Central through ``ops/kafka/pom.xml`` (``fetch_jars``). The data
directory holds everything a node owns, so topics and records survive stop/start::

    <data_dir>/kafka/server.properties   rendered from ops/kafka/server.properties.template
    <data_dir>/kafka/log4j2.properties   broker logging -> <data_dir>/kafka/broker.log
    <data_dir>/kafka/logs/               the log segments (formatted on first start)
    <data_dir>/kafka/broker.pid          pid of the running JVM
    <data_dir>/kafka/stdout.log          what the JVM printed itself

A cluster of N nodes is ``streams/commands/cluster.py``.

Errors raised here are ``BrokerError`` with a message that says what to do.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from streams.commands.tls import broker_properties, ensure_tls, scram_arguments
from streams.errors import BrokerError
from streams.settings import Settings

KAFKA_MAIN = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"


def default_kafka_dir() -> Path:
    """``ops/kafka`` of the checkout this package was installed from (editable install)."""
    return Path(__file__).resolve().parents[2] / "ops" / "kafka"


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    port: int
    data_dir: Path
    log_file: Path

    def describe(self) -> str:
        state = f"running (pid {self.pid})" if self.running else "stopped"
        return (
            f"broker: {state}\nport: {self.port}\ndata dir: {self.data_dir}\nlog: {self.log_file}"
        )


class EmbeddedBroker:
    """Start, stop and inspect one Kafka node of a data directory (node 1 of 1 by default)."""

    def __init__(self, settings: Settings, node: int = 1, nodes: int = 1) -> None:
        self.settings = settings
        self.node, self.nodes = node, nodes
        self.port = settings.broker_port + 2 * (node - 1)
        self.controller_port = settings.controller_port + 2 * (node - 1)
        self.kafka_dir = (settings.kafka_dir or default_kafka_dir()).resolve()
        folder = "kafka" if nodes == 1 else f"kafka-{node}"
        self.home = (settings.data_dir / folder).resolve()
        self.pid_file = self.home / "broker.pid"
        self.log_file = self.home / "broker.log"
        self.stdout_file = self.home / "stdout.log"
        self.properties_file = self.home / "server.properties"
        self.log_dirs = self.home / "logs"
        self._proc: subprocess.Popen[bytes] | None = None

    # -- jars -------------------------------------------------------------------------
    @property
    def lib_dir(self) -> Path:
        return self.kafka_dir / "target" / "lib"

    def fetch_jars(self) -> Path:
        """Fetch the Kafka jars with Maven; a no-op while the pom is unchanged since."""
        pom = self.kafka_dir / "pom.xml"
        if not pom.exists():
            raise BrokerError(f"no pom.xml in {self.kafka_dir}; set MAILROOM_KAFKA_DIR")
        stamp = self.lib_dir / ".pom.sha256"
        digest = hashlib.sha256(pom.read_bytes()).hexdigest()
        if stamp.exists() and stamp.read_text() == digest:
            return self.lib_dir
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError("Maven (mvn) is not on PATH; install it to fetch the Kafka jars")
        shutil.rmtree(self.lib_dir, ignore_errors=True)  # no stale jar may shadow a new one
        proc = subprocess.run(
            [mvn, "-B", "-q", "-f", str(pom), "dependency:copy-dependencies"],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0 or not any(self.lib_dir.glob("kafka_2.13-*.jar")):
            raise BrokerError(f"fetching the Kafka jars with Maven failed:\n{proc.stdout[-2000:]}")
        stamp.write_text(digest)
        return self.lib_dir

    def _java(self) -> list[str]:
        java_home = os.environ.get("JAVA_HOME")
        java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
        if not java:
            raise BrokerError("java is not on PATH; Kafka needs Java 17 or newer")
        return [
            java,
            "-Xms256m",
            f"-Xmx{self.settings.broker_heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            "-cp",
            str(self.lib_dir / "*"),
        ]

    # -- state ------------------------------------------------------------------------
    @property
    def secured(self) -> bool:
        return self.settings.broker_security == "SASL_SSL"

    def client_config(self) -> dict[str, Any]:
        """A client of this node alone: plain, or as the settings' SASL user over TLS."""
        config: dict[str, Any] = {"bootstrap.servers": f"127.0.0.1:{self.port}", "log_level": 0}
        if self.secured:
            settings = self.settings.model_copy(
                update={
                    "security_protocol": "SASL_SSL",
                    "bootstrap_servers": f"127.0.0.1:{self.port}",
                }
            )
            config = {**settings.confluent_config(), "log_level": 0}
            config.pop("logger", None)
        return config

    def pid(self) -> int | None:
        """The pid of this data dir's broker, if it is alive (checked against /proc)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError):
            return None
        # A recycled pid belongs to someone else: only ours names our properties file.
        if KAFKA_MAIN.encode() in cmdline and str(self.properties_file).encode() in cmdline:
            return pid
        return None

    def status(self) -> BrokerStatus:
        pid = self.pid()
        return BrokerStatus(pid is not None, pid, self.port, self.home, self.log_file)

    # -- start ------------------------------------------------------------------------
    def start(self) -> BrokerStatus:
        """Start the broker unless it runs; return once it answers metadata requests."""
        if self.pid() is not None:
            self.wait_ready()
            return self.status()
        proc = self.launch(new_cluster_id())
        try:
            self.wait_ready(proc)
        except BrokerError:
            self._kill(proc.pid)
            raise
        return self.status()

    def launch(self, cluster_id: str) -> subprocess.Popen[bytes]:
        """Render, format (first time, with ``cluster_id``) and start the JVM; no wait."""
        if self._proc is not None:
            self._proc.poll()  # reap the JVM of an earlier launch if it died (a kill)
        for port in (self.port, self.controller_port):
            _ensure_port_free(port)
        self.fetch_jars()
        self.home.mkdir(parents=True, exist_ok=True)
        self._render_config()
        if not (self.log_dirs / "meta.properties").exists():
            self._format_storage(cluster_id)
        with self.stdout_file.open("ab") as out:
            proc = subprocess.Popen(
                [*self._java(), KAFKA_MAIN, str(self.properties_file)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.home,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        # Kept so the child is reaped by us (and Popen does not warn it still runs).
        self._proc = proc
        return proc

    def _render_config(self) -> None:
        template = (self.kafka_dir / "server.properties.template").read_text()
        voters = ",".join(
            f"{n}@127.0.0.1:{self.settings.controller_port + 2 * (n - 1)}"
            for n in range(1, self.nodes + 1)
        )
        values = {
            "port": str(self.port),
            "controller_port": str(self.controller_port),
            "log_dirs": str(self.log_dirs),
            "node_id": str(self.node),
            "nodes": str(self.nodes),
            "voters": voters,
            "replication": str(min(3, self.nodes)),
            "min_isr": str(min(2, self.nodes)),
            "listener": self.settings.broker_security,
            "security": broker_properties(ensure_tls(self.settings)) if self.secured else "",
        }
        self.properties_file.write_text(template.format(**values))
        self.properties_file.chmod(0o600)  # passwords, when secured
        log4j = (self.kafka_dir / "log4j2.properties.template").read_text()
        (self.home / "log4j2.properties").write_text(log4j.format(log_file=self.log_file))

    def _format_storage(self, cluster_id: str) -> None:
        cmd = [
            *self._java(),
            STORAGE_TOOL,
            "format",
            "--ignore-formatted",
            "-t",
            cluster_id,
            "-c",
            str(self.properties_file),
        ]
        if self.secured:
            cmd += scram_arguments(self.settings, ensure_tls(self.settings))
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise BrokerError(f"formatting Kafka storage failed:\n{proc.stdout}{proc.stderr}")

    def wait_ready(self, proc: subprocess.Popen[bytes] | None = None) -> None:
        """Wait until the broker answers a metadata request, or raise with its log tail."""
        deadline = time.monotonic() + self.settings.broker_start_timeout_s
        admin = AdminClient(self.client_config())
        while True:
            if proc is not None and proc.poll() is not None:
                raise BrokerError(f"Kafka exited with code {proc.returncode}:\n{self.log_tail()}")
            last = partitions_not_ready(admin, timeout_s=1.0)
            if last is None:
                return
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"Kafka did not answer on port {self.port} within "
                    f"{self.settings.broker_start_timeout_s:.0f}s ({last}):\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def log_tail(self, lines: int = 30) -> str:
        chunks = []
        for path in (self.stdout_file, self.log_file):
            if path.exists():
                chunks.extend(path.read_text(errors="replace").splitlines()[-lines:])
        return "\n".join(chunks)

    # -- stop -------------------------------------------------------------------------
    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop gracefully (SIGTERM, controlled shutdown), then surely (SIGKILL). By pid."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, timeout_s):
            self._kill(pid)
        if self._proc is not None and self._proc.pid == pid:
            self._proc.wait(timeout=10)
            self._proc = None
        self.pid_file.unlink(missing_ok=True)
        return True

    @staticmethod
    def _kill(pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, 10.0)


def new_cluster_id() -> str:
    """A Kafka cluster id (base64url of a UUID) that does not start with '-': the storage
    tool would read such an id as an option (1 start in 64 failed that way)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if cluster_id[0].isalnum():
            return cluster_id


def unled_partitions(metadata: Any, names: Iterable[str] | None = None) -> list[str]:
    """``topic/partition`` of every partition that has no leader (or an error) right now."""
    topics = metadata.topics
    wanted = topics if names is None else {n: topics.get(n) for n in names}
    missing = []
    for name, topic_md in wanted.items():
        if topic_md is None or topic_md.error is not None:
            missing.append(f"{name}/*")
            continue
        missing.extend(
            f"{name}/{pid}"
            for pid, part in topic_md.partitions.items()
            if part.leader < 0 or part.error is not None
        )
    return missing


def partitions_not_ready(
    admin: AdminClient, names: Iterable[str] | None = None, *, timeout_s: float
) -> str | None:
    """None when every partition (of ``names``, or of all topics) can serve requests.

    A leader in the metadata is not enough right after a restart or a topic creation:
    the leader may still be loading the log and answers NOT_LEADER. A partition is ready
    when it answers a ListOffsets request.
    """
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except Exception as exc:  # KafkaException while the node boots
        return str(exc)
    if not metadata.brokers:
        return "no broker in the metadata yet"
    leaderless = unled_partitions(metadata, names)
    if leaderless:
        return f"{len(leaderless)} partitions without a leader, e.g. {leaderless[0]}"
    try:
        partition_offsets(admin, metadata, OffsetSpec.latest(), timeout_s=timeout_s, names=names)
    except Exception as exc:
        return str(exc)
    return None


def partition_offsets(
    admin: AdminClient,
    metadata: Any,
    spec: Any,
    *,
    timeout_s: float,
    prefix: str = "",
    names: Iterable[str] | None = None,
) -> dict[tuple[str, int], int]:
    """One batched ListOffsets for every partition of ``names`` or of every prefixed topic."""
    chosen = set(names) if names is not None else None
    wanted = {
        TopicPartition(name, pid): spec
        for name, topic_md in metadata.topics.items()
        if (name in chosen if chosen is not None else not name.startswith("__"))
        and name.startswith(prefix)
        for pid in topic_md.partitions
    }
    if not wanted:
        return {}
    futures = admin.list_offsets(wanted, request_timeout=timeout_s)
    return {(tp.topic, tp.partition): f.result().offset for tp, f in futures.items()}


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            # Reap it if it is our child; otherwise just probe.
            with contextlib.suppress(ChildProcessError):
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done == pid:
                    return True
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        stat = Path(f"/proc/{pid}/stat")
        with contextlib.suppress(FileNotFoundError):
            if stat.read_text().split(") ", 1)[1].startswith("Z"):
                return True  # a zombie of another parent: it is gone
        time.sleep(0.1)
    return False


def _ensure_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise BrokerError(
                f"port {port} is already in use by another process; stop it or choose another "
                f"port with MAILROOM_BROKER_PORT / MAILROOM_CONTROLLER_PORT"
            ) from exc
