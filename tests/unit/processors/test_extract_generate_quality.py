from __future__ import annotations

import pytest

from processors.errors import Rejected
from processors.escalate import Policy, decide
from processors.extract import extract
from processors.generate import Grounding, Words, generate
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


GROUNDING = [
    Grounding("double-charge", "Charged twice", "Our billing team will check the charge.", 0.7),
    Grounding("invoice", "Corrected invoice", "We will send a corrected invoice.", 0.4),
]


def request(iteration: int, name: str = "Ana Ruiz") -> DraftRequest:
    return DraftRequest("<m@x>", "billing", name, "Charged twice", (REFUND,), iteration, 0.9)


def test_each_draft_is_built_on_the_answer_of_its_rank_and_names_it() -> None:
    first = generate(request(1), GROUNDING, Words())
    second = generate(request(2), GROUNDING, Words())
    third = generate(request(3), GROUNDING, Words())
    assert first.text.startswith("Dear Ana Ruiz,\n\nOur billing team will check the charge.")
    assert first.text.endswith("Kind regards,\nThe Support Team")
    assert (first.sources, first.relevance) == (("double-charge",), 0.7)
    assert second.sources == ("invoice",)
    assert "corrected invoice" in second.text
    assert third.sources == ("invoice",)  # no third answer: the last one again


def test_a_nameless_sender_gets_the_anonymous_greeting_and_no_grounding_no_draft() -> None:
    words = Words("Guten Tag {customer_name},", "Guten Tag,", "Freundliche Grüße\nSupport")
    assert generate(request(1, name=""), GROUNDING, words).text.startswith("Guten Tag,\n")
    with pytest.raises(Rejected, match="no vetted answer"):
        generate(request(1), [], Words())


@pytest.mark.parametrize(
    ("draft", "failed"),
    [
        (
            "Thanks. We have started the refund and our engineers are on it.",
            {"greeting", "sign_off"},
        ),
        (
            "Dear Ana,\n\n"
            + "We have started the refund. Our engineers are on it. "
            + "We value every customer and every message. " * 60
            + "\n\nKind regards,\nSupport",
            {"length"},
        ),
        (
            "Dear {name},\n\nWe have started the refund for INV-4411; our engineers are looking"
            " into it and we apologize for any inconvenience. Your colleague bo@corp.example "
            "also wrote about INV-9999 yesterday.\n\nKind regards,\nSupport",
            {"placeholder", "brand", "privacy"},
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
