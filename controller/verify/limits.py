"""Bounds on every piece of evidence and trust material that ``verify`` parses.

Each limit is a named constant so a reviewer can see the whole budget in one place. Oversized
*evidence* is bad evidence, not a failed fetch: it raises ``EvidenceError(Reason.LIMIT_EXCEEDED)``
(deny, not transient), never :class:`controller.errors.LimitError`, which is a transient
:class:`controller.errors.FetchError` reserved for the registry layer. An oversized trust root
raises ``PolicyError(Reason.TRUST_ROOT_INVALID)``.
"""

from __future__ import annotations

from typing import Final

# --- legacy cosign ``.sig`` layer (simple signing)
MAX_PAYLOAD_BYTES: Final = 128 * 1024  # the simple-signing payload (cosign writes ~300 bytes)
MAX_SIGNATURE_B64_BYTES: Final = 4 * 1024  # base64 signature; RSA-4096 is 684 characters
MAX_CERTIFICATE_PEM_BYTES: Final = 16 * 1024  # one PEM leaf certificate (Fulcio's are ~1-3 KiB)
MAX_CHAIN_PEM_BYTES: Final = 64 * 1024  # the ``dev.sigstore.cosign/chain`` annotation
MAX_CHAIN_CERTIFICATES: Final = 8  # certificates in that annotation
MAX_CACHED_CHAIN_ANNOTATIONS: Final = 32  # chain annotations whose PEM -> DER decoding is memoized
MAX_CACHED_ISSUER_NAMES: Final = 64  # leaf issuer names whose DER -> Name parsing is memoized
MAX_TLOG_BUNDLE_BYTES: Final = 64 * 1024  # the ``dev.sigstore.cosign/bundle`` annotation (SET + body)
MAX_JSON_DEPTH: Final = 32  # nesting of any JSON document we parse
MAX_SCTS: Final = 8  # embedded SCTs examined in one certificate

# --- Sigstore bundles (OCI referrers)
MAX_SIGSTORE_BUNDLE_BYTES: Final = 8 * 1024 * 1024  # a bundle may carry a large DSSE attestation
MAX_STATEMENT_SUBJECTS: Final = 1024  # in-toto statement subjects examined
MAX_STATEMENT_DEPTH: Final = 128  # predicates (SBOMs, provenance) nest deeper than our own formats

# --- trusted_root.json
MAX_TRUST_ROOT_BYTES: Final = 1024 * 1024
MAX_TRUST_ROOT_ENTRIES: Final = 64  # per list: tlogs, ctlogs, certificateAuthorities, TSAs
MAX_CA_CHAIN_CERTIFICATES: Final = 8  # certificates in one certificate authority's chain

# --- integers that travel through JSON and must survive canonical re-encoding exactly
MAX_JSON_SAFE_INTEGER: Final = 2**53 - 1
