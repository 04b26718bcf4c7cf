"""Build tools the tests need that no Debian package provides at a usable
version: Helm, built from the Go module proxy at a pinned version when Go is
installed (`helm lint` / `helm template` check the chart in deploy/helm).
Not part of the product."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from stream.errors import ServiceError

__all__ = ["HELM_MODULE", "HELM_VERSION", "ensure_helm", "helm_path"]

HELM_MODULE = "helm.sh/helm/v4/cmd/helm"
HELM_VERSION = "v4.3.2"
TOOL_CACHE = Path.home() / ".cache" / "fraudstream" / "tools"


def helm_path() -> Path:
    """Where the pinned build lives; one directory per version, so a bump
    builds anew instead of trusting an older binary."""
    return TOOL_CACHE / f"helm-{HELM_VERSION}" / "helm"


def ensure_helm() -> Path:
    """The pinned Helm, built once with `go install` (a few minutes)."""
    target = helm_path()
    if target.is_file() and os.access(target, os.X_OK):
        return target
    go = shutil.which("go")
    if go is None:
        raise ServiceError(
            "helm",
            f"Go is needed once to build Helm {HELM_VERSION} (go install {HELM_MODULE}); "
            "install Go 1.24+ and run `python -m devenv install --with-helm` again.",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOBIN": str(target.parent), "CGO_ENABLED": "0"}
    proc = subprocess.run(
        [go, "install", f"{HELM_MODULE}@{HELM_VERSION}"], env=env, capture_output=True, text=True
    )
    if proc.returncode != 0 or not target.is_file():
        raise ServiceError(
            "helm", f"go install {HELM_MODULE}@{HELM_VERSION} failed:\n{proc.stderr[-3000:]}"
        )
    return target
