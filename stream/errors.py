"""Errors of the I/O shell about the services around it, in the one error tree
rooted at `detectors.errors.FraudstreamError`: the pure core never meets a
service, so it does not define them."""

from __future__ import annotations

from detectors.errors import FraudstreamError

__all__ = ["ServiceError"]


class ServiceError(FraudstreamError):
    """A local development service (Kafka, Redis) could not be set up or started."""

    def __init__(self, service: str, message: str) -> None:
        self.service = service
        self.message = message
        super().__init__(f"{service}: {message}")
