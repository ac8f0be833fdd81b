"""The two outcomes a processor may raise besides returning, under ``MailroomError``.

::

    MailroomError
    ├── Rejected      the input can never be processed (bad input): dead-letter, no retry
    └── Unavailable   a dependency failed (model down, timeout): retry with backoff
"""

from __future__ import annotations

from topics.errors import MailroomError


class Rejected(MailroomError):
    """Bad input for this step. Never retried."""

    retriable = False


class Unavailable(MailroomError):
    """A dependency of this step failed; the same input may succeed later."""

    retriable = True
