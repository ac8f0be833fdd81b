"""Errors of the runtime, under the one root ``topics.errors.MailroomError``.

::

    MailroomError
    ├── BrokerError        the embedded broker could not be fetched, started or reached
    └── TopicSetupError    a topic exists with a shape that disagrees with the catalog
"""

from __future__ import annotations

from topics.errors import MailroomError


class BrokerError(MailroomError):
    """The embedded Kafka could not be fetched, started, reached or stopped."""


class TopicSetupError(MailroomError):
    """A topic could not be created, or exists with the wrong number of partitions."""
