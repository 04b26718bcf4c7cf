"""What every action page does around its record: read the form, name the
acting user, publish a control record (503 when Kafka does not answer:
nothing recorded, send again), and answer a bad form with 400.

The records reach the workers and the console's own index only through
`risk-control` (`Pages.publish_control`): the indexer reads each back with
its audit entry (actor, time, reason, target)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from aiokafka.errors import KafkaError

from console.render import render
from console.request_state import USER
from console.users import User
from console.web_auth import PAGES
from detectors.control import ControlRecord

__all__ = ["acting_user", "bad_form", "now_ms", "publish_or_503", "read_form"]


def now_ms() -> int:
    return int(time.time() * 1000)


def acting_user(request: web.Request) -> User:
    user = request[USER]
    assert user is not None  # `requires` let the request through
    return user


async def read_form(request: web.Request) -> Mapping[str, Any]:
    """The posted form (read once already by the CSRF check; aiohttp keeps
    it). A body over aiohttp's limit (1 MiB) is answered 413 by aiohttp."""
    return await request.post()


def bad_form(request: web.Request, message: str, status: int = 400) -> web.Response:
    return render(request, "error.html", status=status, message=message)


async def publish_or_503(request: web.Request, record: ControlRecord) -> web.Response | None:
    """None when Kafka acknowledged the record; else the 503 page."""
    try:
        await request.app[PAGES].publish_control(record)
    except (KafkaError, TimeoutError) as exc:
        message = (
            f"Kafka did not answer ({type(exc).__name__}): the record may not have been"
            " written. Send the form again: the same form is recorded once."
        )
        return render(request, "error.html", status=503, message=message)
    return None
