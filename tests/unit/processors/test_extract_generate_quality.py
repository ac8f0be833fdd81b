from __future__ import annotations

import pytest

from processors.escalate import Policy, decide
from processors.extract import extract
from processors.generate import FILLER, generate
from processors.loop import LoopPolicy, next_step, temperature
from processors.models import ActionItem, DraftRequest, EscalationRequest, QualityRequest
from processors.quality import brand_phrases, check


@pytest.mark.parametrize(
    ("body", "kind", "amount", "currency", "due", "ref"),
    [
        (
            "I was charged twice for INV-4411, please refund EUR 49.00.",
            "refund",
            49.0,
            "EUR",
            None,
            "INV-4411",
        ),
        (
            "Please refund the $1,250.50 you took on 3 March.",
            "refund",
            1250.5,
            "USD",
            "3 March",
            None,
        ),
        ("Please cancel my subscription by Friday.", "cancel", None, None, "by Friday", None),
        ("The app crashes on export since 2024-05-02.", "fix", None, None, "2024-05-02", None),
        ("Please unlock account ACC-55123.", "update_account", None, None, None, "ACC-55123"),
        ("It would be great to have a PDF export.", "feature", None, None, None, None),
        ("Could you call me back tomorrow?", "callback", None, None, "tomorrow", None),
    ],
)
def test_extract_finds_action_items(
    body: str,
    kind: str,
    amount: float | None,
    currency: str | None,
    due: str | None,
    ref: str | None,
) -> None:
    (item,) = [i for i in extract("Help", body) if i.kind == kind]
    assert (item.amount, item.currency, item.due, item.account_ref) == (amount, currency, due, ref)


def test_extract_finds_several_items_once_each() -> None:
    items = extract("Billing", "Refund the double charge. Also the app crashes. Refund now!")
    assert [i.kind for i in items] == ["refund", "fix"]


REFUND = ActionItem("refund", "refund it", 49.0, "EUR", None, "INV-4411")
FIX = ActionItem("fix", "app crashes")


def request(
    iteration: int = 1, feedback: tuple[str, ...] = (), temp: float = 0.2, mid: str = "<a@x>"
) -> DraftRequest:
    return DraftRequest(
        mid, "billing", "Ana Ruiz", "Charged twice", (REFUND, FIX), iteration, temp, feedback
    )


def test_generate_is_deterministic_per_message_and_iteration() -> None:
    assert generate(request()) == generate(request())
    texts = {generate(request(mid=f"<{n}@x>", temp=0.9)).text for n in range(30)}
    assert len(texts) > 3  # temperature varies the wording


def test_a_cool_draft_addresses_every_item_and_passes() -> None:
    draft = generate(request()).text
    assert draft.startswith("Dear Ana,")
    assert "49.00 EUR" in draft
    assert "INV-4411" in draft
    result = check(
        QualityRequest(draft, (REFUND, FIX), "ana@example.com", "Ana Ruiz"), banned=brand_phrases()
    )
    assert result.failed == ()
    assert result.score == 1.0


def test_hot_drafts_fail_sometimes_and_feedback_repairs_them() -> None:
    banned = brand_phrases()
    repaired = 0
    for n in range(40):
        req = request(mid=f"<hot-{n}@x>", temp=0.9)
        first = check(
            QualityRequest(generate(req).text, (REFUND, FIX), "a@x", "Ana"), banned=banned
        )
        if first.score >= 0.85:
            continue
        second_req = request(iteration=2, feedback=first.feedback, temp=0.6, mid=f"<hot-{n}@x>")
        second = check(
            QualityRequest(generate(second_req).text, (REFUND, FIX), "a@x", "Ana"), banned=banned
        )
        assert second.score > first.score
        repaired += 1
    assert repaired >= 5


@pytest.mark.parametrize(
    ("draft", "failed"),
    [
        (
            "Thanks. We have started the refund and our engineers are on it.",
            {"greeting", "sign_off", "length"},
        ),
        (
            "Dear Ana,\n\n"
            + "We have started the refund. Our engineers are on it. "
            + FILLER
            + "\n\nKind regards,\nSupport",
            {"length"},
        ),
        (
            "Dear {name},\n\nWe have started the refund for INV-4411; our engineers are looking"
            " into it and we apologize for any inconvenience. Your colleague bo@corp.example "
            "also wrote about INV-9999 yesterday.\n\nKind regards,\nSupport",
            {"placeholder", "brand", "privacy"},
        ),
        (
            "Dear Ana,\n\nThank you for your message. We will look into your request and come "
            "back to you as soon as we can with an answer.\n\nKind regards,\nSupport",
            {"action_items"},
        ),
    ],
)
def test_quality_names_each_failed_criterion(draft: str, failed: set[str]) -> None:
    result = check(
        QualityRequest(draft, (REFUND, FIX), "ana@example.com", "Ana"), banned=brand_phrases()
    )
    assert set(result.failed) == failed
    assert 0.0 <= result.score < 1.0
    assert len(result.feedback) >= len(failed)


@pytest.mark.parametrize(
    ("score", "iteration", "best", "step"),
    [
        (0.9, 1, 0.0, "approve"),
        (0.6, 1, 0.0, "revise"),
        (0.82, 2, 0.6, "revise"),
        (0.75, 3, 0.6, "approve"),
        (0.5, 3, 0.65, "escalate"),
        (0.5, 3, 0.8, "approve"),
    ],
)
def test_loop_steps(score: float, iteration: int, best: float, step: str) -> None:
    assert next_step(score, iteration, best, policy=LoopPolicy()) == step


def test_each_revision_is_cooler() -> None:
    assert [temperature(i) for i in (1, 2, 3, 4, 5)] == [0.9, 0.6, 0.3, 0.1, 0.1]


def esc(**kw: object) -> EscalationRequest:
    base: dict[str, object] = dict(
        category="billing",
        confidence=0.95,
        urgency="medium",
        cues=(),
        action_items=(),
        draft_score=0.9,
    )
    base.update(kw)
    return EscalationRequest(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("request_", "auto", "reason"),
    [
        (esc(), True, "auto_send"),
        (esc(proposed_reason="join_timeout"), False, "join_timeout"),
        (esc(urgency="critical", cues=("outage",)), False, "critical_urgency"),
        (esc(cues=("legal_threat",)), False, "policy_legal_threat"),
        (
            esc(action_items=(ActionItem("refund", "r", 900.0, "USD"),)),
            False,
            "policy_refund_limit",
        ),
        (esc(action_items=(ActionItem("refund", "r", 90.0, "USD"),)), True, "auto_send"),
        (esc(confidence=0.55), False, "low_confidence"),
        (esc(draft_score=None), False, "no_draft"),
        (esc(draft_score=0.6), False, "low_quality"),
    ],
)
def test_escalation_policy(request_: EscalationRequest, auto: bool, reason: str) -> None:
    decision = decide(request_, policy=Policy())
    assert (decision.auto_send, decision.reason) == (auto, reason)
