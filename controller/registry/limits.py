"""Bounds on everything the registry layer reads, counts or waits for.

Each default is a named constant. A breach raises :class:`~controller.errors.LimitError`; it is never a
hang or an out-of-memory. Bodies are streamed against a byte cap: a ``Content-Length`` is checked first
but never trusted alone.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from controller.errors import PolicyError, Reason

MIB = 1024 * 1024

MAX_MANIFEST_BYTES = 4 * MIB
"""distribution's own default limit on a manifest PUT is 4 MiB; nothing legitimate is larger."""

MAX_BLOB_BYTES = 4 * MIB
"""Signature payloads and Sigstore bundles are a few KiB; 4 MiB leaves room for long chains."""

MAX_SIGNATURE_LAYERS = 64
"""Layers on one ``.sig`` manifest (cosign appends one per signing)."""

MAX_REDIRECTS = 5
CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 10.0
"""Longest wait for any single read from a socket (headers or body)."""

TOTAL_TIMEOUT_SECONDS = 30.0
"""Longest time one HTTP hop may take, from sending its request to the end of its body: the clock is
checked after every body chunk, and a body read still blocked then has its socket cut."""

MAX_TOKEN_BYTES = 256 * 1024
"""A token endpoint's JSON answer. Docker Hub's tokens are ~1 KiB, cloud registries' a few KiB."""

MAX_INDEX_CHILDREN = 256
"""Descriptors taken from an index or a referrers list."""

MAX_ERROR_BODY_BYTES = 64 * 1024
"""Bytes read from a non-2xx answer (to find the distribution error code)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Explicit byte, count and time bounds for the registry client (python-tuf's ``UpdaterConfig``)."""

    max_manifest_bytes: int = MAX_MANIFEST_BYTES
    max_blob_bytes: int = MAX_BLOB_BYTES
    max_signature_layers: int = MAX_SIGNATURE_LAYERS
    max_redirects: int = MAX_REDIRECTS
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS
    read_timeout: float = READ_TIMEOUT_SECONDS
    total_timeout: float = TOTAL_TIMEOUT_SECONDS
    max_token_bytes: int = MAX_TOKEN_BYTES
    max_index_children: int = MAX_INDEX_CHILDREN
    max_error_body_bytes: int = MAX_ERROR_BODY_BYTES

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise PolicyError(Reason.CONFIG_INVALID, f"limit {f.name} must be a number, not {value!r}")
            minimum = 0 if f.name == "max_redirects" else 1e-9
            if value < minimum:
                raise PolicyError(Reason.CONFIG_INVALID, f"limit {f.name} must be positive, not {value!r}")
