"""Sigstore's ``trusted_root.json``: the Fulcio CAs, Rekor and CT log keys, and TSAs we trust.

The format is protobuf-specs' ``TrustedRoot`` message in proto3 JSON
(https://github.com/sigstore/protobuf-specs/blob/main/protos/sigstore_trustroot.proto), media type
``application/vnd.dev.sigstore.trustedroot+json;version=0.1`` (or ``...trustedroot.v0.2+json``).

Parsing is strict and done once: unknown fields, wrong types, bad base64, unparseable certificates
or keys, a CA chain whose certificates do not sign each other, or a key that is not of the kind its
``keyDetails`` names all raise ``PolicyError(Reason.TRUST_ROOT_INVALID)``. A ``keyDetails`` that is a
valid registry name we cannot verify with (PSS, LMS, ML-DSA ...) keeps its entry, unusable, as
sigstore-python does; evidence signed by it then fails verification.

Proto3 JSON semantics hold: a field set to ``null`` is an unset field (``"operator": null`` is
fine; ``"start": null`` is a missing start, an error). Validity ends are inclusive. The elements
(validity periods, log keys, certificate authorities) are read by
:mod:`controller.verify.trustroot_parse`; this module assembles and indexes them.

Everything the hot path needs is computed here and cached: key objects bound to their scheme,
certificate objects, their validity windows, their SPKI hashes (for SCTs), and an index of CA
certificates by subject name (for path building). The CA chain's internal links are verified once
here, so verification only checks the leaf's link.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from cryptography import x509

from controller.errors import PolicyError, Reason
from controller.verify import jsonstrict
from controller.verify.jsonstrict import JsonObject, StrictJsonError
from controller.verify.limits import MAX_TRUST_ROOT_BYTES, MAX_TRUST_ROOT_ENTRIES
from controller.verify.trustroot_parse import (
    ALWAYS,
    CaCertificate,
    CertificateAuthority,
    RootFormatError,
    TransparencyLog,
    ValidityPeriod,
    certificate_authority,
    drop_nulls,
    parse_timestamp,
    transparency_log,
)

__all__ = [
    "ALWAYS",
    "MEDIA_TYPES",
    "CaCertificate",
    "CertificateAuthority",
    "TransparencyLog",
    "TrustRoot",
    "ValidityPeriod",
    "parse_timestamp",
]

MEDIA_TYPES: Final = frozenset(
    {
        "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "application/vnd.dev.sigstore.trustedroot.v0.2+json",
    }
)


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
        except (StrictJsonError, RootFormatError) as e:
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
        drop_nulls(jsonstrict.loads(data)),
        "trusted root",
        required=frozenset({"mediaType", "certificateAuthorities"}),
        optional=frozenset({"tlogs", "ctlogs", "timestampAuthorities"}),
    )
    media_type = jsonstrict.get_str(doc, "mediaType", "trusted root")
    if media_type not in MEDIA_TYPES:
        raise RootFormatError(f"unsupported mediaType {media_type[:100]!r}")
    tlogs = [transparency_log(v, f"tlogs[{i}]") for i, v in enumerate(_entries(doc, "tlogs"))]
    ctlogs = [transparency_log(v, f"ctlogs[{i}]") for i, v in enumerate(_entries(doc, "ctlogs"))]
    authorities = tuple(
        certificate_authority(v, f"certificateAuthorities[{i}]", link_check=True)
        for i, v in enumerate(_entries(doc, "certificateAuthorities"))
    )
    if not authorities:
        raise RootFormatError("no certificate authorities")
    tsas = tuple(
        certificate_authority(v, f"timestampAuthorities[{i}]", link_check=False)
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
