"""sigstore-python 4.5.1 as a differential oracle for our bundle verifier.

For every conformance case (by digest) and every real bundle, both verifiers give a verdict; they
must agree, except for the disagreements listed in :data:`KNOWN_DISAGREEMENTS`, each with why. A
disagreement that is not listed, or a listed one that no longer happens, fails the test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sigstore.hashes import Hashed
from sigstore.models import Bundle, TrustedRoot
from sigstore.verify import Verifier, policy
from sigstore_models.common.v1 import HashAlgorithm
from sigstore_models.trustroot import v1 as trustroot_v1

from controller.errors import ImprimaturError
from controller.model import Digest, TrustedKey
from controller.verify import TrustRoot, VerifyOptions, verify_blob
from tests.sigstore_real import real_data_dir
from tests.verify.conformance import cases
from tests.verify.realdata import EMBEDDED_PUBLIC_GOOD, EMBEDDED_STAGING

NOW = datetime(2026, 11, 25, tzinfo=UTC)

# case -> (ours, sigstore-python's), and why they differ. Ours is always the expected verdict.
KNOWN_DISAGREEMENTS: dict[str, tuple[bool, bool, str]] = {
    "managed-key-happy-path": (True, False, "sigstore-python 4.5.1 cannot verify with a managed key"),
    "managed-key-and-trusted-root": (True, False, "sigstore-python 4.5.1 cannot verify with a managed key"),
    "intoto-with-custom-trust-root": (
        True,
        False,
        "sigstore-python refuses intoto 0.0.2 entries, which cosign attest and sigstore-js write",
    ),
    "trust-root-tsa-validity-end-inclusive": (
        True,
        False,
        "a TSA validity end is inclusive (TimeRange is closed); sigstore-python treats it as exclusive",
    ),
}


@dataclass(frozen=True)
class Run:
    """One bundle to verify with both: its bytes, artifact digest, root and expected signer."""

    name: str
    bundle: bytes
    digest: Digest
    root: bytes
    identity: str
    issuer: str
    key: bytes | None = None


def _conformance_runs() -> list[Run]:
    runs = []
    for case in cases():
        root = (case.trusted_root or EMBEDDED_PUBLIC_GOOD).read_bytes()
        key = None if case.key is None else case.key.read_bytes()
        runs.append(
            Run(
                case.name,
                case.bundle.read_bytes(),
                Digest.parse(case.digest),
                root,
                case.identity,
                case.issuer,
                key,
            )
        )
    return runs


def _real_runs() -> list[Run]:
    folder = real_data_dir() / "bundles"
    runs = [
        Run(
            "cosign__oci-attestation",
            (folder / "cosign__oci-attestation.sigstore.json").read_bytes(),
            Digest.parse("sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4"),
            EMBEDDED_PUBLIC_GOOD.read_bytes(),
            "cody@soyland.com",
            "https://github.com/login/oauth",
        )
    ]
    signers = {
        "bundle": "a@tny.town",
        "bundle_no_checkpoint": "a@tny.town",
        "bundle_v3": "william@yossarian.net",
        "bundle_v3_alt": "william@yossarian.net",
    }
    for stem, subject in signers.items():
        artifact = folder / f"sigstore-python__{stem}.txt"
        runs.append(
            Run(
                f"sigstore-python__{stem}",
                Path(f"{artifact}.sigstore").read_bytes(),
                Digest.of(artifact.read_bytes()),
                EMBEDDED_STAGING.read_bytes(),
                subject,
                "https://github.com/login/oauth",
            )
        )
    return runs


def ours(run: Run) -> bool:
    """Our verdict, with the identity matched as verify-blob matches it (exactly)."""
    keys = () if run.key is None else (TrustedKey(run.key, "key.pub"),)
    try:
        root = TrustRoot.from_json(run.root, "root")
        sig = verify_blob(
            run.bundle, artifact_digest=run.digest, trust_root=root, now=NOW, options=VerifyOptions(keys=keys)
        )
    except ImprimaturError:
        return False
    return (
        bool(sig.key_id) if run.key is not None else (sig.subject, sig.issuer) == (run.identity, run.issuer)
    )


def theirs(run: Run) -> bool:
    """sigstore-python's verdict, as its conformance client computes it."""
    try:
        verifier = Verifier(trusted_root=TrustedRoot(trustroot_v1.TrustedRoot.from_json(run.root)))
        bundle = Bundle.from_json(run.bundle)
        identity = policy.Identity(identity=run.identity, issuer=run.issuer)
        if json.loads(run.bundle).get("dsseEnvelope") is None:
            hashed = Hashed(algorithm=HashAlgorithm.SHA2_256, digest=bytes.fromhex(run.digest.hex))
            verifier.verify_artifact(hashed, bundle, identity)
            return run.key is None
        _, payload = verifier.verify_dsse(bundle, identity)
        statement = json.loads(payload)
        return any(s.get("digest", {}).get("sha256") == run.digest.hex for s in statement["subject"])
    except Exception:  # noqa: BLE001 - any refusal of theirs is a "no"
        return False


@pytest.fixture(scope="module")
def verdicts() -> dict[str, tuple[bool, bool]]:
    return {run.name: (ours(run), theirs(run)) for run in (*_conformance_runs(), *_real_runs())}


def test_verdicts_agree_case_by_case(verdicts: dict[str, tuple[bool, bool]]) -> None:
    disagreements = {name: pair for name, pair in verdicts.items() if pair[0] != pair[1]}
    expected = {name: (o, t) for name, (o, t, _) in KNOWN_DISAGREEMENTS.items()}
    assert disagreements == expected
    agreed = len(verdicts) - len(disagreements)
    print(
        f"\noracle: {agreed}/{len(verdicts)} agree with sigstore-python; known disagreements: {sorted(expected)}"
    )


def test_our_verdicts_are_the_conformance_verdicts(verdicts: dict[str, tuple[bool, bool]]) -> None:
    for case in cases():
        assert verdicts[case.name][0] is case.should_pass, case.name


def test_real_bundles_verify_and_fail_with_a_wrong_identity() -> None:
    for run in _real_runs():
        if run.name in KNOWN_DISAGREEMENTS:
            continue
        wrong = Run(run.name, run.bundle, run.digest, run.root, "mallory@example.com", run.issuer)
        assert ours(run) is theirs(run), run.name
        assert not ours(wrong)
        assert not theirs(wrong)

    verified = {run.name for run in _real_runs() if ours(run)}
    # bundle_no_checkpoint is a v0.2 bundle whose inclusion proof has no checkpoint: both refuse it.
    assert verified == {
        "cosign__oci-attestation",
        "sigstore-python__bundle",
        "sigstore-python__bundle_v3",
        "sigstore-python__bundle_v3_alt",
    }
