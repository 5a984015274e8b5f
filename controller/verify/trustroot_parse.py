"""The elements of ``trusted_root.json``: validity periods, log keys, certificate authorities.

Each element of protobuf-specs' ``TrustedRoot`` (``TransparencyLogInstance``,
``CertificateAuthority``, ``TimeRange`` ...) is read here into a frozen value, strictly: unknown
fields, wrong types, bad base64, unparseable certificates or keys raise :class:`RootFormatError`,
which :mod:`controller.verify.trustroot` turns into ``PolicyError(TRUST_ROOT_INVALID)``.

Proto3 JSON semantics: a field whose value is JSON ``null`` is the same as an absent field
(https://protobuf.dev/programming-guides/json/: "null is accepted for all field types and treated
as the default value"). :func:`drop_nulls` removes such fields from every object before the shape
checks, so ``"operator": null`` is an unset operator, and ``"validFor": {"start": null}`` is a
missing start (still an error). A ``null`` inside a list is not a field and stays an error.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from controller.verify import jsonstrict
from controller.verify.keys import (
    KNOWN_KEY_DETAILS,
    UNSUPPORTED_KEY_DETAILS,
    PublicKey,
    UnsupportedKeyError,
    trust_root_key,
)
from controller.verify.limits import MAX_CA_CHAIN_CERTIFICATES, MAX_JSON_DEPTH

_HASH_ALGORITHMS: Final = frozenset(
    {"HASH_ALGORITHM_UNSPECIFIED", "SHA2_256", "SHA2_384", "SHA2_512", "SHA3_256", "SHA3_384"}
)
_RFC3339: Final = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$"
)


class RootFormatError(ValueError):
    """Raised for a malformed trust-root element. Internal; becomes TRUST_ROOT_INVALID."""


@dataclass(frozen=True, slots=True)
class ValidityPeriod:
    """A closed time range ``[start, end]``; ``end`` None means open-ended."""

    start: datetime
    end: datetime | None = None

    def contains(self, when: datetime) -> bool:
        """True when ``when`` lies inside the range (both ends included)."""
        return self.start <= when and (self.end is None or when <= self.end)


ALWAYS: Final = ValidityPeriod(datetime.min.replace(tzinfo=UTC))


@dataclass(frozen=True, slots=True)
class TransparencyLog:
    """A Rekor or CT log key. ``key`` is None when its scheme is one we cannot verify."""

    base_url: str
    log_id: bytes
    key_details: str
    key: PublicKey | None
    valid_for: ValidityPeriod
    operator: str = ""
    checkpoint_key_id: bytes | None = None  # ``checkpointKeyId`` when the root names one (Rekor v2)

    @property
    def origin(self) -> str:
        """The host of ``base_url``: a Rekor v2 log's checkpoint origin and key name."""
        return self.base_url.partition("://")[2].split("/", 1)[0] if "://" in self.base_url else self.base_url


@dataclass(frozen=True, slots=True)
class CaCertificate:
    """One certificate of a CA chain, with what path validation needs precomputed."""

    cert: x509.Certificate
    der: bytes
    subject: x509.Name
    subject_der: bytes  # the subject as the library encodes it (for the issuer index by DER)
    not_before: datetime
    not_after: datetime
    is_ca: bool  # basicConstraints cA=TRUE and keyUsage keyCertSign
    path_length: int | None
    spki_sha256: bytes  # RFC 6962 issuer_key_hash
    public_key: CertificatePublicKeyTypes  # parsed once: loading a P-384 key costs as much as a verify


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """A Fulcio (or TSA) certificate chain: leaf-most first, the trust anchor last."""

    uri: str
    chain: tuple[CaCertificate, ...]
    valid_for: ValidityPeriod


def b64_field(value: str, what: str) -> bytes:
    try:
        out = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise RootFormatError(f"{what}: not base64") from e
    if not out:
        raise RootFormatError(f"{what}: empty")
    return out


def parse_timestamp(text: str, what: str) -> datetime:
    """An RFC 3339 timestamp (proto3 JSON ``Timestamp``) as an aware UTC datetime."""
    match = _RFC3339.match(text)
    if match is None:
        raise RootFormatError(f"{what}: not an RFC 3339 timestamp")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micros = int((fraction or "0").ljust(6, "0")[:6])
    if zone == "Z":
        tz = UTC
    else:
        sign = 1 if zone[0] == "+" else -1
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 23 or minutes > 59:
            raise RootFormatError(f"{what}: bad UTC offset")
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        when = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micros, tzinfo=tz
        )
        return when.astimezone(UTC)
    except (ValueError, OverflowError) as e:
        raise RootFormatError(f"{what}: {e}") from e


def validity(value: object, what: str) -> ValidityPeriod:
    obj = jsonstrict.fields(value, what, required=frozenset({"start"}), optional=frozenset({"end"}))
    start = parse_timestamp(jsonstrict.get_str(obj, "start", what), f"{what}.start")
    end_text = jsonstrict.get_optional_str(obj, "end", what)
    end = None if end_text is None else parse_timestamp(end_text, f"{what}.end")
    if end is not None and end < start:
        raise RootFormatError(f"{what}: ends before it starts")
    return ValidityPeriod(start, end)


def transparency_log(value: object, what: str) -> TransparencyLog:
    obj = jsonstrict.fields(
        value,
        what,
        required=frozenset({"baseUrl", "hashAlgorithm", "publicKey", "logId"}),
        optional=frozenset({"checkpointKeyId", "operator"}),
    )
    base_url = jsonstrict.get_str(obj, "baseUrl", what)
    if jsonstrict.get_str(obj, "hashAlgorithm", what) not in _HASH_ALGORITHMS:
        raise RootFormatError(f"{what}.hashAlgorithm: unknown")
    operator = jsonstrict.get_optional_str(obj, "operator", what) or ""
    log_id_obj = jsonstrict.fields(obj["logId"], f"{what}.logId", required=frozenset({"keyId"}))
    log_id = b64_field(jsonstrict.get_str(log_id_obj, "keyId", what), f"{what}.logId.keyId")
    if "checkpointKeyId" in obj:
        checkpoint = jsonstrict.fields(
            obj["checkpointKeyId"], f"{what}.checkpointKeyId", required=frozenset({"keyId"})
        )
        checkpoint_key_id: bytes | None = b64_field(
            jsonstrict.get_str(checkpoint, "keyId", what), f"{what}.checkpointKeyId.keyId"
        )
    else:
        checkpoint_key_id = None

    key_obj = jsonstrict.fields(
        obj["publicKey"],
        f"{what}.publicKey",
        required=frozenset({"keyDetails"}),
        optional=frozenset({"rawBytes", "validFor"}),
    )
    details = jsonstrict.get_str(key_obj, "keyDetails", f"{what}.publicKey")
    if details not in KNOWN_KEY_DETAILS:
        raise RootFormatError(f"{what}.publicKey.keyDetails: unknown {details[:64]!r}")
    valid_for = ALWAYS if "validFor" not in key_obj else validity(key_obj["validFor"], f"{what}.validFor")
    raw_text = jsonstrict.get_optional_str(key_obj, "rawBytes", f"{what}.publicKey")
    raw = None if raw_text is None else b64_field(raw_text, f"{what}.publicKey.rawBytes")
    key: PublicKey | None = None
    if details not in UNSUPPORTED_KEY_DETAILS:
        if raw is None:
            raise RootFormatError(f"{what}.publicKey.rawBytes: missing")
        try:
            key = trust_root_key(details, raw)
        except UnsupportedKeyError as e:
            raise RootFormatError(f"{what}.publicKey: {e}") from e
    return TransparencyLog(
        base_url=base_url,
        log_id=log_id,
        key_details=details,
        key=key,
        valid_for=valid_for,
        operator=operator,
        checkpoint_key_id=checkpoint_key_id,
    )


def ca_certificate(der: bytes, what: str) -> CaCertificate:
    try:
        cert = x509.load_der_x509_certificate(der)
        extensions = cert.extensions
        subject = cert.subject
        subject_der = subject.public_bytes()
        public_key = cert.public_key()
        spki = public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    except Exception as e:  # malformed DER surfaces as ValueError, KeyError, TypeError ...: fail closed
        raise RootFormatError(f"{what}: unparseable certificate: {e!r}") from e
    try:
        constraints: x509.BasicConstraints | None = extensions.get_extension_for_class(
            x509.BasicConstraints
        ).value
    except x509.ExtensionNotFound:
        constraints = None
    try:
        key_cert_sign = extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    except x509.ExtensionNotFound:
        key_cert_sign = False
    is_ca = constraints is not None and constraints.ca and key_cert_sign
    return CaCertificate(
        cert=cert,
        der=der,
        subject=subject,
        subject_der=subject_der,
        not_before=not_before,
        not_after=not_after,
        is_ca=is_ca,
        path_length=constraints.path_length if constraints is not None else None,
        spki_sha256=hashlib.sha256(spki).digest(),
        public_key=public_key,
    )


def certificate_authority(value: object, what: str, *, link_check: bool) -> CertificateAuthority:
    obj = jsonstrict.fields(
        value,
        what,
        required=frozenset({"certChain", "validFor"}),
        optional=frozenset({"subject", "uri", "operator"}),
    )
    uri = jsonstrict.get_optional_str(obj, "uri", what) or ""
    jsonstrict.get_optional_str(obj, "operator", what)
    if "subject" in obj:
        subject = jsonstrict.fields(
            obj["subject"],
            f"{what}.subject",
            required=frozenset(),
            optional=frozenset({"organization", "commonName"}),
        )
        jsonstrict.get_optional_str(subject, "organization", what)
        jsonstrict.get_optional_str(subject, "commonName", what)
    chain_obj = jsonstrict.fields(obj["certChain"], f"{what}.certChain", required=frozenset({"certificates"}))
    items = jsonstrict.get_list(chain_obj, "certificates", what, max_items=MAX_CA_CHAIN_CERTIFICATES)
    if not items:
        raise RootFormatError(f"{what}.certChain: empty")
    chain: list[CaCertificate] = []
    for index, item in enumerate(items):
        where = f"{what}.certChain.certificates[{index}]"
        cert_obj = jsonstrict.fields(item, where, required=frozenset({"rawBytes"}))
        chain.append(ca_certificate(b64_field(jsonstrict.get_str(cert_obj, "rawBytes", where), where), where))
    if link_check:
        for child, parent in itertools.pairwise(chain):
            try:
                child.cert.verify_directly_issued_by(parent.cert)
            except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm) as e:
                raise RootFormatError(f"{what}: chain certificates do not sign each other") from e
    return CertificateAuthority(
        uri=uri, chain=tuple(chain), valid_for=validity(obj["validFor"], f"{what}.validFor")
    )


def drop_nulls(value: object) -> object:
    """``value`` with every object field whose value is ``null`` removed, at every depth (iteratively;
    the parser already bounded the depth to ``MAX_JSON_DEPTH``)."""
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise RootFormatError(f"nesting deeper than {MAX_JSON_DEPTH}")
        if isinstance(node, dict):
            for key in [key for key, child in node.items() if child is None]:
                del node[key]
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)
    return value
