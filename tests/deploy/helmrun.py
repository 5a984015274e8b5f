"""Running the real helm over the chart, and picking objects out of what it renders."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "imprimatur"
HACK = ROOT / "hack"
MANIFESTS = ROOT / "manifests"
RELEASE = "imprimatur"
NAMESPACE = "imprimatur-system"
KUBE_VERSION = "1.30.0"
HELM_TIMEOUT_SECONDS = 120

Obj = dict[str, Any]


class HelmError(Exception):
    """helm exited non-zero; carries its return code and stderr."""

    def __init__(self, returncode: int, stderr: str) -> None:
        super().__init__(f"helm exited {returncode}")
        self.returncode = returncode
        self.stderr = stderr


class Helm:
    """A thin runner over the real helm binary."""

    def __init__(self, binary: str) -> None:
        self.binary = binary

    def run(self, *args: str) -> str:
        result = subprocess.run(
            [self.binary, *args],
            capture_output=True,
            text=True,
            timeout=HELM_TIMEOUT_SECONDS,
            check=False,
            cwd=ROOT,
        )
        if result.returncode != 0:
            raise HelmError(result.returncode, result.stderr)
        return result.stdout

    def template_text(
        self,
        *sets: str,
        namespace: str = NAMESPACE,
        api_versions: tuple[str, ...] = (),
        include_crds: bool = False,
        set_strings: tuple[str, ...] = (),
    ) -> str:
        args = ["template", RELEASE, str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION]
        if include_crds:
            args.append("--include-crds")
        for api in api_versions:
            args += ["--api-versions", api]
        for value in sets:
            args += ["--set", value]
        for value in set_strings:
            args += ["--set-string", value]
        return self.run(*args)

    def template(
        self,
        *sets: str,
        namespace: str = NAMESPACE,
        api_versions: tuple[str, ...] = (),
        include_crds: bool = False,
        set_strings: tuple[str, ...] = (),
    ) -> list[Obj]:
        text = self.template_text(
            *sets,
            namespace=namespace,
            api_versions=api_versions,
            include_crds=include_crds,
            set_strings=set_strings,
        )
        return [doc for doc in yaml.safe_load_all(text) if doc]


def find(objs: list[Obj], kind: str, name: str | None = None) -> Obj:
    """The one object of ``kind`` (and ``name``); fails the test if there is not exactly one."""
    hits = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(hits) == 1, f"expected one {kind} {name or ''}, found {len(hits)}"
    return hits[0]


def kinds(objs: list[Obj]) -> list[str]:
    return [str(o["kind"]) for o in objs]
