"""Guard: no private key material is committed (or left lying around) in the repository.

The test PKI is generated at test time; a PEM private key in the tree means someone saved one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SKIPPED_DIRS = frozenset({".git"})
# Spelled in two parts so that this file does not match itself.
MARKER = b"PRIVATE" + b" KEY-----"
# A whole PEM private key block: the marker, then base64 lines, then the END line. A test that only
# checks a PEM header (b"-----BEGIN PRIVATE KEY-----") holds no key and is not flagged.
KEY_BLOCK = re.compile(
    rb"-----BEGIN (?:[A-Z0-9]+ )*" + MARKER + rb"\r?\n(?:[A-Za-z0-9+/=]{16,}\r?\n)+-----END "
)
MAX_FILE_BYTES = 50 * 1024 * 1024  # larger files are not source; none exist today


def _files(root: Path) -> list[Path]:
    found: list[Path] = []
    for directory, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIPPED_DIRS]
        found.extend(Path(directory) / name for name in filenames)
    return found


def test_no_private_key_pem_anywhere_in_the_repository() -> None:
    offenders = [
        str(path.relative_to(REPO_ROOT))
        for path in _files(REPO_ROOT)
        if path.is_file()
        and not path.is_symlink()
        and path.stat().st_size <= MAX_FILE_BYTES
        and KEY_BLOCK.search(path.read_bytes()) is not None
    ]
    assert offenders == []


def test_the_guard_sees_a_planted_key(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        Encoding.PEM, PrivateFormat.TraditionalOpenSSL, NoEncryption()
    )
    (tmp_path / "sub" / "leak.pem").write_bytes(pem)
    (tmp_path / "header-only.py").write_bytes(b"assert key.startswith(b'-----BEGIN " + MARKER + b"')\n")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "ignored").write_bytes(pem)
    hits = [path for path in _files(tmp_path) if KEY_BLOCK.search(path.read_bytes())]
    assert [path.name for path in hits] == ["leak.pem"]
