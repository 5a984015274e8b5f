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

# --- DSSE envelopes (bundles and legacy ``.att`` layers) and the bundle verifier
MAX_DSSE_PAYLOAD_BYTES: Final = 4 * 1024 * 1024  # the decoded in-toto statement (SBOMs are large)
MAX_DSSE_SIGNATURES: Final = 8  # signatures in one envelope (Sigstore writes exactly one)
MAX_DSSE_SIGNATURE_BYTES: Final = 4 * 1024  # base64 of one signature; RSA-4096 is 684 characters
MAX_BUNDLE_CHAIN_CERTIFICATES: Final = 8  # x509CertificateChain.certificates in a v0.1/v0.2 bundle
MAX_BUNDLE_TLOG_ENTRIES: Final = 4  # tlogEntries (Sigstore writes one)
MAX_BUNDLE_TIMESTAMPS: Final = 4  # rfc3161Timestamps
MAX_BUNDLE_CERTIFICATE_BYTES: Final = 16 * 1024  # one DER certificate, decoded
MAX_BUNDLE_TIMESTAMP_BYTES: Final = 32 * 1024  # one RFC 3161 token, decoded
MAX_BUNDLE_BODY_BYTES: Final = (
    4 * 1024 * 1024 + 64 * 1024
)  # a Rekor body (an intoto entry holds the envelope)
MAX_INCLUSION_PROOF_HASHES: Final = 64  # a Merkle audit path (2**64 leaves at most)
MAX_CHECKPOINT_BYTES: Final = 16 * 1024  # a signed note
MAX_PUBLIC_KEY_PEM_BYTES: Final = 16 * 1024  # a --key / TrustedKey PEM

# --- trusted_root.json
MAX_TRUST_ROOT_BYTES: Final = 1024 * 1024
MAX_TRUST_ROOT_ENTRIES: Final = 64  # per list: tlogs, ctlogs, certificateAuthorities, TSAs
MAX_CA_CHAIN_CERTIFICATES: Final = 8  # certificates in one certificate authority's chain

# --- integers that travel through JSON and must survive canonical re-encoding exactly
MAX_JSON_SAFE_INTEGER: Final = 2**53 - 1

# --- transparency-log proofs, checkpoints, RFC 3161 timestamps (merkle, checkpoint, timestamp, entries);
#     the proof, checkpoint, token and body sizes are the bundle verifier's bounds above
MAX_TREE_SIZE: Final = 2**63 - 1  # Rekor counts leaves in an int64
MAX_CHECKPOINT_SIGNATURES: Final = 16  # signature lines: the log's plus witness cosignatures
MAX_CHECKPOINT_EXTENSION_LINES: Final = 16  # body lines after the root hash ("Timestamp: ...")
MAX_NOTE_SIGNATURE_BYTES: Final = 1024  # one decoded signature line: 4-byte key hint + signature
MAX_TIMESTAMP_CERTIFICATES: Final = 8  # certificates embedded in a timestamp token
