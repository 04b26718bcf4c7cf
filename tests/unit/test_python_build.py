"""scripts/python_build.py: how scripts/setup tells an optimised interpreter
build from a plain one."""

from __future__ import annotations

import runpy
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "python_build.py"


def verdict() -> Callable[[], tuple[str, str]]:
    fn: Callable[[], tuple[str, str]] = runpy.run_path(str(SCRIPT))["verdict"]
    return fn


def test_it_prints_the_version_and_a_verdict() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, check=True)
    version, name, *_ = out.stdout.split()
    assert version == sys.version.split()[0] and name in ("optimised", "plain")


def test_configure_arguments_with_optimisations_count(monkeypatch: pytest.MonkeyPatch) -> None:
    args = "'--enable-optimizations' '--with-lto'"
    monkeypatch.setattr(sysconfig, "get_config_var", lambda n: args if n == "CONFIG_ARGS" else None)
    assert verdict()() == ("optimised", "PGO + LTO (configure arguments)")


def test_a_build_without_them_elsewhere_is_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sysconfig, "get_config_var", lambda n: "'--enable-shared'")
    monkeypatch.setattr(sys, "base_prefix", "/opt/python")
    assert verdict()()[0] == "plain"
