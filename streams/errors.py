"""Every error of the runtime, under the one root ``topics.errors.MailroomError``.

::

    MailroomError                 retriable = False unless a subclass says otherwise
    ├── CodecError …              topics.errors: a record that can never be decoded
    ├── Rejected                  processors.errors: bad input for a step; dead letter
    ├── Unavailable               processors.errors: a dependency failed; retry tiers
    │   ├── InjectedFault         a failure injected on purpose (MAILROOM_FAULTS)
    │   └── EndpointUnavailable   an LLM endpoint timed out, refused, or answered 429/5xx
    ├── BackendFailed             an LLM endpoint cannot do this call (4xx, output still
    │                             invalid after one repair): the next backend, or a person
    ├── Refused                   the gate made no model call; escalate with ``reason``
    │   ├── BudgetExceededError   the call would pass the per-email or per-day cap
    │   └── BreakerOpenError      the model's breaker is open and there is no fallback
    ├── BrokerError               the embedded broker could not be fetched, started, reached
    ├── TopicSetupError           a topic exists with a shape that disagrees with the catalog
    ├── ReplayError               a replay asked for something that cannot be done
    ├── DeliveryError             records Kafka did not acknowledge before the client gave up
    ├── IngestError               a file that is not an email, a mailbox or a table of emails
    ├── FaultSpecError            a MAILROOM_FAULTS spec that cannot be used
    ├── TraceError                `mailroom trace` cannot reach Jaeger, or it answers no trace
    └── ModelMismatchError        a classifier whose labels are not the taxonomy's categories

``retriable`` is true exactly for what the retry tiers should try again: ``Unavailable``
and its subclasses (and any exception that is not a ``MailroomError``: a bug may be
transient, and its dead letter after the last tier keeps the input).
"""

from __future__ import annotations

from processors.errors import Rejected, Unavailable
from topics.errors import MailroomError

__all__ = [
    "BackendFailed",
    "BreakerOpenError",
    "BrokerError",
    "BudgetExceededError",
    "DeliveryError",
    "EndpointUnavailable",
    "FaultSpecError",
    "IngestError",
    "InjectedFault",
    "MailroomError",
    "ModelMismatchError",
    "Refused",
    "Rejected",
    "ReplayError",
    "TopicSetupError",
    "TraceError",
    "Unavailable",
]


class InjectedFault(Unavailable):
    """A failure injected on purpose by MAILROOM_FAULTS."""


class EndpointUnavailable(Unavailable):
    """An LLM endpoint is unreachable, slow, rate-limited or failing (429, 5xx): retried.
    ``retry_after_s``: the server's ``Retry-After``; the retry waits at least that long."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class BackendFailed(MailroomError):
    """This backend cannot make this call: the request is refused (400, 401, 403, 404,
    422) or its answer breaks the schema even after one repair. Not retried; the stage
    tries its next backend, or escalates with ``reason``."""

    retriable = False

    def __init__(self, message: str, *, reason: str = "model_unavailable") -> None:
        super().__init__(message)
        self.reason = reason


class Refused(MailroomError):
    """The gate did not call the model. Not retried: the email goes to a person, with
    ``reason`` as its escalation reason."""

    retriable = False
    reason = "refused"


class BudgetExceededError(Refused):
    """A paid call would pass the per-email or per-day cap."""

    reason = "budget_exceeded"


class BreakerOpenError(Refused):
    """The model's breaker is open and its stage has no fallback."""

    reason = "model_unavailable"


class BrokerError(MailroomError):
    """The embedded Kafka could not be fetched, started, reached or stopped."""


class TopicSetupError(MailroomError):
    """A topic could not be created, or exists with the wrong number of partitions."""


class ReplayError(MailroomError):
    """A replay that cannot be done as asked (no such topic, no origin, bad range)."""


class DeliveryError(MailroomError):
    """Kafka did not acknowledge some records before the producer gave up on them."""


class IngestError(MailroomError):
    """A file mailroom cannot read emails from."""


class TraceError(MailroomError):
    """A trace that cannot be shown: Jaeger unreachable or answering what is not a trace."""


class FaultSpecError(MailroomError, ValueError):
    """A ``MAILROOM_FAULTS`` (``--faults``) spec that cannot be used: stage and option named."""


class ModelMismatchError(MailroomError):
    """A worker's classifier and its taxonomy disagree on the categories: it does not start."""


class KafkaUnreachableError(MailroomError):
    """The Kafka cluster cannot be reached, or refuses the connection or the credentials."""
