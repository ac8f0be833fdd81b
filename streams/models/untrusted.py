"""Email text is data, never instructions: how it is made safe to put before a model.

``neutralise`` folds look-alike characters (NFKC), drops invisible ones (Unicode tag
characters U+E0000-E007F that smuggle text past a reader, zero-width characters that split
words, bidi controls that reorder them), defuses forged role and boundary tokens
(``<|im_start|>``, ``[INST]``, ``</email>``, our own delimiter's shape) and cuts the text at
a set length. ``enclose`` puts it inside a delimiter made fresh for every call, which the
text cannot have guessed. ``mask_pii`` takes addresses, phone and card numbers out before
text leaves for a remote endpoint that may not see them.
"""

from __future__ import annotations

import re
import secrets
import unicodedata

from streams.telemetry.logs import redact

MAX_CHARS = 6000

# Format characters (Cf: zero-width, bidi controls, tags, the BOM...) and the tag block.
_INVISIBLE = re.compile(r"[\U000E0000-\U000E007F]")
_FORGED = re.compile(
    r"<\|[^|<>]{0,40}\|>"  # chat-template tokens: <|im_start|>, <|system|>, <|eot_id|>
    r"|\[/?INST\]|<<\s*/?\s*SYS\s*>>|</?s>"  # Llama-2 style
    r"|</?\s*(?:email|e-mail|message|system|assistant|user|instructions?)\b[^>]{0,40}>"
    r"|<{2,}/?\s*EMAIL-[0-9a-f]*\s*>{2,}"  # the shape of our own delimiter
    r"|^\s*(?:#{1,6}\s*)?(?:system|assistant|developer)\s*:",  # a role line
    re.IGNORECASE | re.MULTILINE,
)


def neutralise(text: str, limit: int = MAX_CHARS) -> str:
    """The text with nothing hidden, no forged token and at most ``limit`` characters."""
    text = unicodedata.normalize("NFKC", text)
    text = _INVISIBLE.sub("", text)
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) != "Cf")
    text = _FORGED.sub(lambda m: "(" + re.sub(r"[^\w ]", "", m.group()).strip() + ")", text)
    if len(text) > limit:
        text = text[:limit] + " [cut]"
    return text


def delimiter() -> str:
    """A boundary no email can contain: fresh random hex for every call."""
    return f"EMAIL-{secrets.token_hex(8)}"


def enclose(text: str, boundary: str) -> str:
    return f"<<{boundary}>>\n{text}\n<</{boundary}>>"


def mask_pii(text: str) -> str:
    """Addresses, phone and card numbers out (for endpoints with ``send_pii: false``)."""
    return redact(text)
