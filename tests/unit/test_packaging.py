"""What ships: the wheel and the image hold the product (`detectors`,
`stream`) and nothing of the lab (`bench`, `devenv`) or the tests, which run
from the repository."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRODUCT = {"console", "detectors", "stream"}
NOT_SHIPPED = {"bench", "devenv", "tests"}
BUILD_INPUTS = ["pyproject.toml", "README.md", *sorted(PRODUCT | NOT_SHIPPED)]


def packages_found(root: Path) -> set[str]:
    """The packages `[tool.setuptools.packages.find]` selects under `root`:
    every directory (namespace packages included, setuptools' default for
    pyproject) whose dotted name matches an `include` pattern and no
    `exclude` pattern."""
    config = tomllib.loads((root / "pyproject.toml").read_text())
    find = config["tool"]["setuptools"]["packages"]["find"]
    include, exclude = find.get("include", ["*"]), find.get("exclude", [])
    names = set()
    for top, dirs, _ in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
        names.update(".".join(Path(top, d).relative_to(root).parts) for d in dirs)
    return {
        n
        for n in names
        if any(fnmatch.fnmatchcase(n, p) for p in include)
        and not any(fnmatch.fnmatchcase(n, p) for p in exclude)
    }


def test_the_find_config_selects_only_the_product() -> None:
    tops = {name.split(".")[0] for name in packages_found(REPO)}
    assert tops == PRODUCT


def test_the_find_config_check_sees_a_lab_package_let_in(tmp_path: Path) -> None:
    """And why pyproject names "stream" and "stream.*", not "stream*"."""
    (tmp_path / "pyproject.toml").write_text(
        '[tool.setuptools.packages.find]\ninclude = ["stream*", "bench*"]\n'
    )
    for d in ("stream/store", "bench", "devenv", "streamlit_demo"):
        (tmp_path / d).mkdir(parents=True)
    assert packages_found(tmp_path) == {"stream", "stream.store", "bench", "streamlit_demo"}


def test_the_wheel_holds_only_the_product(tmp_path: Path) -> None:
    """The real build, on a copy of the sources with the lab and the tests
    present (the build tree stays out of the repository)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in BUILD_INPUTS:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(path, src / name)
    out = tmp_path / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q", "-w", str(out)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (wheel,) = out.glob("*.whl")
    files = zipfile.ZipFile(wheel).namelist()
    tops = {f.split("/")[0] for f in files if not f.split("/")[0].endswith(".dist-info")}
    assert tops == PRODUCT
    data = {f for f in files if f.endswith((".lua", ".yaml"))}
    expected = {
        str(p.relative_to(REPO))
        for p in [*REPO.glob("stream/store/lua/*.lua"), *REPO.glob("stream/rulesets/*.yaml")]
    }
    assert expected and data == expected
    pages = {f for f in files if f.startswith(("console/templates/", "console/static/"))}
    shipped = {
        str(p.relative_to(REPO))
        for p in [*REPO.glob("console/templates/*.html"), *REPO.glob("console/static/*")]
    }
    assert "console/static/htmx.min.js" in shipped and pages == shipped


COPY = re.compile(r"^\s*COPY\s+(?:--\S+\s+)*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)


def copied_sources(dockerfile: str) -> set[str]:
    """The build-context paths a Dockerfile's COPY lines take (shell form)."""
    return {src.rstrip("/") for line in COPY.findall(dockerfile) for src in line.split()[:-1]}


def test_the_image_copies_only_the_product() -> None:
    sources = copied_sources((REPO / "Dockerfile").read_text())
    assert sources & {".", "*"} == set(), "copies the whole context"
    assert sources & NOT_SHIPPED == set()
    assert {s for s in sources if (REPO / s).is_dir()} == PRODUCT


def test_the_dockerfile_check_sees_a_lab_copy() -> None:
    dockerfile = "FROM x\nCOPY pyproject.toml README.md ./\nCOPY --chown=1:1 devenv ./devenv\n"
    assert copied_sources(dockerfile) == {"pyproject.toml", "README.md", "devenv"}
    assert copied_sources("COPY . .\n") == {"."}
