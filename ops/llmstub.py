"""A scripted OpenAI-compatible server on loopback: real sockets, the real response shape
(with ``usage``), answers chosen per request by a function the caller gives. Tests, the
eval's cascade measurement and the bench talk to it as to any endpoint."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: request body -> (status, body) or a completion body (status 200)
Script = Callable[[dict[str, Any]], Any]


def completion(
    content: str, prompt_tokens: int = 100, completion_tokens: int = 20
) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": 1_795_000_000,
        "model": "scripted",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # a worker opens dozens of connections at once
    daemon_threads = True


class ScriptedServer:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._script: Script = lambda body: (503, {"error": {"message": "no script"}})
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                server.requests.append({"path": self.path, "body": body})
                answer = server._script(body)
                status, payload = answer if isinstance(answer, tuple) else (200, answer)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                return None

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def script(self, script: Script) -> None:
        self._script = script

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class Faulty:
    """A script that is slow, fails a share of calls (HTTP 503), can be switched down, and
    counts the tokens of every answer it gave (to check what mailroom charged)."""

    def __init__(
        self,
        answer: Script,
        *,
        latency_s: tuple[float, float] = (0.2, 2.0),
        error_rate: float = 0.12,
        seed: int = 0,
    ) -> None:
        self.answer = answer
        self.latency_s = latency_s
        self.error_rate = error_rate
        self.down = False
        self.served = 0
        self.failed = 0
        self.waited_s = 0.0  # the latency it gave every call, served or failed
        self.tokens = [0, 0]
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> Any:
        with self._lock:
            delay = self._random.uniform(*self.latency_s)
            fail = self.down or self._random.random() < self.error_rate
            self.waited_s += delay
        time.sleep(delay)
        if fail:
            with self._lock:
                self.failed += 1
            return 503, {"error": {"message": "scripted failure", "type": "server_error"}}
        result = self.answer(body)
        with self._lock:
            self.served += 1
            self.tokens[0] += result["usage"]["prompt_tokens"]
            self.tokens[1] += result["usage"]["completion_tokens"]
        return result

    @property
    def calls(self) -> int:
        return self.served + self.failed
