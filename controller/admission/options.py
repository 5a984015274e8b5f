"""How the webhook server runs: ports, TLS files, credentials, bounds. Parsed once, from the environment.

The decision settings themselves (default decision, digests, SCT ...) are
:class:`controller.config.Settings`; these are only the server's own.

=====================================  ======================================  =====================
variable                               meaning                                 default
=====================================  ======================================  =====================
IMPRIMATUR_WEBHOOK_ADDR                listen address of the webhook           0.0.0.0
IMPRIMATUR_WEBHOOK_PORT                HTTPS port of the webhook               8443
IMPRIMATUR_WEBHOOK_HOST                host name for a self-signed cert        (the address)
IMPRIMATUR_TLS_DIR                     tls.crt, tls.key (and ca.crt)           /etc/imprimatur/tls
IMPRIMATUR_TLS_RELOAD_SECONDS          how often the TLS files are re-read     10
IMPRIMATUR_LIVENESS_ENDPOINT           health (readiness) URL                  http://0.0.0.0:8080/healthz
IMPRIMATUR_METRICS_PORT                Prometheus /metrics port (0: off)       9090
IMPRIMATUR_METRICS_ADDR                listen address of /metrics              0.0.0.0
IMPRIMATUR_NAMESPACE                   own namespace: TrustRoot refs only here (see below)
IMPRIMATUR_REGISTRY_CONFIG             registries.yaml (mirrors, TLS, auth)    /etc/imprimatur/registries.yaml
IMPRIMATUR_DOCKER_CONFIG               controller-wide docker config.json      (none)
IMPRIMATUR_DOCKER_CONFIG_SECRET        the same, as a Secret: namespace/name   (none)
IMPRIMATUR_DECISION_TIMEOUT_SECONDS    deadline for one review                 9
IMPRIMATUR_MAX_CONCURRENT_REVIEWS      reviews waiting on registries at once   512
IMPRIMATUR_CREDENTIALS_TTL_SECONDS     cache of pull secrets/ServiceAccounts   30
IMPRIMATUR_STANDALONE                  kopf without peering                    true
IMPRIMATUR_LOG_LEVEL                   debug, info, warning, error             info
=====================================  ======================================  =====================

``IMPRIMATUR_NAMESPACE`` falls back to the service account's namespace file, then ``POD_NAMESPACE``
(:func:`controller.admission.namespaces.controller_namespace`). When none is known, TrustRoots that
reference a ConfigMap or Secret are invalid (fail closed); inline ones still load.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from controller.admission.namespaces import controller_namespace
from controller.errors import PolicyError, Reason

DEFAULT_TLS_DIR: Final = "/etc/imprimatur/tls"
DEFAULT_REGISTRY_CONFIG: Final = "/etc/imprimatur/registries.yaml"
DEFAULT_LIVENESS_ENDPOINT: Final = "http://0.0.0.0:8080/healthz"
# The chart's webhook timeoutSeconds is 10: answer (deny) before kube-apiserver gives up.
DEFAULT_DECISION_TIMEOUT_SECONDS: Final = 9.0
# Reviews waiting on slow work at once; past it new ones are shed (Overloaded). A waiting review is a
# coroutine (the bulkheads in the engine bound the real work), so this bounds memory, not threads.
DEFAULT_MAX_CONCURRENT_REVIEWS: Final = 512
DEFAULT_CREDENTIALS_TTL_SECONDS: Final = 30.0
DEFAULT_TLS_RELOAD_SECONDS: Final = 10.0
LOG_LEVELS: Final = frozenset({"debug", "info", "warning", "error"})
# A host name, an IPv4 address or an IPv6 address (no brackets), as aiohttp's TCPSite takes it.
_ADDR_RE: Final = re.compile(r"^(?:[A-Za-z0-9](?:[-A-Za-z0-9.]{0,251}[A-Za-z0-9])?|[0-9A-Fa-f:.]{2,45})$")
_SECRET_REF_RE: Final = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)/([a-z0-9]([-a-z0-9.]*[a-z0-9])?)$")


def _config_error(detail: str) -> PolicyError:
    return PolicyError(Reason.CONFIG_INVALID, detail)


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """``namespace/name`` of a Kubernetes object."""

    namespace: str
    name: str

    @classmethod
    def parse(cls, text: str, what: str) -> ObjectRef:
        match = _SECRET_REF_RE.match(text)
        if match is None or len(text) > 317:
            raise _config_error(f"{what}={text[:100]!r} is not namespace/name")
        return cls(match.group(1), match.group(3))

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """The webhook server's own configuration; every field has a safe default."""

    webhook_addr: str = "0.0.0.0"  # noqa: S104 - a webhook must be reachable from kube-apiserver
    webhook_port: int = 8443
    webhook_host: str | None = None
    tls_dir: Path | None = Path(DEFAULT_TLS_DIR)
    tls_reload_seconds: float = DEFAULT_TLS_RELOAD_SECONDS
    liveness_endpoint: str = DEFAULT_LIVENESS_ENDPOINT
    metrics_port: int = 9090
    metrics_addr: str = "0.0.0.0"  # noqa: S104 - scraped from other pods
    registry_config: Path | None = None
    docker_config: Path | None = None
    docker_config_secret: ObjectRef | None = None
    decision_timeout_seconds: float = DEFAULT_DECISION_TIMEOUT_SECONDS
    max_concurrent_reviews: int = DEFAULT_MAX_CONCURRENT_REVIEWS
    credentials_ttl_seconds: float = DEFAULT_CREDENTIALS_TTL_SECONDS
    standalone: bool = True
    log_level: str = "info"
    namespace: str | None = None

    @property
    def tls_files(self) -> tuple[Path, Path, Path] | None:
        """(tls.crt, tls.key, ca.crt) when the certificate files exist, else None (self-signed)."""
        if self.tls_dir is None:
            return None
        cert, key, ca = self.tls_dir / "tls.crt", self.tls_dir / "tls.key", self.tls_dir / "ca.crt"
        if cert.is_file() and key.is_file():
            return cert, key, ca
        return None

    @property
    def health(self) -> tuple[str, int, str]:
        """(host, port, path) of the health endpoint."""
        parts = urlsplit(self.liveness_endpoint)
        port = parts.port if parts.port is not None else 80
        return parts.hostname or "0.0.0.0", port, parts.path or "/healthz"  # noqa: S104

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ServerOptions:
        """Read ``IMPRIMATUR_*``. A malformed value is a :class:`PolicyError` (``ConfigInvalid``)."""

        def text(name: str) -> str | None:
            value = environ.get(name)
            return value if value else None

        def number(name: str, default: float, low: float, high: float) -> float:
            raw = text(name)
            if raw is None:
                return default
            try:
                value = float(raw)
            except ValueError as e:
                raise _config_error(f"{name}={raw[:40]!r} is not a number") from e
            if not low <= value <= high:
                raise _config_error(f"{name}={raw[:40]!r} is outside [{low:g}, {high:g}]")
            return value

        def flag(name: str, default: bool) -> bool:
            raw = text(name)
            if raw is None:
                return default
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise _config_error(f"{name}={raw[:40]!r} is not a boolean")

        liveness = text("IMPRIMATUR_LIVENESS_ENDPOINT") or DEFAULT_LIVENESS_ENDPOINT
        parts = urlsplit(liveness)
        if parts.scheme != "http" or not parts.path:
            raise _config_error(
                f"IMPRIMATUR_LIVENESS_ENDPOINT={liveness[:100]!r} must be http://host:port/path"
            )
        try:
            _ = parts.port
        except ValueError as e:
            raise _config_error(f"IMPRIMATUR_LIVENESS_ENDPOINT={liveness[:100]!r}: {e}") from e

        registry_config = text("IMPRIMATUR_REGISTRY_CONFIG")
        if registry_config is None and Path(DEFAULT_REGISTRY_CONFIG).is_file():
            registry_config = DEFAULT_REGISTRY_CONFIG
        secret = text("IMPRIMATUR_DOCKER_CONFIG_SECRET")
        docker_config = text("IMPRIMATUR_DOCKER_CONFIG")
        log_level = (text("IMPRIMATUR_LOG_LEVEL") or "info").lower()
        if log_level not in LOG_LEVELS:
            raise _config_error(f"IMPRIMATUR_LOG_LEVEL={log_level[:40]!r} is not one of {sorted(LOG_LEVELS)}")
        tls_dir = text("IMPRIMATUR_TLS_DIR") or DEFAULT_TLS_DIR
        metrics_addr = text("IMPRIMATUR_METRICS_ADDR") or "0.0.0.0"  # noqa: S104
        if not _ADDR_RE.match(metrics_addr):
            raise _config_error(f"IMPRIMATUR_METRICS_ADDR={metrics_addr[:60]!r} is not a host or IP address")

        return cls(
            webhook_addr=text("IMPRIMATUR_WEBHOOK_ADDR") or "0.0.0.0",  # noqa: S104
            webhook_port=int(number("IMPRIMATUR_WEBHOOK_PORT", 8443, 0, 65535)),
            webhook_host=text("IMPRIMATUR_WEBHOOK_HOST"),
            tls_dir=Path(tls_dir),
            tls_reload_seconds=number("IMPRIMATUR_TLS_RELOAD_SECONDS", DEFAULT_TLS_RELOAD_SECONDS, 0.1, 3600),
            liveness_endpoint=liveness,
            metrics_port=int(number("IMPRIMATUR_METRICS_PORT", 9090, 0, 65535)),
            metrics_addr=metrics_addr,
            registry_config=Path(registry_config) if registry_config else None,
            docker_config=Path(docker_config) if docker_config else None,
            docker_config_secret=ObjectRef.parse(secret, "IMPRIMATUR_DOCKER_CONFIG_SECRET")
            if secret
            else None,
            decision_timeout_seconds=number(
                "IMPRIMATUR_DECISION_TIMEOUT_SECONDS", DEFAULT_DECISION_TIMEOUT_SECONDS, 0.1, 30
            ),
            max_concurrent_reviews=int(
                number("IMPRIMATUR_MAX_CONCURRENT_REVIEWS", DEFAULT_MAX_CONCURRENT_REVIEWS, 1, 1024)
            ),
            credentials_ttl_seconds=number(
                "IMPRIMATUR_CREDENTIALS_TTL_SECONDS", DEFAULT_CREDENTIALS_TTL_SECONDS, 0, 3600
            ),
            standalone=flag("IMPRIMATUR_STANDALONE", True),
            log_level=log_level,
            namespace=controller_namespace(environ),
        )
