"""Sigstore's ``trusted_root.json``: the Fulcio CAs, Rekor and CT log keys, and TSAs we trust.

The format is protobuf-specs' ``TrustedRoot`` message in proto3 JSON
(https://github.com/sigstore/protobuf-specs/blob/main/protos/sigstore_trustroot.proto), media type
``application/vnd.dev.sigstore.trustedroot+json;version=0.1`` (or ``...trustedroot.v0.2+json``).

Parsing is strict and done once: unknown fields, wrong types, bad base64, unparseable certificates
or keys, a CA chain whose certificates do not sign each other, or a key that is not of the kind its
``keyDetails`` names all raise ``PolicyError(Reason.TRUST_ROOT_INVALID)``. A ``keyDetails`` that is a
valid registry name we cannot verify with (PSS, LMS, ML-DSA ...) keeps its entry, unusable, as
sigstore-python does; evidence signed by it then fails verification.

Everything the hot path needs is computed here and cached: key objects bound to their scheme,
certificate objects, their validity windows, their SPKI hashes (for SCTs), and an index of CA
certificates by subject name (for path building). The CA chain's internal links are verified once
here, so verification only checks the leaf's link.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from controller.errors import PolicyError, Reason
from controller.verify import jsonstrict
from controller.verify.jsonstrict import JsonObject, StrictJsonError
from controller.verify.keys import (
    KNOWN_KEY_DETAILS,
    UNSUPPORTED_KEY_DETAILS,
    PublicKey,
    UnsupportedKeyError,
    trust_root_key,
)
from controller.verify.limits import (
    MAX_CA_CHAIN_CERTIFICATES,
    MAX_TRUST_ROOT_BYTES,
    MAX_TRUST_ROOT_ENTRIES,
)

MEDIA_TYPES: Final = frozenset(
    {
        "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "application/vnd.dev.sigstore.trustedroot.v0.2+json",
    }
)
_HASH_ALGORITHMS: Final = frozenset(
    {"HASH_ALGORITHM_UNSPECIFIED", "SHA2_256", "SHA2_384", "SHA2_512", "SHA3_256", "SHA3_384"}
)
_RFC3339: Final = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$"
)


class _RootError(ValueError):
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


@dataclass(frozen=True, eq=False)
class TrustRoot:
    """A parsed, immutable trusted root. Build it with :meth:`from_json`.

    Compared and hashed by identity: two loads of the same file are two trust roots.
    """

    name: str
    raw: bytes = field(repr=False)
    media_type: str
    certificate_authorities: tuple[CertificateAuthority, ...]
    tlogs: Mapping[bytes, tuple[TransparencyLog, ...]]
    ctlogs: Mapping[bytes, tuple[TransparencyLog, ...]]
    timestamp_authorities: tuple[CertificateAuthority, ...]
    # subject name -> (authority, position in its chain), for path building
    _issuers: Mapping[x509.Name, tuple[tuple[CertificateAuthority, int], ...]] = field(
        repr=False, compare=False
    )
    # the same lists by the DER of the subject (as the library encodes it): a leaf whose issuer is
    # those very bytes is looked up without hashing and comparing Name objects
    _issuers_der: Mapping[bytes, tuple[tuple[CertificateAuthority, int], ...]] = field(
        repr=False, compare=False
    )
    # lazily built objects for other libraries (sigstore-python's TrustedRoot); never compared
    cache: dict[str, object] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: bytes, name: str) -> TrustRoot:
        """Parse ``trusted_root.json`` bytes. Any defect -> ``PolicyError(TRUST_ROOT_INVALID)``."""
        if len(data) > MAX_TRUST_ROOT_BYTES:
            raise PolicyError(Reason.TRUST_ROOT_INVALID, f"{name}: larger than {MAX_TRUST_ROOT_BYTES} bytes")
        try:
            return _parse(data, name)
        except (StrictJsonError, _RootError) as e:
            raise PolicyError(Reason.TRUST_ROOT_INVALID, f"{name}: {e}") from e

    def tlog(self, log_id: bytes) -> tuple[TransparencyLog, ...]:
        """The Rekor keys with this log ID (usually one)."""
        return self.tlogs.get(log_id, ())

    def ctlog(self, log_id: bytes) -> tuple[TransparencyLog, ...]:
        """The CT log keys with this log ID (usually one)."""
        return self.ctlogs.get(log_id, ())

    def issuers_named(self, name: x509.Name) -> tuple[tuple[CertificateAuthority, int], ...]:
        """Every CA certificate whose subject is ``name``, as (authority, index in its chain)."""
        return self._issuers.get(name, ())

    def issuers_of(
        self, name: x509.Name, name_der: bytes | None
    ) -> tuple[tuple[CertificateAuthority, int], ...]:
        """:meth:`issuers_named` for ``name``, whose DER is ``name_der`` when known.

        Equal bytes parse to an equal Name, so a hit in the index by DER is the same answer.
        """
        if name_der is not None:
            found = self._issuers_der.get(name_der)
            if found is not None:
                return found
        return self._issuers.get(name, ())


def _b64(value: str, what: str) -> bytes:
    try:
        out = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise _RootError(f"{what}: not base64") from e
    if not out:
        raise _RootError(f"{what}: empty")
    return out


def parse_timestamp(text: str, what: str) -> datetime:
    """An RFC 3339 timestamp (proto3 JSON ``Timestamp``) as an aware UTC datetime."""
    match = _RFC3339.match(text)
    if match is None:
        raise _RootError(f"{what}: not an RFC 3339 timestamp")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micros = int((fraction or "0").ljust(6, "0")[:6])
    if zone == "Z":
        tz = UTC
    else:
        sign = 1 if zone[0] == "+" else -1
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 23 or minutes > 59:
            raise _RootError(f"{what}: bad UTC offset")
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        when = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micros, tzinfo=tz
        )
        return when.astimezone(UTC)
    except (ValueError, OverflowError) as e:
        raise _RootError(f"{what}: {e}") from e


def _validity(value: object, what: str) -> ValidityPeriod:
    obj = jsonstrict.fields(value, what, required=frozenset({"start"}), optional=frozenset({"end"}))
    start = parse_timestamp(jsonstrict.get_str(obj, "start", what), f"{what}.start")
    end_text = jsonstrict.get_optional_str(obj, "end", what)
    end = None if end_text is None else parse_timestamp(end_text, f"{what}.end")
    if end is not None and end < start:
        raise _RootError(f"{what}: ends before it starts")
    return ValidityPeriod(start, end)


def _log(value: object, what: str) -> TransparencyLog:
    obj = jsonstrict.fields(
        value,
        what,
        required=frozenset({"baseUrl", "hashAlgorithm", "publicKey", "logId"}),
        optional=frozenset({"checkpointKeyId", "operator"}),
    )
    base_url = jsonstrict.get_str(obj, "baseUrl", what)
    if jsonstrict.get_str(obj, "hashAlgorithm", what) not in _HASH_ALGORITHMS:
        raise _RootError(f"{what}.hashAlgorithm: unknown")
    jsonstrict.get_optional_str(obj, "operator", what)
    log_id_obj = jsonstrict.fields(obj["logId"], f"{what}.logId", required=frozenset({"keyId"}))
    log_id = _b64(jsonstrict.get_str(log_id_obj, "keyId", what), f"{what}.logId.keyId")
    if "checkpointKeyId" in obj:
        checkpoint = jsonstrict.fields(
            obj["checkpointKeyId"], f"{what}.checkpointKeyId", required=frozenset({"keyId"})
        )
        _b64(jsonstrict.get_str(checkpoint, "keyId", what), f"{what}.checkpointKeyId.keyId")

    key_obj = jsonstrict.fields(
        obj["publicKey"],
        f"{what}.publicKey",
        required=frozenset({"keyDetails"}),
        optional=frozenset({"rawBytes", "validFor"}),
    )
    details = jsonstrict.get_str(key_obj, "keyDetails", f"{what}.publicKey")
    if details not in KNOWN_KEY_DETAILS:
        raise _RootError(f"{what}.publicKey.keyDetails: unknown {details[:64]!r}")
    valid_for = ALWAYS if "validFor" not in key_obj else _validity(key_obj["validFor"], f"{what}.validFor")
    raw_text = jsonstrict.get_optional_str(key_obj, "rawBytes", f"{what}.publicKey")
    raw = None if raw_text is None else _b64(raw_text, f"{what}.publicKey.rawBytes")
    key: PublicKey | None = None
    if details not in UNSUPPORTED_KEY_DETAILS:
        if raw is None:
            raise _RootError(f"{what}.publicKey.rawBytes: missing")
        try:
            key = trust_root_key(details, raw)
        except UnsupportedKeyError as e:
            raise _RootError(f"{what}.publicKey: {e}") from e
    return TransparencyLog(
        base_url=base_url, log_id=log_id, key_details=details, key=key, valid_for=valid_for
    )


def _ca_certificate(der: bytes, what: str) -> CaCertificate:
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
        raise _RootError(f"{what}: unparseable certificate: {e!r}") from e
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


def _authority(value: object, what: str, *, link_check: bool) -> CertificateAuthority:
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
        raise _RootError(f"{what}.certChain: empty")
    chain: list[CaCertificate] = []
    for index, item in enumerate(items):
        where = f"{what}.certChain.certificates[{index}]"
        cert_obj = jsonstrict.fields(item, where, required=frozenset({"rawBytes"}))
        chain.append(_ca_certificate(_b64(jsonstrict.get_str(cert_obj, "rawBytes", where), where), where))
    if link_check:
        for child, parent in itertools.pairwise(chain):
            try:
                child.cert.verify_directly_issued_by(parent.cert)
            except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm) as e:
                raise _RootError(f"{what}: chain certificates do not sign each other") from e
    return CertificateAuthority(
        uri=uri, chain=tuple(chain), valid_for=_validity(obj["validFor"], f"{what}.validFor")
    )


def _entries(obj: JsonObject, key: str) -> list[object]:
    if key not in obj:
        return []
    return jsonstrict.get_list(obj, key, "trusted root", max_items=MAX_TRUST_ROOT_ENTRIES)


def _by_log_id(logs: list[TransparencyLog]) -> dict[bytes, tuple[TransparencyLog, ...]]:
    out: dict[bytes, tuple[TransparencyLog, ...]] = {}
    for log in logs:
        out[log.log_id] = (*out.get(log.log_id, ()), log)
    return out


def _all_ca(authorities: tuple[CertificateAuthority, ...]) -> list[CaCertificate]:
    return [ca_cert for authority in authorities for ca_cert in authority.chain]


def _parse(data: bytes, name: str) -> TrustRoot:
    doc = jsonstrict.fields(
        jsonstrict.loads(data),
        "trusted root",
        required=frozenset({"mediaType", "certificateAuthorities"}),
        optional=frozenset({"tlogs", "ctlogs", "timestampAuthorities"}),
    )
    media_type = jsonstrict.get_str(doc, "mediaType", "trusted root")
    if media_type not in MEDIA_TYPES:
        raise _RootError(f"unsupported mediaType {media_type[:100]!r}")
    tlogs = [_log(v, f"tlogs[{i}]") for i, v in enumerate(_entries(doc, "tlogs"))]
    ctlogs = [_log(v, f"ctlogs[{i}]") for i, v in enumerate(_entries(doc, "ctlogs"))]
    authorities = tuple(
        _authority(v, f"certificateAuthorities[{i}]", link_check=True)
        for i, v in enumerate(_entries(doc, "certificateAuthorities"))
    )
    if not authorities:
        raise _RootError("no certificate authorities")
    tsas = tuple(
        _authority(v, f"timestampAuthorities[{i}]", link_check=False)
        for i, v in enumerate(_entries(doc, "timestampAuthorities"))
    )
    issuers: dict[x509.Name, tuple[tuple[CertificateAuthority, int], ...]] = {}
    for authority in authorities:
        for position, ca_cert in enumerate(authority.chain):
            subject = ca_cert.subject
            issuers[subject] = (*issuers.get(subject, ()), (authority, position))
    issuers_der = {ca_cert.subject_der: issuers[ca_cert.subject] for ca_cert in _all_ca(authorities)}
    return TrustRoot(
        name=name,
        raw=data,
        media_type=media_type,
        certificate_authorities=authorities,
        tlogs=_by_log_id(tlogs),
        ctlogs=_by_log_id(ctlogs),
        timestamp_authorities=tsas,
        _issuers=issuers,
        _issuers_der=issuers_der,
    )
