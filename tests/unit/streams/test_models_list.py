"""``mailroom models list``: the chains as configured, breaker states as a worker serves them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from streams.commands.models import chains
from streams.settings import Settings

METRICS = (
    b"# TYPE mailroom_breaker_state gauge\n"
    b'mailroom_breaker_state{model="gpt"} 2.0\n'
    b'mailroom_breaker_state{model="vader-cues"} 0.0\n'
)


@pytest.fixture
def worker_metrics() -> Iterator[int]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(METRICS)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_each_stage_s_chain_with_its_endpoint_prices_and_breaker(worker_metrics: int) -> None:
    settings = Settings(
        metrics_port=worker_metrics,
        endpoints={  # type: ignore[dict-item]
            "gpt": {
                "base_url": "https://llm.example/v1",
                "model": "gpt-x",
                "input_usd_per_mtok": 0.15,
                "output_usd_per_mtok": 0.6,
            }
        },
        models={"generate": ("gpt", "local")},
    )
    rows = {(r.stage, r.position): r for r in chains(settings)}
    assert len(rows) == 6  # five stages, generate with two backends
    gpt = rows[("generate", 1)]
    assert (gpt.backend, gpt.model, gpt.where) == ("gpt", "gpt-x", "https://llm.example/v1")
    assert gpt.prices == "$0.15 in / $0.6 out per Mtok"
    assert gpt.breaker == "open"
    assert rows[("generate", 2)].backend == "local"
    assert rows[("urgency", 1)].breaker == "closed"
    assert rows[("classify", 1)].breaker == "closed (no call yet)"


def test_without_a_running_worker_it_says_so() -> None:
    rows = chains(Settings(metrics_port=0))
    assert {r.breaker for r in rows} == {"no worker metrics"}
    assert all(r.backend == "local" for r in rows)
