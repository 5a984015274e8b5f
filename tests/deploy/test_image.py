"""The Dockerfile and requirements.lock: the image runs `imprimatur serve` as uid 65532 and installs only
hash-pinned packages that cover everything the project needs at run time.

No container is built here (no Docker daemon on the test machines); the instructions are read, and the
lock is checked against the dependency closure of pyproject.toml computed from installed metadata.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import tomllib

import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.helmrun import CHART, ROOT

LOCK_LINE = re.compile(
    r"^(?P<name>[A-Za-z0-9_.-]+)==(?P<version>\S+) \\\n    --hash=sha256:[0-9a-f]{64}$", re.M
)


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    joined = re.sub(
        r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    )
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def _final_stage() -> list[tuple[str, str]]:
    instructions = _instructions()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def _lock() -> dict[str, str]:
    text = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    entries = {canonicalize_name(m["name"]): m["version"] for m in LOCK_LINE.finditer(text)}
    requirement_lines = [
        line for line in text.splitlines() if line and not line.startswith(("#", "    --hash"))
    ]
    assert len(requirement_lines) == len(entries), "every lock entry is name==version with one sha256"
    return entries


def test_final_stage_runs_imprimatur_serve_as_uid_65532() -> None:
    stage = dict(_final_stage())
    assert stage["USER"] == "65532:65532"  # numeric: runAsNonRoot can check it
    assert json.loads(stage["ENTRYPOINT"]) == ["imprimatur", "serve"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert "imprimatur" in scripts


def test_image_exposes_the_ports_the_chart_uses() -> None:
    exposed = {int(p) for p in dict(_final_stage())["EXPOSE"].split()}
    ports = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))["ports"]
    assert exposed == set(ports.values())


def test_base_is_python_3_11_slim() -> None:
    args = dict(i for i in _instructions() if i[0] == "ARG")
    assert args["ARG"].startswith("PYTHON_IMAGE=python:3.11-slim")
    assert all(rest.startswith("${PYTHON_IMAGE}") for word, rest in _instructions() if word == "FROM")


def test_every_pip_install_is_pinned_and_offline_of_build_isolation() -> None:
    installs = [rest for word, rest in _instructions() if word == "RUN" and "pip install" in rest]
    assert len(installs) == 2
    lock_install, project_install = installs
    assert "--require-hashes" in lock_install
    assert "--no-deps" in lock_install
    assert "-r /tmp/requirements.lock" in lock_install
    assert "--no-deps" in project_install
    assert "--no-build-isolation" in project_install
    for install in installs:
        assert "--no-cache-dir" in install


def test_lock_is_fully_pinned_with_hashes() -> None:
    assert len(_lock()) > 10


def _closure(requirements: list[str]) -> set[str]:
    """Every distribution the requirements pull in, walking installed metadata (markers evaluated)."""
    env = default_environment()
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [
        req
        for req in map(Requirement, requirements)
        if req.marker is None or req.marker.evaluate({**env, "extra": ""})
    ]
    while todo:
        req = todo.pop()  # its marker was evaluated when it was queued
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        for sub in importlib.metadata.requires(req.name) or []:
            parsed = Requirement(sub)
            extras_ok = parsed.marker is None or any(
                parsed.marker.evaluate({**env, "extra": extra}) for extra in (req.extras or {""})
            )
            if extras_ok:
                todo.append(parsed)
    return {name for name, _ in seen}


def test_lock_covers_the_runtime_dependency_closure() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "dependencies"
    ]
    needed = _closure(dependencies)
    missing = needed - set(_lock())
    assert not missing, f"requirements.lock lacks {sorted(missing)}: run python hack/lock-requirements.py"


def test_lock_pins_versions_the_project_accepts() -> None:
    lock = _lock()
    for dependency in tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "dependencies"
    ]:
        req = Requirement(dependency)
        assert req.specifier.contains(lock[canonicalize_name(req.name)]), dependency


def test_lock_carries_the_build_backend() -> None:
    build = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["build-system"]["requires"]
    lock = _lock()
    for requirement in build:
        req = Requirement(requirement)
        assert req.specifier.contains(lock[canonicalize_name(req.name)]), requirement
