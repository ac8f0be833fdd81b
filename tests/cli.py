"""``mailroom`` as a user runs it: the CLI in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``mailroom *args`` with exactly ``env``; its exit code and output as text."""
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def clean_env(**settings: str) -> dict[str, str]:
    """This process's environment with no MAILROOM_* variable but ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILROOM_")}
    env.update(settings)
    return env
