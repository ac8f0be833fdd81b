"""Session fixtures: the real embedded Kafka, started and stopped through the project's code."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.commands.broker import EmbeddedBroker
from streams.settings import Settings
from tests.kafka_helpers import free_port, unique

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def broker_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """One broker for the whole session, on free ports, in a temporary data dir.

    Set MAILROOM_TEST_BOOTSTRAP to use a broker you run yourself instead.
    """
    external = os.environ.get("MAILROOM_TEST_BOOTSTRAP")
    if external:
        yield Settings(bootstrap_servers=external)
        return
    port, controller = free_port(), free_port()
    settings = Settings(
        bootstrap_servers=f"127.0.0.1:{port}",
        broker_port=port,
        controller_port=controller,
        data_dir=tmp_path_factory.mktemp("kafka-session"),
    )
    broker = EmbeddedBroker(settings)
    broker.start()
    try:
        yield settings
    finally:
        broker.stop()


@pytest.fixture
def kafka(broker_settings: Settings) -> Settings:
    """Settings with a unique topic prefix and consumer group for one test."""
    name = unique("t")
    return broker_settings.model_copy(update={"topic_prefix": f"{name}.", "app_id": name})


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def catalog_routes() -> Iterator[None]:
    """A test that runs stages with a taxonomy of its own changes the catalog's route
    topics for the process (as a worker does once at start): put the sample's back."""
    from topics import catalog

    routes = catalog.ROUTES
    yield
    if routes != catalog.ROUTES:
        catalog.configure_routes(routes)
