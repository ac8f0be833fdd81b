"""Every error of the runtime, under the one root ``topics.errors.MailroomError``.

::

    MailroomError                 retriable = False unless a subclass says otherwise
    ├── CodecError …              topics.errors: a record that can never be decoded
    ├── Rejected                  processors.errors: bad input for a step; dead letter
    ├── Unavailable               processors.errors: a dependency failed; retry tiers
    │   └── InjectedFault         a failure injected on purpose (MAILROOM_FAULTS)
    ├── Refused                   the gate made no model call; escalate with ``reason``
    │   ├── BudgetExceededError   the call would pass the per-email or per-day cap
    │   └── BreakerOpenError      the model's breaker is open and there is no fallback
    ├── BrokerError               the embedded broker could not be fetched, started, reached
    ├── TopicSetupError           a topic exists with a shape that disagrees with the catalog
    ├── ReplayError               a replay asked for something that cannot be done
    ├── DeliveryError             records Kafka did not acknowledge before the client gave up
    └── IngestError               a file that is not an email, a mailbox or a table of emails

``retriable`` is true exactly for what the retry tiers should try again: ``Unavailable``
and its subclasses (and any exception that is not a ``MailroomError``: a bug may be
transient, and its dead letter after the last tier keeps the input).
"""

from __future__ import annotations

from processors.errors import Rejected, Unavailable
from topics.errors import MailroomError

__all__ = [
    "BreakerOpenError",
    "BrokerError",
    "BudgetExceededError",
    "DeliveryError",
    "IngestError",
    "InjectedFault",
    "MailroomError",
    "Refused",
    "Rejected",
    "ReplayError",
    "TopicSetupError",
    "Unavailable",
]


class InjectedFault(Unavailable):
    """A failure injected on purpose by MAILROOM_FAULTS."""


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
