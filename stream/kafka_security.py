"""Kafka credentials from Settings, for every client: faust's (the worker's
agents) and plain aiokafka's (the control follower, `fraudstream control`).
One mapping, so a secured cluster is reached the same way by all of them.
No faust here: the CLI imports it without the worker's stack.

The password only travels inside the keyword arguments handed to a client;
nothing here prints or logs them.
"""

from __future__ import annotations

import ssl
from typing import Any

from stream.settings import KafkaProtocol, KafkaSecurity

__all__ = ["aiokafka_security", "is_sasl", "ssl_context"]


def ssl_context(security: KafkaSecurity) -> ssl.SSLContext | None:
    """The TLS context of the SSL protocols (None: no TLS)."""
    if security.protocol not in (KafkaProtocol.SSL, KafkaProtocol.SASL_SSL):
        return None
    context = ssl.create_default_context(
        cafile=str(security.ssl_cafile) if security.ssl_cafile else None
    )
    if security.ssl_certfile:
        context.load_cert_chain(
            str(security.ssl_certfile),
            str(security.ssl_keyfile) if security.ssl_keyfile else None,
        )
    return context


def is_sasl(security: KafkaSecurity) -> bool:
    return security.protocol in (KafkaProtocol.SASL_PLAINTEXT, KafkaProtocol.SASL_SSL)


def aiokafka_security(security: KafkaSecurity) -> dict[str, Any]:
    """The credentials as keyword arguments of an aiokafka client (producer,
    consumer or admin client)."""
    options: dict[str, Any] = {"security_protocol": security.protocol.value.upper()}
    context = ssl_context(security)
    if context is not None:
        options["ssl_context"] = context
    if is_sasl(security):
        options["sasl_mechanism"] = security.sasl_mechanism
        options["sasl_plain_username"] = security.sasl_username
        options["sasl_plain_password"] = security.sasl_password
    return options
