"""The LLM of scenario 4: one scripted OpenAI-compatible server (``ops.llmstub``) that
every model stage of both systems calls through mailroom's own LLM client, slow (0.2-2 s
a call) and failing (12%: HTTP 503), answering as a support model would.

Its answers depend only on the email and on how many times that email's draft has been
judged, so mailroom and the Celery peer see the same decisions for the same emails:

    classify   a category of the taxonomy by the email's hash; confidence 0.62 for one
               email in 20 (below the floor: a person), else 0.93
    urgency    critical for one email in 12 (a person, no reply drafted), else medium
    extract    one action item, no amounts
    generate   the first vetted answer it is given, naming it
    quality    approves the first draft of 7 emails in 10; 2 in 10 pass on the second
               draft; 1 in 10 never pass (revised to the loop's bound, then a person)
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from typing import Any

from ops.llmstub import completion
from streams.taxonomy import Taxonomy

ENCLOSED = re.compile(r"<<(EMAIL-[0-9a-f]+)>>\n(.*)\n<</\1>>", re.S)
VETTED = re.compile(r"--- vetted answer (\S+) \(.*?\) ---\n(.*?)(?=\n\n--- |\Z)", re.S)


def share(text: str, salt: str) -> float:
    """A number in [0, 1) fixed by ``text`` (and ``salt``)."""
    digest = hashlib.blake2b(f"{salt}\n{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class SupportModel:
    """A script for ``ScriptedServer``: a valid answer for each task's system prompt."""

    def __init__(self, taxonomy: Taxonomy) -> None:
        self.names = list(taxonomy.names)
        self._judged: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
        found = ENCLOSED.search(user)
        email = found.group(2) if found else user
        answer: dict[str, Any]
        if system.startswith("You sort"):
            pick = self.names[int(share(email, "category") * len(self.names))]
            sure = share(email, "confidence") >= 0.05
            answer = {"category": pick, "confidence": 0.93 if sure else 0.62}
        elif system.startswith("You judge"):
            critical = share(email, "urgency") < 1 / 12
            answer = {"level": "critical" if critical else "medium", "sentiment": -0.2}
        elif system.startswith("You list"):
            answer = {"items": [{"kind": "other", "text": "answer the customer's question"}]}
        elif system.startswith("You write"):
            vetted = VETTED.search(user)
            answer = (
                {"reply": vetted.group(2).strip(), "sources": [vetted.group(1)]}
                if vetted
                else {"reply": "Thank you for your message.", "sources": []}
            )
        else:
            answer = self.judge(email)
        content = json.dumps(answer)
        prompt = sum(len(m["content"]) for m in body["messages"]) // 4
        return completion(content, prompt_tokens=prompt, completion_tokens=len(content) // 4)

    def judge(self, email: str) -> dict[str, Any]:
        with self._lock:
            seen = self._judged.get(email, 0) + 1
            self._judged[email] = seen
        kind = share(email, "quality")
        passes = (kind < 0.7 and seen >= 1) or (kind < 0.9 and seen >= 2)
        if passes:
            return {"score": 0.92, "failed": [], "feedback": []}
        return {
            "score": 0.6,
            "failed": ["addresses_items"],
            "feedback": ["say what happens next with the customer's question"],
        }
