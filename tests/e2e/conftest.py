"""The ``pipeline`` fixture: catalog topics under a unique prefix, workers the test starts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.commands.admin import create_topics
from streams.settings import Settings
from tests.e2e.harness import Workers


@pytest.fixture
def pipeline(kafka: Settings, tmp_path: Path) -> Iterator[tuple[Settings, Workers]]:
    settings = kafka.model_copy(update={"data_dir": tmp_path, "join_timeout_s": 5.0})
    create_topics(settings)
    workers = Workers(settings)
    try:
        yield settings, workers
    finally:
        workers.stop()
