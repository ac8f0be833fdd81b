"""What a command says about its ``MAILROOM_*`` variables before it runs: the one that
cannot be used, as one line naming it, and the one that is no setting at all."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator, Mapping

from pydantic import ValidationError
from pydantic_settings import SettingsError

from streams.errors import FaultSpecError
from streams.guard.faults import parse_faults
from streams.settings import Settings

#: variables of mailroom's own tests and bench, not settings
OWN_VARIABLES = ("MAILROOM_TEST_", "MAILROOM_BENCH_", "MAILROOM_SHARED_DATA")


def unknown_variables(environ: Mapping[str, str] = os.environ) -> Iterator[str]:
    """A warning for each MAILROOM_* variable that is no setting (a misspelt one is
    otherwise ignored without a word), with the setting it is closest to."""
    known = {f"MAILROOM_{name.upper()}" for name in Settings.model_fields}
    for name in sorted(environ):
        if not name.startswith("MAILROOM_") or name in known or name.startswith(OWN_VARIABLES):
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
        hint = f"; did you mean {close[0]}?" if close else ""
        yield f"{name} is not a mailroom setting{hint}"


def problems(exc: SettingsError | ValidationError) -> list[str]:
    """One line per variable that cannot be used, each naming it."""
    if isinstance(exc, SettingsError):  # JSON that does not parse
        field = re.search(r'field "(\w+)"', str(exc))
        where = f"MAILROOM_{field.group(1).upper()}" if field else "a MAILROOM_* variable"
        why = f"{exc.__cause__}"[:200] if exc.__cause__ else str(exc)
        return [f"{where}: not JSON: {why}"]
    return [
        "MAILROOM_" + "_".join(str(p) for p in problem["loc"]).upper() + f": {problem['msg']}"
        for problem in exc.errors()
    ]


def check_faults(settings: Settings) -> None:
    """A fault spec that cannot be used, before anything starts (the worker reads it)."""
    try:
        parse_faults(settings.faults)
    except FaultSpecError as exc:
        raise FaultSpecError(f"MAILROOM_FAULTS: {exc}") from None
