"""Crypto-only verification cost per signature, as a ratio to the raw-crypto floor of the same run.

The floor is the sum of the signature verifications that keyless verification cannot avoid for one
signature, done directly with ``cryptography`` on pre-parsed keys and bytes:

* the payload signature (the leaf's key, ECDSA P-256 / SHA-256),
* the Rekor SET (Rekor's key, ECDSA P-256 / SHA-256),
* the embedded SCT (the CT log's key, ECDSA P-256 / SHA-256),
* the leaf's link to the Fulcio intermediate (ECDSA P-384 / SHA-384).

(The CA chain's own links are verified once, when the trust root is loaded, not per signature.)
The measured figure is ``verify_simplesigning`` on the same signatures: it also parses the PEM
certificate, the payload and bundle JSON, the Rekor body, the extensions and the chain annotation.

Run: ``python -m benchmarks.crypto_verify``. It prints per-signature times and the ratio; target <= 1.3x.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from controller.model import Digest, Signature
from controller.verify import TrustRoot, VerifyOptions, verify_simplesigning
from tests.kit.sigstore import ANNOTATION_BUNDLE, SigstoreKit, sct_signed_data

TARGET_RATIO = 1.3


def _floor_inputs(kit: SigstoreKit, sig: Signature) -> Callable[[], None]:
    """The four verifies of one signature, on keys and bytes prepared outside the timed region."""
    leaf = x509.load_pem_x509_certificate(sig.annotations["dev.sigstore.cosign/certificate"].encode())
    leaf_key = leaf.public_key()
    assert isinstance(leaf_key, ec.EllipticCurvePublicKey)
    payload_signature = base64.b64decode(sig.annotations["dev.cosignproject.cosign/signature"])
    bundle = json.loads(sig.annotations[ANNOTATION_BUNDLE])
    set_signature = base64.b64decode(bundle["SignedEntryTimestamp"])
    set_payload = json.dumps(bundle["Payload"], sort_keys=True, separators=(",", ":")).encode()
    rekor_key = kit.rekor.private_key.public_key()
    ct_key = kit.ct_log.private_key.public_key()
    assert isinstance(rekor_key, ec.EllipticCurvePublicKey)
    assert isinstance(ct_key, ec.EllipticCurvePublicKey)
    issuer = kit.ca.issuing_certificate
    issuer_key = issuer.public_key()
    assert isinstance(issuer_key, ec.EllipticCurvePublicKey)
    sct = leaf.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps).value[0]
    sct_data = sct_signed_data(
        timestamp_ms=int(sct.timestamp.replace(tzinfo=UTC).timestamp() * 1000),
        issuer_key_hash=hashlib.sha256(
            issuer_key.public_bytes(encoding=Encoding.DER, format=PublicFormat.SubjectPublicKeyInfo)
        ).digest(),
        tbs=leaf.tbs_precertificate_bytes,
    )
    sct_signature = sct.signature
    tbs = leaf.tbs_certificate_bytes
    leaf_signature = leaf.signature
    sha256 = ec.ECDSA(hashes.SHA256())
    sha384 = ec.ECDSA(hashes.SHA384())
    payload = sig.payload

    def floor() -> None:
        leaf_key.verify(payload_signature, payload, sha256)
        rekor_key.verify(set_signature, set_payload, sha256)
        ct_key.verify(sct_signature, sct_data, sha256)
        issuer_key.verify(leaf_signature, tbs, sha384)

    floor()  # the inputs are right: this must not raise
    return floor


def _best_of(repeats: int, rounds: int, run: Callable[[], None]) -> float:
    """Seconds per call: the median of ``repeats`` timings of ``rounds`` calls each."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(rounds):
            run()
        samples.append((time.perf_counter() - start) / rounds)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signatures", type=int, default=16, help="distinct signatures to cycle through")
    parser.add_argument("--rounds", type=int, default=200, help="verifications per timing")
    parser.add_argument("--repeats", type=int, default=7, help="timings (the median is reported)")
    args = parser.parse_args()

    now = datetime.now(UTC)
    kit = SigstoreKit(now)
    trust_root = TrustRoot.from_json(kit.trusted_root_json(), "bench")
    options = VerifyOptions()
    digests = [f"sha256:{hashlib.sha256(str(i).encode()).hexdigest()}" for i in range(args.signatures)]
    sigs = [kit.sign_image(d, "registry.example/bench/app").to_signature("bench") for d in digests]
    floors = [_floor_inputs(kit, s) for s in sigs]
    parsed = [Digest.parse(d) for d in digests]

    index = {"floor": 0, "verify": 0}

    def one_floor() -> None:
        i = index["floor"] = (index["floor"] + 1) % len(floors)
        floors[i]()

    def one_verify() -> None:
        i = index["verify"] = (index["verify"] + 1) % len(sigs)
        verify_simplesigning(sigs[i], digest=parsed[i], trust_root=trust_root, options=options, now=now)

    one_verify()  # warm up imports and caches outside the timing
    # Interleave the two so that frequency scaling and noise hit both alike.
    floor_t: list[float] = []
    verify_t: list[float] = []
    for _ in range(args.repeats):
        floor_t.append(_best_of(1, args.rounds, one_floor))
        verify_t.append(_best_of(1, args.rounds, one_verify))
    floor_s = statistics.median(floor_t)
    verify_s = statistics.median(verify_t)
    ratio = verify_s / floor_s
    print(f"crypto-only keyless verification, per signature (median of {args.repeats} x {args.rounds})")
    print(f"  raw-crypto floor (4 verifies: payload, SET, SCT, leaf link): {floor_s * 1e6:8.1f} us")
    print(f"  verify_simplesigning (full checklist):                         {verify_s * 1e6:8.1f} us")
    print(
        f"  ratio: {ratio:.2f}x  (target <= {TARGET_RATIO}x)  {'OK' if ratio <= TARGET_RATIO else 'OVER TARGET'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
