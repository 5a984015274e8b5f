"""The Sigstore conformance cases (``../shared/testdata/sigstore-conformance/bundle-verify``), as data.

Each case is run as the suite runs a client: ``verify-blob --bundle ... (--certificate-identity ID
--certificate-oidc-issuer URL | --key key.pub) [--trusted-root FILE] ARTIFACT``, once with the
artifact's path and once with ``sha256:<hex>`` in its place.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from tests.sigstore_real import real_data_dir

DEFAULT_IDENTITY = (
    "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
    ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
)
DEFAULT_ISSUER = "https://token.actions.githubusercontent.com"


def conformance_dir() -> Path:
    """``bundle-verify/`` of the conformance copy beside the real data."""
    return real_data_dir().parent / "sigstore-conformance" / "bundle-verify"


@dataclass(frozen=True)
class Case:
    """One conformance folder."""

    name: str
    folder: Path

    @property
    def should_pass(self) -> bool:
        return not self.name.endswith("_fail")

    @property
    def bundle(self) -> Path:
        return self.folder / "bundle.sigstore.json"

    @property
    def artifact(self) -> Path:
        own = self.folder / "artifact"
        return own if own.is_file() else self.folder.parent / "a.txt"

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.artifact.read_bytes()).hexdigest()

    @property
    def key(self) -> Path | None:
        key = self.folder / "key.pub"
        return key if key.is_file() else None

    @property
    def trusted_root(self) -> Path | None:
        root = self.folder / "trusted_root.json"
        return root if root.is_file() else None

    def _text(self, name: str, default: str) -> str:
        path = self.folder / name
        return path.read_text().strip() if path.is_file() else default

    @property
    def identity(self) -> str:
        return self._text("identity", DEFAULT_IDENTITY)

    @property
    def issuer(self) -> str:
        return self._text("issuer", DEFAULT_ISSUER)

    def argv(self, artifact: str) -> list[str]:
        """``imprimatur verify-blob`` arguments, as the conformance suite passes them."""
        args = ["verify-blob", "--bundle", str(self.bundle)]
        if self.key is not None:
            args += ["--key", str(self.key)]
        else:
            args += ["--certificate-identity", self.identity, "--certificate-oidc-issuer", self.issuer]
        if self.trusted_root is not None:
            args += ["--trusted-root", str(self.trusted_root)]
        return [*args, artifact]


def cases() -> list[Case]:
    """Every case folder, sorted by name."""
    root = conformance_dir()
    return [Case(p.name, p) for p in sorted(root.iterdir()) if p.is_dir()]
