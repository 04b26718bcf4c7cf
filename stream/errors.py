"""Errors of the I/O shell about the services around it, in the one error tree
rooted at `detectors.errors.FraudstreamError`: the pure core never meets a
service, so it does not define them."""

from __future__ import annotations

from detectors.errors import FraudstreamError

__all__ = ["ServiceError", "StoreLayoutMismatch"]


class ServiceError(FraudstreamError):
    """A local development service (Kafka, Redis) could not be set up or started."""

    def __init__(self, service: str, message: str) -> None:
        self.service = service
        self.message = message
        super().__init__(f"{service}: {message}")


class StoreLayoutMismatch(FraudstreamError):
    """The Redis namespace holds state keyed under another key hash secret
    or another key layout. Working on it would silently start every window
    from zero (the keys would not match) and orphan the old state, so the
    store refuses instead."""

    def __init__(self, namespace: str, found: str, expected: str) -> None:
        self.namespace = namespace
        self.found = found
        self.expected = expected
        super().__init__(
            f"Redis namespace {namespace!r} holds state written with another key hash "
            f"secret or key layout (layout {found.partition(':')[0]}, this worker's "
            f"{expected.partition(':')[0]}; secret fingerprints differ or not). Set the "
            "FRAUD_KEY_HASH_SECRET it was written with, or use a new FRAUD_REDIS_NAMESPACE "
            "and rebuild it with `fraudstream replay --since <time>` (docs/GUARANTEES.md)"
        )
