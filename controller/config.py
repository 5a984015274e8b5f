"""Settings, parsed once and explicitly. Nothing is read at import time.

``Settings.from_env`` is the only place that reads the environment; the CLI builds ``Settings``
from flags instead. Both hand the result to the engine and the admission layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
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
# --- issue 8: how far after its creation an ImagePolicyException may expire (break-glass is short)
DEFAULT_MAX_EXCEPTION_SECONDS = 7 * 86400.0
MAX_EXCEPTION_SECONDS_LIMIT = 90 * 86400.0


def _env_number(environ: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    """The number in ``environ[name]`` within ``[low, high]``; ``default`` when unset or empty."""
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
    max_exception_seconds: float = DEFAULT_MAX_EXCEPTION_SECONDS  # issue 8: ImagePolicyException expiry

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

        number = partial(_env_number, environ)

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
            # --- issue 8
            max_exception_seconds=number(
                "IMPRIMATUR_MAX_EXCEPTION_SECONDS",
                DEFAULT_MAX_EXCEPTION_SECONDS,
                60,
                MAX_EXCEPTION_SECONDS_LIMIT,
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


# --- background re-verification and reports (issue 8): a block of its own


ReportFormatSetting = Literal["auto", "wgpolicyk8s", "openreports", "both", "off"]
_REPORT_FORMAT_SETTINGS: tuple[ReportFormatSetting, ...] = (
    "auto",
    "wgpolicyk8s",
    "openreports",
    "both",
    "off",
)
MAX_EXCLUDED_NAMESPACES = 256


@dataclass(frozen=True, slots=True)
class BackgroundSettings:
    """The background loop: how often, how much per cycle, and where its reports go.

    ``report_format``: ``auto`` writes PolicyReports, and OpenReports Reports too where the cluster
    serves ``openreports.io/v1alpha1``; ``wgpolicyk8s``/``openreports``/``both`` ask explicitly;
    ``off`` writes none (Events and gauges still are)."""

    enabled: bool = True
    period_seconds: float = 3600.0
    debounce_seconds: float = 5.0  # after a policy or trust-root change, before the cycle starts
    max_concurrent: int = 2  # uncached decisions in flight at once: the most slots it takes from admission
    max_uncached: int = 500  # uncached images decided per cycle, in all
    max_uncached_per_namespace: int = 50
    max_images_per_namespace: int = 5000
    cycle_seconds: float = 300.0  # a cycle's time budget; what is left undecided is reported LimitExceeded
    decision_timeout_seconds: float = 30.0  # per uncached image
    page_size: int = 100  # objects per list call: parsing one page holds the GIL, so keep it short
    max_objects: int = 50_000  # objects read per resource per cycle
    report_format: ReportFormatSetting = "auto"
    max_results: int = 1000  # per report
    exclude_namespaces: tuple[str, ...] = ("kube-system",)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> BackgroundSettings:
        number = partial(_env_number, environ)

        enabled = (environ.get("IMPRIMATUR_BACKGROUND_ENABLED") or "true").lower()
        if enabled not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            raise PolicyError(Reason.CONFIG_INVALID, f"IMPRIMATUR_BACKGROUND_ENABLED={enabled!r}")
        fmt = environ.get("IMPRIMATUR_REPORT_FORMAT") or "auto"
        if fmt not in _REPORT_FORMAT_SETTINGS:
            raise PolicyError(
                Reason.CONFIG_INVALID,
                f"IMPRIMATUR_REPORT_FORMAT={fmt!r}: one of {', '.join(_REPORT_FORMAT_SETTINGS)}",
            )
        excluded = tuple(
            n.strip()
            for n in (environ.get("IMPRIMATUR_EXCLUDE_NAMESPACES") or "kube-system").split(",")
            if n.strip()
        )
        if len(excluded) > MAX_EXCLUDED_NAMESPACES:
            raise PolicyError(
                Reason.CONFIG_INVALID, f"IMPRIMATUR_EXCLUDE_NAMESPACES: more than {MAX_EXCLUDED_NAMESPACES}"
            )
        return cls(
            enabled=enabled in ("1", "true", "yes", "on"),
            period_seconds=number("IMPRIMATUR_BACKGROUND_PERIOD_SECONDS", 3600.0, 10, 7 * 86400),
            debounce_seconds=number("IMPRIMATUR_BACKGROUND_DEBOUNCE_SECONDS", 5.0, 0, 600),
            max_concurrent=int(number("IMPRIMATUR_BACKGROUND_MAX_CONCURRENT", 2, 1, 64)),
            max_uncached=int(number("IMPRIMATUR_BACKGROUND_MAX_UNCACHED", 500, 0, 1_000_000)),
            max_uncached_per_namespace=int(
                number("IMPRIMATUR_BACKGROUND_MAX_UNCACHED_PER_NAMESPACE", 50, 0, 1_000_000)
            ),
            max_images_per_namespace=int(
                number("IMPRIMATUR_BACKGROUND_MAX_IMAGES_PER_NAMESPACE", 5000, 1, 1_000_000)
            ),
            cycle_seconds=number("IMPRIMATUR_BACKGROUND_CYCLE_SECONDS", 300.0, 1, 86400),
            page_size=int(number("IMPRIMATUR_BACKGROUND_PAGE_SIZE", 100, 1, 5000)),
            max_objects=int(number("IMPRIMATUR_BACKGROUND_MAX_OBJECTS", 50_000, 1, 10_000_000)),
            report_format=next(f for f in _REPORT_FORMAT_SETTINGS if f == fmt),
            max_results=int(number("IMPRIMATUR_REPORT_MAX_RESULTS", 1000, 1, 5000)),
            exclude_namespaces=excluded,
        )
