"""The browser the console's page tests drive: Debian's `chromium`,
installed with apt like redis-server and PostgreSQL. Playwright (a dev
dependency) is pointed at it with `executable_path`; `playwright install`
is never run, so no browser build is downloaded."""

from __future__ import annotations

from devenv.services import ensure_debian_binaries

__all__ = ["CHROMIUM", "ensure_chromium"]

CHROMIUM = "/usr/bin/chromium"


def ensure_chromium() -> str:
    return ensure_debian_binaries(
        "chromium",
        "chromium",
        ("chromium",),
        "chromium not found. Install it (Debian/Ubuntu: sudo apt-get install chromium) "
        "to run the console's browser tests.",
    )
