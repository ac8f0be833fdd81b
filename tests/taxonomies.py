"""Taxonomy files for tests, written the way a team writes its ``mailroom.toml``."""

from __future__ import annotations

import re
from pathlib import Path

from streams.taxonomy import SAMPLE


def sample_without_kb(folder: Path) -> Path:
    """The sample company's taxonomy with no knowledge base: replies are not grounded in
    vetted answers, only checked against the email."""
    text = re.sub(r'^source = "kb".*$', "", SAMPLE.read_text(), flags=re.M)
    path = folder / "mailroom.toml"
    path.write_text(text)
    return path


def write(folder: Path, text: str, name: str = "mailroom.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path
