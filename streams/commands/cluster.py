"""A local Kafka cluster of N embedded nodes (``mailroom broker start --nodes 3``): node n
in ``<data_dir>/kafka-<n>/`` with ports ``MAILROOM_BROKER_PORT + 2(n-1)`` and
``MAILROOM_CONTROLLER_PORT + 2(n-1)``; every node is a voter of the KRaft quorum; topics
are replicated min(3, N) times with min.insync.replicas min(2, N). For tests, and for
users who want to see replication work (kill a node, the cluster goes on)."""

from __future__ import annotations

import re
import time
from typing import Annotated

import typer
from rich.console import Console

from streams.commands.broker import BrokerStatus, EmbeddedBroker, new_cluster_id
from streams.errors import BrokerError
from streams.settings import Settings

broker_app = typer.Typer(
    help="The embedded Kafka (KRaft): one node, or a local cluster.", no_args_is_help=True
)
console = Console()


class EmbeddedCluster:
    """N embedded nodes of one data directory, one KRaft quorum: started together (the
    quorum needs a majority to elect a leader), stopped together, each one killable."""

    def __init__(self, settings: Settings, nodes: int = 3) -> None:
        if nodes < 1:
            raise BrokerError("a cluster has at least one node")
        self.nodes = [EmbeddedBroker(settings, n, nodes) for n in range(1, nodes + 1)]

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def start(self) -> list[BrokerStatus]:
        """Start every node that does not run; return once each answers."""
        cluster_id = self._cluster_id() or new_cluster_id()
        launched = {node.node: node.launch(cluster_id) for node in self.nodes if node.pid() is None}
        try:
            for node in self.nodes:
                node.wait_ready(launched.get(node.node))
        except BrokerError:
            for proc in launched.values():
                EmbeddedBroker._kill(proc.pid)
            raise
        return [node.status() for node in self.nodes]

    def _cluster_id(self) -> str | None:
        """The id the formatted nodes share (a node added later must join it)."""
        for node in self.nodes:
            meta = node.log_dirs / "meta.properties"
            if meta.exists():
                for line in meta.read_text().splitlines():
                    if line.startswith("cluster.id="):
                        return line.split("=", 1)[1].strip()
        return None

    def stop(self, timeout_s: float = 30.0) -> list[bool]:
        return [node.stop(timeout_s) for node in self.nodes]

    def status(self) -> list[BrokerStatus]:
        return [node.status() for node in self.nodes]


def found_nodes(settings: Settings) -> list[EmbeddedBroker]:
    """The nodes this data dir holds: the single node and/or a cluster's (kafka-<n>)."""
    homes = sorted(
        int(m.group(1))
        for d in settings.data_dir.glob("kafka-*")
        if (m := re.fullmatch(r"kafka-(\d+)", d.name))
    )
    nodes = [EmbeddedBroker(settings, n, len(homes)) for n in homes]
    if (settings.data_dir / "kafka").exists() or not nodes:
        nodes.insert(0, EmbeddedBroker(settings))
    return nodes


@broker_app.command("start")
def broker_start(
    nodes: Annotated[int, typer.Option(min=1, max=9, help="nodes; 3 for replication")] = 1,
) -> None:
    """Start the broker, or a local cluster (fetching jars, formatting storage first)."""
    settings = Settings()
    began = time.monotonic()
    if nodes == 1:
        broker = EmbeddedBroker(settings)
        already = broker.pid() is not None
        statuses = [broker.start()]
    else:
        cluster = EmbeddedCluster(settings, nodes)
        already = all(n.pid() is not None for n in cluster.nodes)
        statuses = cluster.start()
    word = "already running" if already else f"started in {time.monotonic() - began:.1f}s"
    for status in statuses:
        console.print(
            f"kafka {word}: 127.0.0.1:{status.port} (pid {status.pid}), data {status.data_dir}"
        )
    if nodes > 1:
        servers = ",".join(f"127.0.0.1:{s.port}" for s in statuses)
        console.print(f"export MAILROOM_BOOTSTRAP_SERVERS='{servers}'")


@broker_app.command("fetch")
def broker_fetch() -> None:
    """Fetch the Kafka jars from Maven Central (a no-op when up to date)."""
    console.print(f"kafka jars in {EmbeddedBroker(Settings()).fetch_jars()}")


@broker_app.command("stop")
def broker_stop() -> None:
    """Stop every node of this data dir: SIGTERM (controlled shutdown), then SIGKILL."""
    stopped = [node.stop() for node in found_nodes(Settings())]
    console.print(
        f"kafka stopped ({sum(stopped)} nodes)" if any(stopped) else "kafka was not running"
    )


@broker_app.command("status")
def broker_status() -> None:
    """Say whether each node runs, on which port, with which data dir (exit 3: none)."""
    statuses = [node.status() for node in found_nodes(Settings())]
    for status in statuses:
        console.print(status.describe())
    if not any(status.running for status in statuses):
        raise typer.Exit(3)
