"""The one small error tree of fraudstream.

Every exception carries the data needed to act on it (which field, which
topic, which setting), so that callers can dead-letter, report or retry
without parsing messages.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ContractViolation",
    "FraudstreamError",
    "InputFileError",
    "StoreUnavailable",
]


class FraudstreamError(Exception):
    """Root of every error raised by fraudstream code."""


class ContractViolation(FraudstreamError):
    """An input event does not satisfy the wire contract of its topic.

    `kind` is a stable machine-readable reason (used as a metric label and in
    dead-letter records); `field` names the offending field when there is one.
    """

    def __init__(self, kind: str, message: str, field: str | None = None) -> None:
        self.kind = kind
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


class ConfigError(FraudstreamError):
    """A setting or rule definition is invalid; the worker must not start."""

    def __init__(self, setting: str, message: str) -> None:
        self.setting = setting
        self.message = message
        super().__init__(f"{setting}: {message}")


class StoreUnavailable(FraudstreamError):
    """The state store could not be reached; the batch must be retried, not acked."""

    def __init__(self, operation: str, cause: BaseException) -> None:
        self.operation = operation
        self.cause = cause
        super().__init__(f"{operation}: {type(cause).__name__}: {cause}")


class InputFileError(FraudstreamError):
    """A file handed to a command (labels, decisions) is not in the expected
    format. `line` is 1-based, None when the whole file is unreadable."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")
