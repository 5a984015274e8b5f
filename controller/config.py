"""Settings, parsed once and explicitly. Nothing is read at import time.

``Settings.from_env`` is the only place that reads the environment; the CLI builds ``Settings``
from flags instead. Both hand the result to the engine and the admission layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from controller.errors import PolicyError, Reason

DefaultDecision = Literal["deny", "allow"]
PinningSetting = Literal["off", "pods", "workloads"]  # digest pinning by the mutating webhook

# Registry reads in flight at once, in all; per registry host; per namespace (the bulkheads).
DEFAULT_MAX_WORKERS = 64
DEFAULT_MAX_PER_REGISTRY_HOST = 8
DEFAULT_MAX_PER_NAMESPACE = 8
# How long a verified (digest, policy inputs) result may be reused. Signatures are immutable content
# at a digest, so the only staleness is a signature deleted upstream; five minutes bounds it.
DEFAULT_CACHE_TTL_SECONDS = 300.0
DEFAULT_CACHE_ENTRIES = 16384
DEFAULT_VERDICT_CACHE_ENTRIES = 65536
# How long a tag may keep pointing at the digest it was resolved to (the bounded staleness of a tag).
DEFAULT_TAG_TTL_SECONDS = 30.0
# One decision, and one shared fetch-and-verify run, end by these deadlines (the chart's webhook
# timeout is 10 s: answer before kube-apiserver gives up).
DEFAULT_DECISION_TIMEOUT_SECONDS = 9.0
DEFAULT_FETCH_TIMEOUT_SECONDS = 8.5
# Bytes one fetch may read (manifests, blobs, bundles, tokens), and all fetches in flight together.
DEFAULT_MAX_DECISION_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_INFLIGHT_BYTES = 192 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Settings:
    """Controller-wide behaviour. Every field has a fail-closed default."""

    default_decision: DefaultDecision = "deny"  # for an image that no policy matches
    require_digest: bool = False  # deny tag-only references outright
    warn_on_tag: bool = True  # warn that a tag can move after admission
    require_sct: bool = True  # an explicit opt-out logs a warning
    require_issuer_extension: bool = True
    signature_repository: str | None = None  # cosign's COSIGN_REPOSITORY, controller-wide
    fetch_bundles: bool = True  # also look for Sigstore bundles through OCI 1.1 referrers
    max_workers: int = DEFAULT_MAX_WORKERS
    max_per_registry_host: int = DEFAULT_MAX_PER_REGISTRY_HOST
    max_per_namespace: int = DEFAULT_MAX_PER_NAMESPACE
    cache_ttl_seconds: float = DEFAULT_CACHE_TTL_SECONDS
    cache_entries: int = DEFAULT_CACHE_ENTRIES
    verdict_cache_entries: int = DEFAULT_VERDICT_CACHE_ENTRIES
    tag_ttl_seconds: float = DEFAULT_TAG_TTL_SECONDS
    decision_timeout_seconds: float = DEFAULT_DECISION_TIMEOUT_SECONDS  # the webhook passes its own
    fetch_timeout_seconds: float = DEFAULT_FETCH_TIMEOUT_SECONDS
    max_decision_bytes: int = DEFAULT_MAX_DECISION_BYTES
    max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES
    pinning: PinningSetting = "pods"  # tags pinned to the verified digest: in Pods, also in workloads, or off

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Read ``IMPRIMATUR_*`` variables. Unknown values are a config error, never a silent default."""

        def flag(name: str, default: bool) -> bool:
            raw = environ.get(name)
            if raw is None or raw == "":
                return default
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise PolicyError(Reason.CONFIG_INVALID, f"{name}={raw!r} is not a boolean")

        def number(name: str, default: float, low: float, high: float) -> float:
            raw = environ.get(name)
            if raw is None or raw == "":
                return default
            try:
                value = float(raw)
            except ValueError as e:
                raise PolicyError(Reason.CONFIG_INVALID, f"{name}={raw!r} is not a number") from e
            if not low <= value <= high:
                raise PolicyError(Reason.CONFIG_INVALID, f"{name}={raw!r} is outside [{low}, {high}]")
            return value

        decision = environ.get("IMPRIMATUR_DEFAULT_DECISION", "deny") or "deny"
        if decision not in ("deny", "allow"):
            raise PolicyError(Reason.CONFIG_INVALID, f"IMPRIMATUR_DEFAULT_DECISION={decision!r}")
        pinning = environ.get("IMPRIMATUR_PINNING", "pods") or "pods"
        if pinning not in ("off", "pods", "workloads"):
            raise PolicyError(
                Reason.CONFIG_INVALID, f"IMPRIMATUR_PINNING={pinning!r}: off, pods or workloads"
            )
        return cls(
            pinning="off" if pinning == "off" else ("workloads" if pinning == "workloads" else "pods"),
            default_decision="allow" if decision == "allow" else "deny",
            require_digest=flag("IMPRIMATUR_REQUIRE_DIGEST", False),
            warn_on_tag=flag("IMPRIMATUR_WARN_ON_TAG", True),
            require_sct=flag("IMPRIMATUR_REQUIRE_SCT", True),
            require_issuer_extension=flag("IMPRIMATUR_REQUIRE_ISSUER_EXTENSION", True),
            signature_repository=environ.get("IMPRIMATUR_SIGNATURE_REPOSITORY") or None,
            fetch_bundles=flag("IMPRIMATUR_FETCH_BUNDLES", True),
            max_workers=int(number("IMPRIMATUR_MAX_WORKERS", DEFAULT_MAX_WORKERS, 1, 512)),
            max_per_registry_host=int(
                number("IMPRIMATUR_MAX_PER_REGISTRY_HOST", DEFAULT_MAX_PER_REGISTRY_HOST, 1, 512)
            ),
            max_per_namespace=int(number("IMPRIMATUR_MAX_PER_NAMESPACE", DEFAULT_MAX_PER_NAMESPACE, 1, 512)),
            cache_ttl_seconds=number("IMPRIMATUR_CACHE_TTL_SECONDS", DEFAULT_CACHE_TTL_SECONDS, 0, 86400),
            cache_entries=int(number("IMPRIMATUR_CACHE_ENTRIES", DEFAULT_CACHE_ENTRIES, 0, 1_000_000)),
            verdict_cache_entries=int(
                number("IMPRIMATUR_VERDICT_CACHE_ENTRIES", DEFAULT_VERDICT_CACHE_ENTRIES, 0, 1_000_000)
            ),
            tag_ttl_seconds=number("IMPRIMATUR_TAG_TTL_SECONDS", DEFAULT_TAG_TTL_SECONDS, 0, 3600),
            fetch_timeout_seconds=number(
                "IMPRIMATUR_FETCH_TIMEOUT_SECONDS", DEFAULT_FETCH_TIMEOUT_SECONDS, 0.1, 30
            ),
            max_decision_bytes=int(
                number("IMPRIMATUR_MAX_DECISION_BYTES", DEFAULT_MAX_DECISION_BYTES, 65536, 1024**3)
            ),
            max_inflight_bytes=int(
                number("IMPRIMATUR_MAX_INFLIGHT_BYTES", DEFAULT_MAX_INFLIGHT_BYTES, 65536, 16 * 1024**3)
            ),
        )


def read_bounded_file(path: Path, max_bytes: int, what: str) -> bytes:
    """Read a configuration file (policy, trust root, registries.yaml, TLS material) of at most
    ``max_bytes``; a missing, unreadable or oversized file is a ``ConfigInvalid`` error."""
    try:
        with path.open("rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise PolicyError(Reason.CONFIG_INVALID, f"{what} {path}: {e.strerror}") from e
    if len(data) > max_bytes:
        raise PolicyError(Reason.CONFIG_INVALID, f"{what} {path}: larger than {max_bytes} bytes")
    return data
