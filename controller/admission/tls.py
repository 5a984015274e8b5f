"""The webhook's TLS: one live :class:`ssl.SSLContext` whose certificate is reloaded when its files change.

Kubernetes updates a mounted Secret by swapping a symlink, without events and without touching the
old files' metadata, so the files are re-read and hashed every few seconds (as kopf does). A changed
pair is loaded into the *same* context with :meth:`ssl.SSLContext.load_cert_chain`: new handshakes
use the new certificate, open connections keep theirs, and the listening socket never closes. A
half-written or mismatched pair fails to load; the old certificate then stays in use and the next
check tries again.

Without certificate files (development only) a self-signed certificate is generated in memory.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import logging
import os
import ssl
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controller.config import read_bounded_file
from controller.errors import PolicyError, Reason

log = logging.getLogger(__name__)

MAX_TLS_FILE_BYTES: Final = 1024 * 1024
SELF_SIGNED_DAYS: Final = 365


def _read(path: Path) -> bytes:
    return read_bounded_file(path, MAX_TLS_FILE_BYTES, "TLS file")


def server_context() -> ssl.SSLContext:
    """A server context: TLS 1.2 or newer, no client certificate required."""
    context = ssl.create_default_context(purpose=ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _load_pair(context: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """``load_cert_chain`` reads files only; hand it a private temporary directory."""
    with tempfile.TemporaryDirectory(prefix="imprimatur-tls-") as tmp:
        cert_path, key_path = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        cert_path.write_bytes(cert)
        context.load_cert_chain(cert_path, key_path)


class ReloadingTLS:
    """A server :class:`ssl.SSLContext` fed from ``certfile``/``keyfile``, reloaded on change."""

    def __init__(self, certfile: Path, keyfile: Path, cafile: Path | None = None) -> None:
        self.certfile = certfile
        self.keyfile = keyfile
        self.cafile = cafile
        self.context = server_context()
        self._digest: str | None = None
        self.cadata: bytes | None = None
        self.reloads = 0

    def _snapshot(self) -> tuple[bytes, bytes, bytes | None, str]:
        cert, key = _read(self.certfile), _read(self.keyfile)
        ca = _read(self.cafile) if self.cafile is not None and self.cafile.exists() else None
        digest = hashlib.sha256(b"\0".join((cert, key, ca or b""))).hexdigest()
        return cert, key, ca, digest

    def load(self) -> None:
        """Load the pair now. Raises :class:`PolicyError` (``ConfigInvalid``) if it is unreadable or bad."""
        cert, key, ca, digest = self._snapshot()
        try:
            _load_pair(self.context, cert, key)
        except (ssl.SSLError, OSError) as e:
            raise PolicyError(Reason.CONFIG_INVALID, f"{self.certfile}, {self.keyfile}: {e}") from e
        self._digest = digest
        self.cadata = ca or cert

    def check(self) -> bool:
        """Reload if the files changed. True when a new certificate is now served; never raises."""
        try:
            cert, key, ca, digest = self._snapshot()
        except PolicyError as e:
            log.warning("TLS files unreadable, keeping the current certificate: %s", e.detail)
            return False
        if digest == self._digest:
            return False
        try:
            _load_pair(self.context, cert, key)
        except (ssl.SSLError, OSError) as e:
            # A Secret being rewritten can show a new certificate with the old key for a moment.
            log.warning("new TLS files do not load (%s); keeping the current certificate", e)
            return False
        self._digest = digest
        self.cadata = ca or cert
        self.reloads += 1
        log.info("reloaded the webhook TLS certificate from %s", self.certfile)
        return True


def self_signed(hostnames: Sequence[str], *, now: datetime.datetime | None = None) -> tuple[bytes, bytes]:
    """A self-signed ECDSA P-256 serving certificate for ``hostnames`` (DNS names or IPs): (cert, key) PEM."""
    when = now or datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hostnames):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0] if hostnames else "imprimatur")]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(when - datetime.timedelta(minutes=5))
        .not_valid_after(when + datetime.timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert_pem, key_pem


class SelfSignedTLS:
    """A generated certificate for development (no files to watch): same interface as ReloadingTLS."""

    def __init__(self, hostnames: Sequence[str]) -> None:
        cert, key = self_signed(hostnames)
        self.context = server_context()
        _load_pair(self.context, cert, key)
        self.cadata: bytes | None = cert

    def check(self) -> bool:
        return False
