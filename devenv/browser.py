"""The browser the console's page tests drive: Debian's `chromium`,
installed with apt like redis-server and PostgreSQL. Playwright (a dev
dependency) is pointed at it with `executable_path`; `playwright install`
is never run, so no browser build is downloaded."""

from __future__ import annotations

import shutil

from devenv.services import _apt_install
from stream.errors import ServiceError

__all__ = ["CHROMIUM", "ensure_chromium"]

CHROMIUM = "/usr/bin/chromium"


def ensure_chromium() -> str:
    found = shutil.which("chromium") or _apt_install("chromium", "chromium", ("chromium",))
    if found:
        return found
    raise ServiceError(
        "chromium",
        "chromium not found. Install it (Debian/Ubuntu: sudo apt-get install chromium) "
        "to run the console's browser tests.",
    )
