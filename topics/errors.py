"""The root of every mailroom error, and the errors of the message contract.

::

    MailroomError                    retriable = False unless a subclass says otherwise
    ├── CodecError                   a record that can never be decoded: dead-letter it at once
    │   ├── EmptyValueError          null or zero-length value
    │   ├── TooLargeError            over the size limit (size, limit)
    │   ├── NotJsonError             not UTF-8, or not JSON, where JSON was accepted
    │   ├── WrongShapeError          decodes, but does not match the schema (field path)
    │   ├── UnknownFingerprintError  single-object encoding with a schema we do not know
    │   └── TruncatedBodyError       the Avro body ends early or has trailing bytes
    └── IncompatibleSchemaError      a schema change that cannot read an earlier version

``processors.errors`` and ``streams.errors`` add their own branches under the same root.
"""

from __future__ import annotations


class MailroomError(Exception):
    """Base class. ``retriable`` says whether trying the same input again may succeed."""

    retriable: bool = False

    @property
    def error_class(self) -> str:
        """The name recorded in ``mailroom.error.class`` dead-letter headers."""
        return type(self).__name__


class CodecError(MailroomError):
    """A value that cannot be decoded into the expected record. Never retriable."""


class EmptyValueError(CodecError):
    def __init__(self, topic: str = "") -> None:
        where = f" on {topic}" if topic else ""
        super().__init__(f"empty record value{where}: a record needs a non-empty Avro or JSON body")


class TooLargeError(CodecError):
    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"record is {size} bytes, over the {limit}-byte limit "
            "(raise MAILROOM_MAX_EMAIL_BYTES or trim the email)"
        )


class NotJsonError(CodecError):
    """The value is neither Avro single-object encoded nor valid UTF-8 JSON."""


class WrongShapeError(CodecError):
    def __init__(self, schema: str, problem: str) -> None:
        self.schema = schema
        self.problem = problem
        super().__init__(f"value does not match schema {schema}: {problem}")


class UnknownFingerprintError(CodecError):
    def __init__(self, fingerprint: bytes, expected: str) -> None:
        self.fingerprint = fingerprint
        super().__init__(
            f"Avro schema fingerprint {fingerprint.hex()} is not a known version of {expected}; "
            "was it written by a newer producer or for another topic?"
        )


class TruncatedBodyError(CodecError):
    def __init__(self, schema: str, detail: str) -> None:
        super().__init__(f"Avro body for {schema} is truncated or corrupt: {detail}")


class IncompatibleSchemaError(MailroomError):
    """A changed schema that cannot read records an earlier version wrote."""

    def __init__(self, name: str, version: int) -> None:
        self.name = name
        self.version = version
        super().__init__(
            f"the new {name} schema cannot read records written with v{version}: add fields "
            "with defaults only, never remove or retype one"
        )
