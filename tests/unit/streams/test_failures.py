"""Retry routing, circuit breakers, fault injection, budgets and the model gate."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from processors.errors import Rejected, Unavailable
from streams.commands.replay import replayed_headers
from streams.engine.records import Incoming, Output, folded
from streams.engine.retry import from_retry, route_failure
from streams.errors import (
    BreakerOpenError,
    BudgetExceededError,
    FaultSpecError,
    InjectedFault,
    ReplayError,
)
from streams.guard.breaker import CircuitBreaker, State
from streams.guard.budget import Budget, fold_spend, spent_by_message
from streams.guard.faults import FaultInjector, parse_faults
from streams.guard.gate import Fallback, ModelGate
from streams.settings import BreakerPolicy, Settings
from topics import catalog
from topics import headers as h
from topics.errors import TruncatedBodyError

SPEC = catalog.stage("classify")
DELAYS = (1.0, 10.0, 60.0)


def incoming(attempt: int | None = None) -> Incoming:
    headers = [(h.TRACEPARENT, b"00-abc-def-01"), (h.MESSAGE_ID, b"<m1@x>")]
    if attempt is not None:
        headers.append((h.RETRY_ATTEMPT, str(attempt).encode()))
    return Incoming("emails.accepted", 4, 1234, b"<m1@x>", b"\xc3\x01value", headers, 1_000)


def test_a_transient_failure_goes_to_the_first_tier_with_its_due_time() -> None:
    before = int(time.time() * 1000)
    out = route_failure(SPEC, incoming(), Unavailable("model timed out"), DELAYS)
    assert out.topic == "classify.retry.1"
    assert (out.key, out.value) == (b"<m1@x>", b"\xc3\x01value")
    assert h.get(out.headers, h.RETRY_ATTEMPT) == "1"
    assert int(h.get(out.headers, h.RETRY_NOT_BEFORE) or 0) >= before + 1000
    assert h.get(out.headers, h.ORIGIN_TOPIC) == "emails.accepted"
    assert h.get(out.headers, h.ORIGIN_OFFSET) == "1234"
    assert h.get(out.headers, h.ERROR_CLASS) == "Unavailable"
    assert h.get(out.headers, h.TRACEPARENT) == "00-abc-def-01"  # the trace goes along


@pytest.mark.parametrize(
    ("attempt", "topic"), [(1, "classify.retry.2"), (2, "classify.retry.3"), (3, "classify.dlq")]
)
def test_each_retry_moves_one_tier_up_until_the_dead_letter_topic(attempt: int, topic: str) -> None:
    out = route_failure(SPEC, incoming(attempt), RuntimeError("boom"), DELAYS)
    assert out.topic == topic


def test_a_permanent_failure_is_dead_lettered_at_once() -> None:
    for exc in (TruncatedBodyError("Ticket", "EOF"), Rejected("bad input")):
        out = route_failure(SPEC, incoming(), exc, DELAYS)
        assert out.topic == "classify.dlq"
        assert h.get(out.headers, h.RETRY_ATTEMPT) == "0"
        assert h.get(out.headers, h.ERROR_CLASS) == type(exc).__name__


def test_a_retried_record_keeps_its_original_origin() -> None:
    first = route_failure(SPEC, incoming(), Unavailable("x"), DELAYS)
    again = from_retry(Incoming("classify.retry.1", 0, 7, first.key, first.value, first.headers, 9))
    assert (again.topic, again.partition, again.offset) == ("emails.accepted", 4, 1234)
    assert again.attempt == 1
    second = route_failure(SPEC, again, Unavailable("x"), DELAYS)
    assert h.get(second.headers, h.FIRST_FAILED_AT) == h.get(first.headers, h.FIRST_FAILED_AT)


@pytest.mark.parametrize("value", [b"abc", b"\xff", b"", b"1e3", b"-4", b"9" * 40, b"\xef\xbc\x91"])
def test_a_forged_header_is_read_as_missing_not_a_crash(value: bytes) -> None:
    """Anyone can produce to a topic, with any header: ``int()`` of one raised in the
    wrapper, before the handler's failure routing, and stopped the stage."""
    forged = [(h.MESSAGE_ID, b"<m1@x>")] + [
        (name, value)
        for name in (h.RETRY_ATTEMPT, h.ORIGIN_PARTITION, h.ORIGIN_OFFSET, h.ORIGIN_TIMESTAMP)
    ]
    record = from_retry(Incoming("classify.retry.1", 0, 7, b"<m1@x>", b"v", forged, 9))
    assert (record.partition, record.offset, record.timestamp) == (0, 7, 9)
    assert record.attempt == 0
    assert route_failure(SPEC, record, Unavailable("x"), DELAYS).topic == "classify.retry.1"
    assert h.get(replayed_headers([(h.REPLAY_COUNT, value)], "r1"), h.REPLAY_COUNT) == "1"


def test_replay_strips_failure_headers_and_counts_replays() -> None:
    dead = route_failure(SPEC, incoming(3), RuntimeError("x"), DELAYS)
    once = replayed_headers(dead.headers, "r1")
    names = {k for k, _ in once}
    assert not names & {h.ERROR_CLASS, h.RETRY_ATTEMPT, h.ORIGIN_TOPIC, h.ERROR_STACKTRACE}
    assert h.get(once, h.TRACEPARENT) == "00-abc-def-01"
    assert h.get(once, h.REPLAY_COUNT) == "1"
    assert h.get(replayed_headers(once, "r2"), h.REPLAY_COUNT) == "2"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_model_that_is_down_opens_its_breaker_after_five_calls_and_a_good_trial_closes_it() -> (
    None
):
    clock = Clock()
    seen: list[tuple[str, str]] = []
    breaker = CircuitBreaker(
        "vader-cues",
        BreakerPolicy(threshold=3, cooldown_s=300),
        clock=clock,
        on_transition=lambda _, a, b: seen.append((a.value, b.value)),
    )
    for _ in range(4):
        breaker.failure()
    assert breaker.allow()
    breaker.failure()  # 5 of at least 10 calls
    assert breaker.state is State.OPEN
    assert not breaker.allow()
    clock.now = 299.0
    assert not breaker.allow()
    clock.now = 300.0
    assert breaker.allow()
    assert breaker.state is State.HALF_OPEN
    breaker.success()
    assert seen == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_a_failed_trial_opens_the_breaker_again() -> None:
    clock = Clock()
    breaker = CircuitBreaker(
        "x", BreakerPolicy(threshold=1, min_calls=1, cooldown_s=10), clock=clock
    )
    breaker.failure()
    clock.now = 10.0
    assert breaker.allow()
    breaker.failure()
    assert breaker.state is State.OPEN
    assert not breaker.allow()


def test_transient_errors_keep_the_breaker_closed() -> None:
    """12% errors, even three in a row, are noise the retry tiers absorb."""
    breaker = CircuitBreaker("x", BreakerPolicy(threshold=3, failure_rate=0.5, window=20))
    for n in range(1000):
        breaker.failure() if n % 25 in (10, 11, 12) else breaker.success()
    assert breaker.state is State.CLOSED
    assert breaker.transitions == []


def test_three_unlucky_calls_right_after_a_start_keep_the_breaker_closed() -> None:
    breaker = CircuitBreaker("x", BreakerPolicy(threshold=3, failure_rate=0.5, window=20))
    breaker.success()
    for _ in range(3):
        breaker.failure()  # 3 of the first 4 calls
    assert breaker.state is State.CLOSED


def test_a_model_failing_most_calls_opens_the_breaker() -> None:
    breaker = CircuitBreaker("x", BreakerPolicy(threshold=3, failure_rate=0.5, window=20))
    for _ in range(5):
        breaker.success()
    for _ in range(2):
        breaker.failure()
        breaker.failure()
        breaker.success()
    breaker.failure()
    breaker.failure()
    assert breaker.state is State.CLOSED  # 6 failures of 13 calls
    breaker.failure()
    assert breaker.state is State.OPEN  # 7 of 14


def test_fault_spec_parsing() -> None:
    faults = parse_faults(
        "classify:error_rate=0.12,latency_ms=200..2000;generate:down_calls=3;"
        "extract:down_while=/tmp/extract.down"
    )
    assert faults["classify"].error_rate == 0.12
    assert (faults["classify"].latency_min_ms, faults["classify"].latency_max_ms) == (200, 2000)
    assert faults["generate"].down_calls == 3
    assert faults["extract"].down_while == "/tmp/extract.down"
    with pytest.raises(ValueError, match="unknown fault option"):
        parse_faults("classify:explode=1")
    with pytest.raises(ValueError, match="unknown fault option 'down_for_s'"):
        parse_faults("classify:down_for_s=30")  # no windows on the clock
    with pytest.raises(ValueError, match="between 0 and 1"):
        parse_faults("classify:error_rate=3")
    with pytest.raises(ValueError, match="bad value 'soon' for down_calls"):
        parse_faults("classify:down_calls=soon")


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("clasify:error_rate=0.5", "no model stage 'clasify'"),
        (":error_rate=0.5", "no model stage ''"),
        ("classify:error_rate=nan", "bad value 'nan' for error_rate"),
        ("classify:latency_ms=inf", "bad value 'inf' for latency_ms"),  # a sleep forever
        ("classify:latency_ms=2000..200", "low..high"),
        ("classify:latency_ms=-5", "bad value '-5'"),
        ("classify:down_calls=-1", "0 or more"),
        ("classify:down_calls=1e9", "bad value '1e9'"),
        ("classify:error_rate=0.1;classify:down_calls=2", "given twice"),
    ],
)
def test_a_fault_spec_that_cannot_be_used_is_refused_with_what_is_wrong(
    spec: str, says: str
) -> None:
    """Each was accepted (and inf made every call sleep forever) or raised a bare error."""
    with pytest.raises(FaultSpecError, match=says):
        parse_faults(spec)


async def test_injected_error_rate_is_close_to_the_setting() -> None:
    injector = FaultInjector(parse_faults("classify:error_rate=0.12"), seed=7)
    failures = 0
    for _ in range(2000):
        try:
            await injector.before_call("classify")
        except InjectedFault:
            failures += 1
        await injector.before_call("generate")  # no fault configured
    assert 0.10 < failures / 2000 < 0.14


async def test_a_model_down_for_its_first_calls_then_works() -> None:
    injector = FaultInjector(parse_faults("generate:down_calls=2"))
    for _ in range(2):
        with pytest.raises(InjectedFault, match="down"):
            await injector.before_call("generate")
    await injector.before_call("generate")
    assert injector.injected == {"generate": 2}


async def test_a_model_is_down_while_its_switch_file_exists(tmp_path: Path) -> None:
    switch = tmp_path / "generate.down"
    injector = FaultInjector(parse_faults(f"generate:down_while={switch}"))
    await injector.before_call("generate")
    switch.touch()
    with pytest.raises(InjectedFault, match="down"):
        await injector.before_call("generate")
    switch.unlink()
    await injector.before_call("generate")


def settings(**kw: object) -> Settings:
    return Settings(model_costs={"generate": 0.01, "classify": 0.001}, **kw)  # type: ignore[arg-type]


def test_budget_caps_per_email_and_per_day() -> None:
    budget = Budget(settings(budget_per_email=0.015, budget_per_day=0.025))
    assert budget.check("generate", email_cost=0.0) == 0.01
    with pytest.raises(BudgetExceededError, match="per-email cap"):
        budget.check("generate", email_cost=0.006)
    budget.charge("generate", 0.01, "<a>")
    budget.spent_by_others = 0.01
    with pytest.raises(BudgetExceededError, match="daily cap"):
        budget.check("generate", email_cost=0.0)
    assert budget.check("urgency", email_cost=1.0) == 0.0  # free calls are never capped


def test_spend_events_of_other_workers_count_and_our_own_do_not_twice() -> None:
    budget = Budget(settings())
    topic, key, value = budget.charge("generate", 0.01, "<a>")
    assert key == budget.day.encode()
    assert topic == catalog.BUDGET_SPEND
    budget.count_event(value)  # our own event, read back from the topic
    other = Budget(settings())
    budget.count_event(other.charge("generate", 0.01, "<b>")[2])
    assert budget.spent_today == pytest.approx(0.02)


def test_one_commit_s_spend_events_fold_into_one_per_stage_and_model_and_count_the_same() -> None:
    """A commit's spend events are written as one per worker, stage, endpoint and model:
    the day's spend, the tokens and what each email spent read the same as before."""
    budget = Budget(settings())
    events = [
        budget.charge("classify", 0.001, "<a>"),
        budget.charge("classify", 0.001, "<b>"),
        budget.charge("generate", 0.002, "<a>", endpoint="gpt", model="m", input_tokens=10),
        budget.charge("generate", 0.003, "<c>", endpoint="gpt", model="m", input_tokens=5),
        budget.charge("generate", 0.004, "<a>", endpoint="other", model="m", input_tokens=1),
        budget.charge("classify", 0.001, "<a>"),
    ]
    outputs = [
        Output(catalog.CLASSIFIED, b"ticket", b"<a>"),
        *(Output(topic, value, key, fold=fold_spend) for topic, key, value in events),
    ]
    written = folded(outputs)
    assert written[0] == outputs[0]  # not foldable: as it was, where it was
    folded_events = [json.loads(o.value or b"") for o in written[1:]]
    assert [(e["stage"], e.get("endpoint"), e["calls"]) for e in folded_events] == [
        ("classify", None, 3),
        ("generate", "gpt", 2),
        ("generate", "other", 1),
    ]
    assert folded_events[0]["cost"] == pytest.approx(0.003)
    assert folded_events[1]["input_tokens"] == 15
    assert folded_events[2]["message_id"] == "<a>"  # alone: as it was
    original = [json.loads(value) for _, _, value in events]
    assert spent_by_message(folded_events) == pytest.approx(spent_by_message(original))
    assert spent_by_message(folded_events)["<a>"] == pytest.approx(0.008)
    reader = Budget(settings())
    for o in written[1:]:
        reader.count_event(o.value)
    assert reader.spent_today == pytest.approx(0.012)


def gate(**kw: object) -> ModelGate:
    return ModelGate(
        budget=Budget(settings()),
        faults=FaultInjector({}),
        policy=BreakerPolicy(threshold=2, min_calls=2, cooldown_s=60),
        fallbacks=frozenset({"generate"}),
        **kw,
    )  # type: ignore[arg-type]


def failing() -> str:
    raise Unavailable("down")


async def test_an_open_breaker_uses_the_fallback_or_says_unavailable() -> None:
    g = gate()
    plain = Fallback("plain", lambda: "fallback")
    for stage, model in (("generate", "templates"), ("urgency", "vader")):
        for _ in range(2):
            with pytest.raises(Unavailable):
                await g.call(
                    stage, model, failing, message_id="<a>", email_cost=0.0, fallback=plain
                )
    call = await g.call(
        "generate",
        "templates",
        lambda: "model",
        message_id="<a>",
        email_cost=0.0,
        fallback=plain,
    )
    assert (call.result, call.model) == ("fallback", "plain")
    with pytest.raises(BreakerOpenError, match="breaker open"):
        await g.call("urgency", "vader", lambda: "model", message_id="<a>", email_cost=0.0)


async def test_a_paid_call_returns_its_cost_event() -> None:
    call = await gate().call(
        "classify", "tfidf", lambda: "billing", message_id="<a>", email_cost=0.0
    )
    assert call.cost == 0.001
    assert call.spend_event is not None
    assert call.spend_event[0] == catalog.BUDGET_SPEND


async def test_over_budget_without_fallback_raises() -> None:
    g = ModelGate(budget=Budget(settings(budget_per_email=0.0005)), faults=FaultInjector({}))
    with pytest.raises(BudgetExceededError):
        await g.call("classify", "tfidf", lambda: "x", message_id="<a>", email_cost=0.0)


def test_replay_times_without_a_zone_are_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.commands.replay import parse_time

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert parse_time("2026-11-24T10:00:00") == 1_795_514_400_000
        assert parse_time("2026-11-24T10:00:00Z") == 1_795_514_400_000
        assert parse_time("2026-11-24T05:00:00-05:00") == 1_795_514_400_000
        assert parse_time("1795514400000") == 1_795_514_400_000
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("\u00b2", "neither epoch millis"),  # isdigit() is true of it, int() refuses it
        ("\uff11\uff12\uff13", "neither epoch millis"),  # full-width digits read as 123
        ("9" * 5000, "neither epoch millis"),
        ("99999999999999999999", "neither epoch millis"),  # past 64 bits
        ("1969-12-31T23:59:59.999Z", "before 1970"),  # -1: Kafka's "latest"
    ],
)
def test_a_replay_time_kafka_cannot_seek_to_is_refused(text: str, says: str) -> None:
    from streams.commands.replay import parse_time

    with pytest.raises(ReplayError, match=says):
        parse_time(text)


def test_errors_are_retried_exactly_when_the_tiers_should_retry_them() -> None:
    from streams.errors import BrokerError, Refused, ReplayError

    assert InjectedFault("x").retriable
    assert Unavailable("x").retriable
    for permanent in (Rejected, Refused, BudgetExceededError, BreakerOpenError, ReplayError):
        assert not permanent("x").retriable, permanent
    assert not BrokerError("x").retriable
    assert BudgetExceededError("x").reason == "budget_exceeded"
    assert BreakerOpenError("x").reason == "model_unavailable"
    assert not issubclass(BudgetExceededError, Unavailable)  # a refusal, not an outage


@pytest.mark.parametrize(
    ("bounds", "says"),
    [
        ({"since_ms": 2_000, "until_ms": 1_000}, "--since is after --until"),
        ({"from_offset": 9, "to_offset": 3}, "--from-offset is past --to-offset"),
        ({"from_offset": -2}, "not an offset"),
        ({"to_offset": 2**63}, "not an offset"),
    ],
)
def test_a_replay_range_that_holds_nothing_is_refused_before_kafka_is_asked(
    bounds: dict[str, int], says: str
) -> None:
    """A reversed range replayed nothing without a word; -2 is Kafka's "earliest"."""
    from streams.commands.replay import ReplayPlan, replay

    unreachable = Settings(bootstrap_servers="127.0.0.1:1")
    with pytest.raises(ReplayError, match=says):
        replay(unreachable, ReplayPlan(source="classify.dlq", **bounds))  # type: ignore[arg-type]
