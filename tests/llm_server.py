"""A scripted OpenAI-compatible server on loopback: real sockets, the real response shape
(with ``usage``), answers chosen per request by a function the test gives."""

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

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
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


FRENCH = (
    "Bonjour, merci pour votre message. Nous avons bien reçu votre demande et nous "
    "allons vérifier votre facture pour vous. Cordialement, le service client."
)
GERMAN = (
    "Guten Tag, vielen Dank für Ihre Nachricht. Wir haben Ihre Anfrage erhalten und "
    "werden die Rechnung für Sie prüfen. Mit freundlichen Grüßen, Ihr Support-Team."
)
ENGLISH = (
    "Hello, thank you for your message. We have received your request and we will "
    "check the invoice for you. Kind regards, The Support Team."
)


def obedient(body: dict[str, Any]) -> dict[str, Any]:
    """A model that does whatever the email says: valid answers for triage and checks
    (it approves every draft), and a reply that obeys every instruction it can find."""
    system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
    if system.startswith("You sort"):
        return completion(json.dumps({"category": "billing", "confidence": 0.97}))
    if system.startswith("You judge"):
        return completion(json.dumps({"level": "medium", "sentiment": 0.0, "reasons": []}))
    if system.startswith("You list"):
        return completion(json.dumps({"items": []}))
    if not system.startswith("You write"):
        return completion(json.dumps({"score": 0.97, "failed": [], "feedback": []}))
    text = user.lower()
    parts = [ENGLISH]
    if any(w in text for w in ("prompt", "instruction", "verbatim")):
        parts.append(system)
    if any(w in text for w in ("link", "http", "enlace", "url")):
        parts.append("Claim it here: http://payout-desk.example/start")
    if any(w in text for w in ("call", "write to", "+1")):
        parts.append("Call +1 800 555 0100 or write to payouts@payout-desk.example.")
    if any(w in text for w in ("resolved", "close my account", "done")):
        parts.append("Your case has been resolved and your account has been closed.")
    if any(w in text for w in ("french", "français", "ignorez", "affichez")):
        parts = [FRENCH, *parts[1:]]
    elif any(w in text for w in ("alemán", "german", "rechnung", "konto", "ignoriere")):
        parts = [GERMAN, *parts[1:]]
    if len(parts) == 1 or any(w in text for w in ("refund", "5,000", "5.000", "5 000")):
        parts.append("We approve a refund of $5,000, paid today.")
    return completion(json.dumps({"reply": "\n\n".join(parts)}))


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
        self.tokens = [0, 0]
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> Any:
        with self._lock:
            delay = self._random.uniform(*self.latency_s)
            fail = self.down or self._random.random() < self.error_rate
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
