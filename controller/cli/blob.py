"""``imprimatur verify-blob``: cosign's command for a file (or a ``sha256:`` digest) with a bundle.

    imprimatur verify-blob --bundle artifact.sigstore.json \\
        (--certificate-identity[-regexp] ID --certificate-oidc-issuer[-regexp] URL | --key key.pub) \\
        [--trusted-root trusted_root.json] [--staging] ARTIFACT_PATH | sha256:HEX

The bundle is verified by :func:`controller.verify.verify_blob` (pure: bytes, trust root, time);
the identity is then matched by the same policy code as ``verify`` (a flags policy evaluated by
:func:`controller.policy.evaluate.evaluate_policy`). A blob has no separate attestation policy: a
DSSE bundle over the artifact counts as its signature, and its predicate type is printed.

Exit codes as ``verify``: 0 verified, 1 rejected, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Final, TextIO

from controller.config import read_bounded_file
from controller.engine import builtin_trust_roots
from controller.engine.roots import utc_now
from controller.errors import EvidenceError
from controller.model import Digest, Failure, VerifiedSignature
from controller.policy import policy_from_flags
from controller.policy.evaluate import evaluate_policy
from controller.verify import TrustRoot, VerifyOptions, verify_blob
from controller.verify.limits import MAX_SIGSTORE_BUNDLE_BYTES

EXIT_OK: Final = 0
EXIT_REJECTED: Final = 1
EXIT_USAGE: Final = 2
MAX_ARTIFACT_BYTES: Final = 64 * 1024**3  # hashed in chunks; a bound on the read, not on memory
MAX_SMALL_FILE_BYTES: Final = 8 * 1024 * 1024  # a trusted root or a key file
_CHUNK: Final = 1024 * 1024
_DIGEST: Final = re.compile(r"^sha256:[0-9a-f]{64}$")


class _UsageError(Exception):
    """Raised for a misuse of the command (exit 2)."""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``verify-blob`` to the CLI."""
    p = sub.add_parser("verify-blob", help="verify a file or sha256 digest against a Sigstore bundle")
    p.add_argument("artifact", metavar="ARTIFACT", help="a file path, or sha256:<hex>")
    p.add_argument("--bundle", required=True, metavar="FILE", help="the Sigstore bundle (.sigstore.json)")
    p.add_argument("--certificate-identity", help="exact subject (email, URI or username)")
    p.add_argument("--certificate-identity-regexp", help="subject regex (anchored: full match)")
    p.add_argument("--certificate-oidc-issuer", help="exact OIDC issuer")
    p.add_argument("--certificate-oidc-issuer-regexp", help="OIDC issuer regex (anchored: full match)")
    p.add_argument("--key", metavar="FILE", help="a PEM public key: verify with it instead of an identity")
    p.add_argument("--trusted-root", metavar="FILE", help="a Sigstore trusted_root.json to use instead")
    p.add_argument("--staging", action="store_true", help="use the embedded staging root")
    p.add_argument("--insecure-ignore-tlog", action="store_true", help="accept a bundle without a tlog entry")
    p.add_argument("--insecure-ignore-sct", action="store_true", help="do not require an embedded SCT")
    p.add_argument(
        "--allow-missing-issuer", action="store_true", help="accept a leaf without issuer extension"
    )
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    p.set_defaults(run=run)


def _artifact_digest(text: str) -> Digest:
    if _DIGEST.match(text):
        return Digest.parse(text)
    path = Path(text)
    if not path.is_file():
        raise _UsageError(f"{text}: not a file, nor sha256:<hex>")
    hasher = hashlib.sha256()
    read = 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            read += len(chunk)
            if read > MAX_ARTIFACT_BYTES:
                raise _UsageError(f"{text}: larger than {MAX_ARTIFACT_BYTES} bytes")
            hasher.update(chunk)
    return Digest("sha256", hasher.hexdigest())


def _read(path: str, limit: int) -> bytes:
    try:
        return read_bounded_file(Path(path), limit, "file")
    except OSError as e:
        raise _UsageError(f"{path}: {e.strerror or e}") from e


def _print(out: TextIO, output: str, sig: VerifiedSignature | None, failure: Failure | None) -> None:
    if output == "json":
        doc: dict[str, object] = {"verified": failure is None}
        if failure is not None:
            doc.update(reason=str(failure.reason), detail=failure.detail)
        if sig is not None:
            doc.update(
                subject=sig.subject,
                issuer=sig.issuer,
                keyId=sig.key_id,
                kind=sig.kind,
                predicateType=sig.predicate_type,
                logIndex=sig.log_index,
            )
        out.write(json.dumps(doc, indent=2) + "\n")
        return
    if failure is not None:
        out.write(failure.message() + "\n")
        return
    if sig is None:
        return
    signer = f"key {sig.key_id}" if sig.key_id else f"{sig.subject} ({sig.issuer or 'no issuer'})"
    what = sig.kind if not sig.predicate_type else f"{sig.kind} {sig.predicate_type}"
    out.write(f"Verified OK: {what} by {signer}")
    if sig.log_index is not None:
        out.write(f", tlog index {sig.log_index}")
    out.write("\n")
    for warning in sig.warnings:
        out.write(f"warning: {warning}\n")


def _verify(args: argparse.Namespace, out: TextIO) -> int:
    key_pem = None if args.key is None else _read(args.key, MAX_SMALL_FILE_BYTES)
    policy = policy_from_flags(
        certificate_identity=args.certificate_identity,
        certificate_identity_regexp=args.certificate_identity_regexp,
        certificate_oidc_issuer=args.certificate_oidc_issuer,
        certificate_oidc_issuer_regexp=args.certificate_oidc_issuer_regexp,
        tlog_required=not args.insecure_ignore_tlog,
        trust_root="staging" if args.staging else "public-good",
        key_pem=key_pem,
    )
    if args.trusted_root is not None:
        trust_root = TrustRoot.from_json(_read(args.trusted_root, MAX_SMALL_FILE_BYTES), policy.trust_root)
    else:
        trust_root = builtin_trust_roots()[policy.trust_root]
    digest = _artifact_digest(args.artifact)
    bundle = _read(args.bundle, MAX_SIGSTORE_BUNDLE_BYTES)
    options = VerifyOptions(
        require_tlog=policy.tlog_required,
        require_sct=not args.insecure_ignore_sct,
        require_issuer_extension=not args.allow_missing_issuer,
        keys=policy.trusted_keys,
    )
    image = args.artifact
    try:
        sig = verify_blob(
            bundle, artifact_digest=digest, trust_root=trust_root, now=utc_now(), options=options
        )
    except EvidenceError as e:
        _print(out, args.output, None, Failure(e.reason, e.detail, image))
        return EXIT_REJECTED
    # For a blob, the bundle's DSSE statement about the artifact is its signature.
    as_signature = dataclasses.replace(sig, kind="signature")
    result = evaluate_policy(policy, [as_signature], [], image)
    if not result.passed:
        _print(out, args.output, sig, Failure(result.reason, result.detail, image))
        return EXIT_REJECTED
    _print(out, args.output, sig, None)
    return EXIT_OK


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``verify-blob``; usage errors exit 2 (``main`` maps a PolicyError, e.g. a bad --key, to 2)."""
    try:
        return _verify(args, out)
    except _UsageError as e:
        out.write(f"imprimatur: {e}\n")
        return EXIT_USAGE
