"""``imprimatur verify-attestation``: cosign's command, printing the verified in-toto statements.

    imprimatur verify-attestation IMAGE --type slsaprovenance1 \\
        (--certificate-identity[-regexp] ID --certificate-oidc-issuer[-regexp] URL | --key key.pub)

The attestations are read where cosign writes them (the legacy ``sha256-<hex>.att`` tag and OCI 1.1
referrer bundles), verified by the engine exactly as for admission, and kept when their predicate type
is ``--type`` (cosign's short names or a URI) and their signer is trusted. Each verified statement is
printed as one JSON line (``-o json``: one document with the signers). Exit codes as ``verify``: 0 at
least one attestation verified, 1 none (the reason on stderr), 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Final, TextIO

from controller.cli import EXIT_OK, EXIT_REJECTED, _UsageError, add_common_options, build_engine
from controller.engine.attestations import AttestationLookup, lookup_attestations_sync
from controller.errors import Reason
from controller.model import VerifiedSignature
from controller.policy import CompiledPolicy

# cosign's --type short names (cmd/cosign/cli/options/predicate.go); anything with a ":" is a URI.
PREDICATE_TYPES: Final = {
    "custom": "https://cosign.sigstore.dev/attestation/v1",
    "slsaprovenance": "https://slsa.dev/provenance/v0.2",
    "slsaprovenance02": "https://slsa.dev/provenance/v0.2",
    "slsaprovenance1": "https://slsa.dev/provenance/v1",
    "link": "https://in-toto.io/Link/v1",
    "spdx": "https://spdx.dev/Document",
    "spdxjson": "https://spdx.dev/Document",
    "cyclonedx": "https://cyclonedx.org/bom",
    "vuln": "https://cosign.sigstore.dev/attestation/vuln/v1",
    "openvex": "https://openvex.dev/ns",
}
MAX_LISTED_FAILURES: Final = 5


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "verify-attestation", help="verify an image's attestations of one predicate type and print them"
    )
    p.add_argument("image", metavar="IMAGE")
    p.add_argument(
        "--type",
        default="custom",
        metavar="PREDICATE",
        help=f"predicate type: a URI or one of {', '.join(PREDICATE_TYPES)} (default custom)",
    )
    add_common_options(p)
    p.set_defaults(run=run)


def predicate_uri(name: str) -> str:
    """cosign's short name resolved to its URI; a URI as it is."""
    if ":" in name:
        return name
    uri = PREDICATE_TYPES.get(name)
    if uri is None:
        raise _UsageError(f"--type {name!r}: not a URI nor one of {', '.join(PREDICATE_TYPES)}")
    return uri


def run(args: argparse.Namespace, out: TextIO) -> int:
    predicate_type = predicate_uri(args.type)
    if args.policy:
        raise _UsageError(
            "verify-attestation takes --certificate-identity/--certificate-oidc-issuer or --key"
        )
    engine = build_engine(args)
    try:
        (policy,) = [p for p in engine.policies if isinstance(p, CompiledPolicy)]  # the flags policy
        found = lookup_attestations_sync(engine, args.image, policy, predicate_type, timeout=args.timeout)
    finally:
        engine.close()
    if args.output == "json":
        json.dump(_document(found, predicate_type), out, indent=2)
        out.write("\n")
    else:
        for sig in found.matched:
            out.write(json.dumps(json.loads(sig.statement), separators=(",", ":"), sort_keys=True) + "\n")
    if found.matched:
        return EXIT_OK
    _explain(found, predicate_type, policy)
    return EXIT_REJECTED


def _signer(sig: VerifiedSignature) -> dict[str, object]:
    signer: dict[str, object] = (
        {"keyId": sig.key_id} if sig.key_id else {"subject": sig.subject, "issuer": sig.issuer}
    )
    signer["logIndex"] = sig.log_index
    signer["integratedTime"] = None if sig.integrated_time is None else sig.integrated_time.isoformat()
    signer["source"] = sig.source
    return signer


def _document(found: AttestationLookup, predicate_type: str) -> dict[str, object]:
    return {
        "image": found.image,
        "digest": str(found.digest),
        "predicateType": predicate_type,
        "verified": bool(found.matched),
        "attestations": [
            {"signer": _signer(sig), "statement": json.loads(sig.statement)} for sig in found.matched
        ],
        "failures": [f.message() for f in found.failures[:MAX_LISTED_FAILURES]],
    }


def _explain(found: AttestationLookup, predicate_type: str, policy: CompiledPolicy) -> None:
    import sys  # noqa: PLC0415 - stderr only on the failure path

    if found.unmatched:
        reason, detail = Reason.ATTESTATION_INVALID, "attested by none of the trusted signers"
    elif found.failures:
        reason, detail = (
            Reason.ATTESTATION_INVALID,
            "; ".join(f.message() for f in found.failures[:MAX_LISTED_FAILURES]),
        )
    else:
        reason, detail = Reason.ATTESTATION_MISSING, "no attestation of that type"
    sys.stderr.write(f"imprimatur: {reason}: {found.image}: {predicate_type}: {detail} ({policy.label})\n")
