"""The knowledge base a worker answers from: the taxonomy's ``[kb] source``, indexed once
and kept in ``<data dir>/kb/index-<content hash>.pkl`` (``mailroom kb index`` builds it
ahead; a worker builds it on first use)."""

from __future__ import annotations

import os
import pickle
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from processors.kb import Index, fingerprint, read_source
from streams.taxonomy import Taxonomy


@dataclass(frozen=True)
class Built:
    index: Index
    path: Path
    fresh: bool
    seconds: float


def build_index(data_dir: Path, taxonomy: Taxonomy, *, force: bool = False) -> Built | None:
    """The index of the taxonomy's knowledge base (None when it declares none)."""
    source = taxonomy.kb_source()
    if source is None:
        return None
    began = time.monotonic()
    kb = taxonomy.kb
    answers = read_source(source, question=kb.question, answer=kb.answer, category=kb.category)
    path = data_dir / "kb" / f"index-{fingerprint(answers)}.pkl"
    if path.exists() and not force:
        with path.open("rb") as handle:
            index: Index = pickle.load(handle)  # our own artifact, named by content hash
        return Built(index, path, False, time.monotonic() - began)
    index = Index.build(answers)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as handle:
        pickle.dump(index, handle, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)
    return Built(index, path, True, time.monotonic() - began)
