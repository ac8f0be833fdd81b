"""The scripted OpenAI-compatible server (``ops.llmstub``) and the scripts tests give it."""

from __future__ import annotations

import json
from typing import Any

from ops.llmstub import Faulty, Script, ScriptedServer, completion

__all__ = ["Faulty", "Script", "ScriptedServer", "completion", "obedient"]


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
