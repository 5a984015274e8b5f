"""RFC 3161 signed timestamps from a timestamp authority (TSA) in the trust root.

A Sigstore bundle may carry ``timestampVerificationData.rfc3161Timestamps[].signedTimestamp``: the
DER of a whole ``TimeStampResp`` (RFC 3161 section 2.4.2) whose token is a CMS ``SignedData`` over a
``TSTInfo``. It proves that the bundle's signature bytes existed at ``genTime``; Rekor v2 entries
carry no integrated time, so this is then the only trusted time.

The DER is parsed by ``rfc3161-client`` (the maintained parser sigstore-python uses); the steps, in
order, each raising ``EvidenceError(Reason.TIMESTAMP_INVALID)``:

1. the response is at most ``MAX_BUNDLE_TIMESTAMP_BYTES``, parses, has status ``granted`` and at
   most ``MAX_TIMESTAMP_CERTIFICATES`` embedded certificates;
2. the message imprint is SHA-256/384/512 of ``signed_data``, by the imprint's own algorithm;
3. for some ``timestampAuthorities`` entry (chain: TSA leaf, intermediates, root; at least two
   certificates, as sigstore-python requires): the CMS signature verifies with the leaf, the leaf
   chains to the root at ``genTime``, an embedded signer certificate (if any) is that leaf, and
   the leaf has the critical ``id-kp-timeStamping`` EKU (all checked by ``rfc3161-client``);
4. every certificate of that chain is valid at ``genTime`` (checked here again, not trusted to the
   library alone), and ``genTime`` lies in the authority's ``validFor``, *inclusive at the end*
   (sigstore-go's rule; sigstore-python excludes the end instant).

The result is ``genTime`` as an aware UTC datetime. Nothing here reads the clock: whether that
time is acceptable for the signing certificate is the caller's check.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Final

from cryptography import x509
from rfc3161_client import (
    PKIStatus,
    TimeStampResponse,
    VerifierBuilder,
    decode_timestamp_response,
)

from controller.errors import EvidenceError, Reason
from controller.verify.limits import MAX_BUNDLE_TIMESTAMP_BYTES, MAX_TIMESTAMP_CERTIFICATES
from controller.verify.trustroot import CertificateAuthority, TrustRoot

# Message-imprint hash algorithms (https://www.iana.org/assignments/hash-function-text-names).
_IMPRINT_HASHES: Final = {
    x509.ObjectIdentifier("2.16.840.1.101.3.4.2.1"): "sha256",
    x509.ObjectIdentifier("2.16.840.1.101.3.4.2.2"): "sha384",
    x509.ObjectIdentifier("2.16.840.1.101.3.4.2.3"): "sha512",
}
_MIN_TSA_CHAIN: Final = 2  # the TSA leaf and a root


def _invalid(detail: str) -> EvidenceError:
    return EvidenceError(Reason.TIMESTAMP_INVALID, detail)


def parse_timestamp_response(token_der: bytes) -> TimeStampResponse:
    """Step 1: parse a ``TimeStampResp`` DER. Malformed or not granted -> ``TimestampInvalid``."""
    if len(token_der) > MAX_BUNDLE_TIMESTAMP_BYTES:
        raise _invalid(f"timestamp larger than {MAX_BUNDLE_TIMESTAMP_BYTES} bytes")
    try:
        response = decode_timestamp_response(bytes(token_der))
        status = response.status
        certificates = response.signed_data.certificates
        response.tst_info.gen_time  # noqa: B018  # parsed lazily: fail here, not in a later step
    except (ValueError, TypeError, KeyError, OverflowError) as e:
        raise _invalid(f"timestamp is not an RFC 3161 TimeStampResp: {e}") from e
    if status != PKIStatus.GRANTED:
        raise _invalid(f"timestamp status is {status}, not granted")
    if len(certificates) > MAX_TIMESTAMP_CERTIFICATES:
        raise _invalid(f"timestamp embeds more than {MAX_TIMESTAMP_CERTIFICATES} certificates")
    return response


def _gen_time(response: TimeStampResponse) -> datetime:
    when = response.tst_info.gen_time
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _check_imprint(response: TimeStampResponse, signed_data: bytes) -> None:
    """Step 2: the imprint is the hash of ``signed_data`` under the imprint's algorithm."""
    imprint = response.tst_info.message_imprint
    name = _IMPRINT_HASHES.get(imprint.hash_algorithm)
    if name is None:
        raise _invalid(f"timestamp imprint uses an unsupported hash {imprint.hash_algorithm.dotted_string}")
    if hashlib.new(name, signed_data).digest() != imprint.message:
        raise _invalid("timestamp is not over this signature")


def _verified_by(authority: CertificateAuthority, response: TimeStampResponse, signed_data: bytes) -> bool:
    """Step 3: the token verifies under ``authority``'s chain (rfc3161-client)."""
    certificates = [ca_cert.cert for ca_cert in authority.chain]
    builder = VerifierBuilder(
        tsa_certificate=certificates[0], intermediates=list(certificates[1:-1]), roots=[certificates[-1]]
    )
    try:
        return builder.build().verify_message(response, signed_data)
    except Exception:  # noqa: BLE001 - fail closed on whatever the parser raises
        # rfc3161-client raises more than VerificationError on malformed tokens: KeyError (found by
        # hypothesis in tests/verify/test_timestamp.py), cryptography's InvalidVersion (a swept byte
        # of a real token, test_every_byte_change_of_a_real_token_is_reasoned). Any raise means this
        # authority did not verify the token.
        return False


def _chain_valid_at(authority: CertificateAuthority, when: datetime) -> bool:
    """Step 4a: every certificate of the authority's chain is valid at ``when`` (inclusive)."""
    return all(ca_cert.not_before <= when <= ca_cert.not_after for ca_cert in authority.chain)


def verify_timestamp(token_der: bytes, *, signed_data: bytes, trust_root: TrustRoot) -> datetime:
    """Verify an RFC 3161 ``TimeStampResp`` over ``signed_data``; return its ``genTime`` (UTC).

    ``signed_data`` is what was timestamped: the bundle's signature bytes (the DSSE signature for
    an envelope). Any defect, or no trusted authority -> ``EvidenceError(TIMESTAMP_INVALID)``.
    """
    response = parse_timestamp_response(token_der)
    _check_imprint(response, signed_data)
    when = _gen_time(response)
    authorities = [a for a in trust_root.timestamp_authorities if len(a.chain) >= _MIN_TSA_CHAIN]
    if not authorities:
        raise _invalid(f"trust root {trust_root.name} has no timestamp authority")
    outside_window = False
    for authority in authorities:
        if not _verified_by(authority, response, signed_data):
            continue
        if not _chain_valid_at(authority, when):
            continue
        if not authority.valid_for.contains(when):  # step 4b, inclusive at both ends
            outside_window = True
            continue
        return when
    if outside_window:
        raise _invalid(
            f"timestamp {when.isoformat()} lies outside its authority's validity in the trust root"
        )
    raise _invalid("timestamp is not signed by a trusted timestamp authority valid at its time")
