"""Server-rendered HTML: Jinja2 templates from `console/templates`,
autoescaped everywhere (every value a template prints is escaped; no
template marks anything safe, tests/unit/test_console_render.py checks),
and the headers every page carries: a Content-Security-Policy that runs
only the console's own scripts (htmx, vendored in `console/static`), no
framing, no sniffing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import jinja2
from aiohttp import web

from console.request_state import SESSION, USER

__all__ = ["SECURITY_HEADERS", "TEMPLATES", "render", "render_text"]

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self';"
        " frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _time(value: datetime | None) -> str:
    if value is None:
        return ""
    value = value.astimezone(UTC)  # the database session's time zone may be another
    return value.strftime("%Y-%m-%d %H:%M:%S") + f".{value.microsecond // 1000:03d} UTC"


def _as_json(value: Any) -> str:
    """A nested evidence value as text (escaped by the template like any other)."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("console", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
TEMPLATES.filters["time"] = _time
TEMPLATES.filters["as_json"] = _as_json


def render_text(name: str, **context: Any) -> str:
    return TEMPLATES.get_template(name).render(**context)


def render(request: web.Request, name: str, status: int = 200, **context: Any) -> web.Response:
    """A page for the request's user (None on the login page)."""
    session = request.get(SESSION)
    context.setdefault("user", request.get(USER))
    context.setdefault("csrf_token", session.csrf_token if session else "")
    return web.Response(
        text=render_text(name, **context),
        status=status,
        content_type="text/html",
        headers=SECURITY_HEADERS,
    )
