"""Generate: a reply draft from per-category templates, filled with the action items.

``temperature`` varies the wording, deterministically: the random choices are seeded by the
message id and the iteration, so a retry writes the same draft. Higher temperatures pick
from a wider set of phrasings, some of them chatty (too long) or terse (an item left out),
which the quality checker catches; its feedback from the last iteration is applied here
(every listed item addressed, filler dropped), so a revision converges.
"""

from __future__ import annotations

import hashlib
import random

from processors.models import ActionItem, DraftRequest, DraftResult

MODEL_NAME = "templates"

OPENERS = {
    "billing": [
        "Thank you for reaching out about your billing question.",
        "Thanks for letting us know about the charge on your account.",
        "Thank you for your message about your invoice.",
    ],
    "technical": [
        "Thank you for reporting this problem.",
        "Thanks for the details about the issue you ran into.",
        "Thank you for letting us know that something is not working.",
    ],
    "account": [
        "Thank you for contacting us about your account.",
        "Thanks for your message about your account settings.",
    ],
    "feature_request": [
        "Thank you for your suggestion.",
        "Thanks for taking the time to share this idea with us.",
    ],
    "other": ["Thank you for your message.", "Thanks for getting in touch with us."],
}
ITEM_LINES = {
    "refund": "We have started the refund{amount}{ref}; it will reach you within 5 business days.",
    "cancel": "We have processed your cancellation request{ref}, and you will get a confirmation.",
    "invoice": "We will send you a corrected invoice{ref} within one business day.",
    "fix": "Our engineers are looking into the problem you described{ref} and will update you.",
    "update_account": "We have updated your account as requested{ref}.",
    "feature": "We have shared your feature idea with our product team.",
    "callback": "A member of our team will call you back during business hours.",
}
FILLER = (
    "We truly value each and every one of our customers, and we want you to know that "
    "your satisfaction is at the very heart of everything that we do here, every day, "
    "in every team, across every single one of our offices around the world. "
) * 3
CLOSINGS = [
    "Kind regards,\nThe Support Team",
    "Best regards,\nThe Support Team",
    "Warm regards,\nCustomer Care",
]


def _rng(message_id: str, iteration: int) -> random.Random:
    digest = hashlib.sha256(f"{message_id}#{iteration}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def item_line(item: ActionItem) -> str:
    amount = f" of {item.amount:.2f} {item.currency or ''}".rstrip() if item.amount else ""
    ref = f" for {item.account_ref}" if item.account_ref else ""
    return ITEM_LINES.get(item.kind, "We are following up on your request.").format(
        amount=amount, ref=ref
    )


def generate(request: DraftRequest) -> DraftResult:
    rng = _rng(request.message_id, request.iteration)
    feedback = " ".join(request.feedback).lower()
    name = request.customer_name.split()[0] if request.customer_name.strip() else ""
    greeting = f"Dear {name}," if name else "Hello,"
    opener = rng.choice(OPENERS.get(request.category, OPENERS["other"]))
    lines = [item_line(item) for item in request.action_items]
    # Hot and unguided: sometimes terse (drops an item) or chatty (adds filler).
    wild = request.temperature >= 0.6 and not feedback
    if wild and lines and rng.random() < 0.35:
        lines.pop(rng.randrange(len(lines)))
    if wild and rng.random() < 0.3:
        lines.append(FILLER.strip())
    if not lines:
        lines.append("We have received your message and will follow up if we need anything.")
    closing = rng.choice(CLOSINGS)
    text = "\n\n".join([greeting, opener, " ".join(lines), closing])
    return DraftResult(text=text)


FALLBACK_MODEL = "plain-template"


def generate_plain(request: DraftRequest) -> DraftResult:
    """The fallback: one fixed, safe wording with every action item; no temperature."""
    name = request.customer_name.split()[0] if request.customer_name.strip() else ""
    lines = [item_line(item) for item in request.action_items] or [
        "We have received your message and will follow up if we need anything."
    ]
    text = "\n\n".join(
        [
            f"Dear {name}," if name else "Hello,",
            "Thank you for your message.",
            " ".join(lines),
            "Kind regards,\nThe Support Team",
        ]
    )
    return DraftResult(text=text)
