"""Rekor entry bodies: every kind and version against real entries, a tamper matrix and fuzzing."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.errors import EvidenceError, Reason
from controller.verify.dsse import Envelope, envelope_from_json
from controller.verify.entries import check_entry_body, check_intoto
from tests.sigstore_real import real_data_dir


def _folder(case: str) -> Path:
    return real_data_dir().parent / "sigstore-conformance" / "bundle-verify" / case


def _pem(der: bytes, label: str = "CERTIFICATE") -> bytes:
    lines = [base64.b64encode(der[i : i + 48]).decode() for i in range(0, len(der), 48)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"


class Case:
    """One real bundle's entry and the evidence it must describe."""

    def __init__(self, case: str) -> None:
        folder = _folder(case)
        self.bundle = json.loads((folder / "bundle.sigstore.json").read_text())
        material = self.bundle["verificationMaterial"]
        (entry,) = material["tlogEntries"]
        self.kind, self.version = entry["kindVersion"]["kind"], entry["kindVersion"]["version"]
        self.body = base64.b64decode(entry["canonicalizedBody"])
        if "certificate" in material:
            self.verifier = base64.b64decode(material["certificate"]["rawBytes"])
        elif "x509CertificateChain" in material:
            self.verifier = base64.b64decode(material["x509CertificateChain"]["certificates"][0]["rawBytes"])
        else:
            key = serialization.load_pem_public_key((folder / "key.pub").read_bytes())
            self.verifier = key.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        artifact = folder / "artifact"
        data = (artifact if artifact.exists() else folder.parent / "a.txt").read_bytes()
        self.digests = {"sha256": hashlib.sha256(data).digest()}
        self.envelope: Envelope | None = (
            envelope_from_json(self.bundle["dsseEnvelope"]) if "dsseEnvelope" in self.bundle else None
        )
        self.signature = (
            base64.b64decode(self.bundle["messageSignature"]["signature"])
            if "messageSignature" in self.bundle
            else None
        )

    def check(self, body: bytes | None = None, **overrides: Any) -> None:
        kwargs: dict[str, Any] = {"verifier": self.verifier}
        if self.envelope is not None:
            kwargs["envelope"] = self.envelope
        else:
            kwargs.update(signature=self.signature, digests=self.digests)
        kwargs.update(overrides)
        check_entry_body(self.kind, self.version, self.body if body is None else body, **kwargs)


def _reason(call: Callable[[], object]) -> Reason:
    with pytest.raises(EvidenceError) as info:
        call()
    return info.value.reason


ACCEPTED = {
    "happy-path-v0.3": ("hashedrekord", "0.0.1"),
    "managed-key-happy-path": ("hashedrekord", "0.0.1"),
    "rekor2-happy-path": ("hashedrekord", "0.0.2"),
    "happy-path-intoto-in-dsse-v3": ("dsse", "0.0.1"),
    "rekor2-dsse-happy-path": ("hashedrekord", "0.0.2"),
    "intoto-with-custom-trust-root": ("intoto", "0.0.2"),
}
MISMATCHED = [
    "dsse-mismatch-envelope_fail",
    "dsse-mismatch-sig_fail",
    "rekor2-dsse-mismatch-envelope_fail",
    "rekor2-dsse-mismatch-sig_fail",
    "intoto-log-entry-mismatch_fail",
    "incorrect-public-key_fail",
    "signature-mismatch_fail",
    "wrong-hashedrekord-artifact_fail",
    "wrong-hashedrekord-cert-and-sig_fail",
    "wrong-hashedrekord-entry_fail",
    "wrong-material_fail",
]


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_real_entries_describe_their_bundle(case: str) -> None:
    entry = Case(case)
    assert (entry.kind, entry.version) == ACCEPTED[case]
    entry.check()


@pytest.mark.parametrize("case", MISMATCHED)
def test_real_mismatched_entries_fail(case: str) -> None:
    entry = Case(case)
    assert _reason(entry.check) is Reason.TLOG_BODY_MISMATCH


def test_real_oci_attestation_dsse_entry() -> None:
    bundle = json.loads((real_data_dir() / "bundles" / "cosign__oci-attestation.sigstore.json").read_text())
    material = bundle["verificationMaterial"]
    (entry,) = material["tlogEntries"]
    certificate = material.get("certificate") or material["x509CertificateChain"]["certificates"][0]
    check_entry_body(
        "dsse",
        "0.0.1",
        base64.b64decode(entry["canonicalizedBody"]),
        verifier=base64.b64decode(certificate["rawBytes"]),
        envelope=envelope_from_json(bundle["dsseEnvelope"]),
    )


# --- tamper matrix: one field of the real body changed at a time


def _edit(body: bytes, path: tuple[Any, ...], value: Any) -> bytes:
    doc = json.loads(body)
    target = doc
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return json.dumps(doc).encode()


_DELETE = object()
_B64_ZEROS = base64.b64encode(b"\x00" * 32).decode()
_HRV2 = ("spec", "hashedRekordV002")
_INTOTO = ("spec", "content")

BODY_TAMPER: dict[str, tuple[str, tuple[Any, ...], Any, Reason]] = {
    "v1 hash": ("happy-path-v0.3", ("spec", "data", "hash", "value"), "00" * 32, Reason.TLOG_BODY_MISMATCH),
    "v1 hash algorithm": (
        "happy-path-v0.3",
        ("spec", "data", "hash", "algorithm"),
        "md5",
        Reason.TLOG_BODY_MISMATCH,
    ),
    "v1 sha384 not known": (
        "happy-path-v0.3",
        ("spec", "data", "hash", "algorithm"),
        "sha384",
        Reason.TLOG_BODY_MISMATCH,
    ),
    "v1 signature": (
        "happy-path-v0.3",
        ("spec", "signature", "content"),
        _B64_ZEROS,
        Reason.TLOG_BODY_MISMATCH,
    ),
    "v1 key": (
        "happy-path-v0.3",
        ("spec", "signature", "publicKey", "content"),
        _B64_ZEROS,
        Reason.TLOG_BODY_MISMATCH,
    ),
    "v1 kind": ("happy-path-v0.3", ("kind",), "rekord", Reason.TLOG_ENTRY_INVALID),
    "v1 version": ("happy-path-v0.3", ("apiVersion",), "0.0.2", Reason.TLOG_ENTRY_INVALID),
    "v1 extra field": ("happy-path-v0.3", ("spec", "extra"), 1, Reason.TLOG_ENTRY_INVALID),
    "v2 digest": ("rekor2-happy-path", (*_HRV2, "data", "digest"), _B64_ZEROS, Reason.TLOG_BODY_MISMATCH),
    "v2 algorithm": (
        "rekor2-happy-path",
        (*_HRV2, "data", "algorithm"),
        "SHA2_384",
        Reason.TLOG_BODY_MISMATCH,
    ),
    "v2 signature": (
        "rekor2-happy-path",
        (*_HRV2, "signature", "content"),
        _B64_ZEROS,
        Reason.TLOG_BODY_MISMATCH,
    ),
    "v2 verifier": (
        "rekor2-happy-path",
        (*_HRV2, "signature", "verifier", "x509Certificate", "rawBytes"),
        _B64_ZEROS,
        Reason.TLOG_BODY_MISMATCH,
    ),
    "v2 key details": (
        "rekor2-happy-path",
        (*_HRV2, "signature", "verifier", "keyDetails"),
        "PKIX_ED25519",
        Reason.TLOG_BODY_MISMATCH,
    ),
    "v2 no verifier holder": (
        "rekor2-happy-path",
        (*_HRV2, "signature", "verifier", "x509Certificate"),
        _DELETE,
        Reason.TLOG_ENTRY_INVALID,
    ),
    "dsse payload hash": (
        "happy-path-intoto-in-dsse-v3",
        ("spec", "payloadHash", "value"),
        "00" * 32,
        Reason.TLOG_BODY_MISMATCH,
    ),
    "dsse signatures": (
        "happy-path-intoto-in-dsse-v3",
        ("spec", "signatures"),
        [],
        Reason.TLOG_BODY_MISMATCH,
    ),
    "dsse verifier": (
        "happy-path-intoto-in-dsse-v3",
        ("spec", "signatures", 0, "verifier"),
        _B64_ZEROS,
        Reason.TLOG_BODY_MISMATCH,
    ),
    "intoto payload hash": (
        "intoto-with-custom-trust-root",
        (*_INTOTO, "payloadHash", "value"),
        "00" * 32,
        Reason.TLOG_BODY_MISMATCH,
    ),
    "intoto payload type": (
        "intoto-with-custom-trust-root",
        (*_INTOTO, "envelope", "payloadType"),
        "text/plain",
        Reason.TLOG_BODY_MISMATCH,
    ),
    "intoto single-base64 sig": (
        "intoto-with-custom-trust-root",
        (*_INTOTO, "envelope", "signatures", 0, "sig"),
        _B64_ZEROS,
        Reason.TLOG_BODY_MISMATCH,
    ),
    "intoto public key": (
        "intoto-with-custom-trust-root",
        (*_INTOTO, "envelope", "signatures", 0, "publicKey"),
        _B64_ZEROS,
        Reason.TLOG_BODY_MISMATCH,
    ),
    "intoto payload": (
        "intoto-with-custom-trust-root",
        (*_INTOTO, "envelope", "payload"),
        base64.b64encode(base64.b64encode(b"{}")).decode(),
        Reason.TLOG_BODY_MISMATCH,
    ),
    "intoto no hash": (
        "intoto-with-custom-trust-root",
        (*_INTOTO, "hash"),
        _DELETE,
        Reason.TLOG_ENTRY_INVALID,
    ),
}


@pytest.mark.parametrize("name", sorted(BODY_TAMPER))
def test_body_tamper_matrix(name: str) -> None:
    case, path, value, reason = BODY_TAMPER[name]
    entry = Case(case)
    entry.check(json.dumps(json.loads(entry.body)).encode())  # re-serializing alone changes nothing
    assert _reason(lambda: entry.check(_edit(entry.body, path, value))) is reason


def test_intoto_dropped_payload_still_checks_signatures() -> None:
    entry = Case("intoto-with-custom-trust-root")
    entry.check(_edit(entry.body, (*_INTOTO, "envelope", "payload"), _DELETE))


def test_intoto_envelope_hash_binds_the_att_layer_bytes() -> None:
    entry = Case("intoto-with-custom-trust-root")
    assert entry.envelope is not None
    logged = json.loads(entry.body)["spec"]["content"]["hash"]["value"]
    envelope_json = b'{"payloadType":"x"}'
    body = _edit(entry.body, (*_INTOTO, "hash", "value"), hashlib.sha256(envelope_json).hexdigest())
    check_intoto(body, envelope=entry.envelope, verifier=entry.verifier, envelope_json=envelope_json)
    assert logged != hashlib.sha256(envelope_json).hexdigest()
    assert (
        _reason(
            lambda: check_intoto(
                entry.body, envelope=entry.envelope, verifier=entry.verifier, envelope_json=envelope_json
            )
        )  # type: ignore[arg-type]
        is Reason.TLOG_BODY_MISMATCH
    )


def test_pem_with_crlf_and_public_key_blocks_match() -> None:
    entry = Case("managed-key-happy-path")
    pem = _pem(entry.verifier, "PUBLIC KEY").replace("\n", "\r\n").encode()
    entry.check(
        _edit(entry.body, ("spec", "signature", "publicKey", "content"), base64.b64encode(pem).decode())
    )
    certificate = _pem(entry.verifier, "CERTIFICATE").encode()  # the right bytes under the wrong label
    body = _edit(
        entry.body, ("spec", "signature", "publicKey", "content"), base64.b64encode(certificate).decode()
    )
    entry.check(body)  # DER equality is what binds; the label does not change the key


def test_kind_and_evidence_must_fit() -> None:
    message = Case("happy-path-v0.3")
    envelope = Case("happy-path-intoto-in-dsse-v3")
    assert envelope.envelope is not None
    assert (
        _reason(
            lambda: check_entry_body(
                "dsse", "0.0.1", envelope.body, verifier=envelope.verifier, signature=b"x", digests={}
            )
        )
        is Reason.TLOG_BODY_MISMATCH
    )
    assert (
        _reason(
            lambda: check_entry_body(
                "hashedrekord", "0.0.1", message.body, verifier=message.verifier, envelope=envelope.envelope
            )
        )
        is Reason.TLOG_BODY_MISMATCH
    )
    assert (
        _reason(lambda: check_entry_body("rekord", "0.0.1", message.body, verifier=message.verifier))
        is Reason.TLOG_ENTRY_INVALID
    )


def test_claimed_version_must_be_the_bodys() -> None:
    entry = Case("rekor2-happy-path")
    assert (
        _reason(
            lambda: check_entry_body(
                "hashedrekord",
                "0.0.1",
                entry.body,
                verifier=entry.verifier,
                signature=entry.signature,
                digests=entry.digests,
            )
        )
        is Reason.TLOG_ENTRY_INVALID
    )


def _mutations(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [path, *(p for k, v in value.items() for p in _mutations(v, (*path, k)))]
    if isinstance(value, list):
        return [path, *(p for i, v in enumerate(value) for p in _mutations(v, (*path, i)))]
    return [path]


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@pytest.mark.parametrize("case", sorted(ACCEPTED))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_single_replacement_raises_only_entry_reasons(case: str, data: st.DataObject) -> None:
    entry = Case(case)
    doc = json.loads(entry.body)
    path = data.draw(st.sampled_from([p for p in _mutations(doc) if p]))
    value = data.draw(_JSON)
    mutated = copy.deepcopy(doc)
    target = mutated
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    try:
        entry.check(json.dumps(mutated).encode())
    except EvidenceError as e:
        assert e.reason in {Reason.TLOG_ENTRY_INVALID, Reason.TLOG_BODY_MISMATCH}
    else:
        # only what cannot be recomputed from a bundle may change: intoto's envelope hash
        # (without the .att bytes), dsse's envelopeHash, or a replacement by an equal value
        unchecked = path[:4] == ("spec", "content", "hash", "value") or path[:3] == (
            "spec",
            "envelopeHash",
            "value",
        )
        assert mutated == doc or unchecked, path


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=500))
def test_arbitrary_bytes_raise_only_entry_reasons(data: bytes) -> None:
    entry = Case("rekor2-happy-path")
    for kind, version in [
        ("hashedrekord", "0.0.1"),
        ("hashedrekord", "0.0.2"),
        ("dsse", "0.0.1"),
        ("intoto", "0.0.2"),
    ]:
        try:
            check_entry_body(
                kind, version, data, verifier=entry.verifier, signature=b"s", digests=entry.digests
            )
        except EvidenceError as e:
            assert e.reason in {Reason.TLOG_ENTRY_INVALID, Reason.TLOG_BODY_MISMATCH}
        else:
            pytest.fail("arbitrary bytes matched")
