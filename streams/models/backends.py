"""The worker's chat backends: one client per configured endpoint, made on first use
(inside the running event loop) and closed when the worker stops."""

from __future__ import annotations

from streams.models.llm import ChatBackend
from streams.settings import Settings


class Backends:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.open: dict[str, ChatBackend] = {}

    def chat(self, name: str) -> ChatBackend:
        if name not in self.open:
            self.open[name] = ChatBackend(
                name, self.settings.endpoints[name], log_payloads=self.settings.log_payloads
            )
        return self.open[name]

    async def close(self) -> None:
        for chat in self.open.values():
            await chat.close()
        self.open.clear()
