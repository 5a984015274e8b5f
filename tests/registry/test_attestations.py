"""Attestations in the registry: cosign ≤ 2's ``.att`` tag and cosign v3's attestation bundle referrers.

Against the real docker-registry over TLS. The ``.att`` tag shares the ``.sig`` tag's bounds (layers,
bytes, digests, the decision's byte budget); layer annotations reach verification as they were.
"""

from __future__ import annotations

import json

import pytest

from controller.errors import EvidenceError, LimitError, Reason
from controller.model import Digest
from controller.registry import Budget, BytePool, Limits, RegistryClient, RegistryConfig, parse_reference
from controller.registry.manifest import OCI_MANIFEST
from controller.registry.signatures import DSSE_ENVELOPE
from tests.fixtures.registry import RegistryServer

BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
SLSA = "https://slsa.dev/provenance/v1"


def _client(registry: RegistryServer, *, limits: Limits | None = None) -> RegistryClient:
    return RegistryClient(RegistryConfig.from_yaml(registry.registries_yaml()), limits=limits)


def _envelope(n: int) -> bytes:
    return json.dumps({"payloadType": "application/vnd.in-toto+json", "payload": "e30=", "n": n}).encode()


def _att_annotations(n: int) -> dict[str, str]:
    return {
        "predicateType": SLSA,
        "dev.sigstore.cosign/certificate": f"cert-{n}",
        "dev.sigstore.cosign/chain": "chain",
        "dev.sigstore.cosign/bundle": '{"SignedEntryTimestamp":"x"}',
        "dev.cosignproject.cosign/signature": "",
    }


def _push_att(
    registry: RegistryServer, repo: str, digest: Digest, layers: list[tuple[bytes, dict[str, str]]]
) -> str:
    tag = f"sha256-{digest.hex}.att"
    registry.push_signature_manifest(repo, tag, layers, layer_media_type=DSSE_ENVELOPE)
    return tag


def test_att_layers_are_fetched_with_their_annotations(registry: RegistryServer) -> None:
    digest = registry.push_random_image("att/app", "v1")
    ref = parse_reference(f"{registry.host}/att/app@{digest}")
    client = _client(registry)
    assert client.fetch_attestations(ref, digest) == []

    tag = _push_att(
        registry,
        "att/app",
        digest,
        [(_envelope(0), _att_annotations(0)), (_envelope(1), _att_annotations(1))],
    )
    found = client.fetch_attestations(ref, digest)
    assert [a.kind for a in found] == ["attestation", "attestation"]
    assert [a.payload for a in found] == [_envelope(0), _envelope(1)]
    assert [dict(a.annotations) for a in found] == [_att_annotations(0), _att_annotations(1)]
    assert {a.media_type for a in found} == {DSSE_ENVELOPE}
    assert found[0].layer_digest == Digest.of(_envelope(0))
    assert found[1].source == f"{registry.host}/att/app:{tag} layer 1"
    # the .att tag is not the .sig tag: neither lookup sees the other's layers
    assert client.fetch_signatures(ref, digest) == []


def test_att_layers_of_other_media_types_are_skipped(registry: RegistryServer) -> None:
    digest = registry.push_random_image("att/mixed", "v1")
    ref = parse_reference(f"{registry.host}/att/mixed@{digest}")
    client = _client(registry)
    tag = _push_att(registry, "att/mixed", digest, [(_envelope(0), {}), (_envelope(1), {})])
    body = json.loads(client.get_manifest(ref, tag).body)
    body["layers"][0]["mediaType"] = "application/vnd.dev.cosign.simplesigning.v1+json"
    registry.push_manifest("att/mixed", tag, json.dumps(body).encode(), OCI_MANIFEST)
    (only,) = client.fetch_attestations(ref, digest)
    assert only.payload == _envelope(1)
    assert only.source.endswith(" layer 1")


def test_att_in_a_signature_repository(registry: RegistryServer) -> None:
    digest = registry.push_random_image("att/elsewhere-image", "v1")
    ref = parse_reference(f"{registry.host}/att/elsewhere-image@{digest}")
    _push_att(registry, "att/sigs", digest, [(_envelope(7), {"predicateType": SLSA})])
    client = _client(registry)
    assert client.fetch_attestations(ref, digest) == []
    (found,) = client.fetch_attestations(ref, digest, signature_repository=f"{registry.host}/att/sigs")
    assert found.source.startswith(f"{registry.host}/att/sigs:")


def test_att_flood_of_layers_is_refused(registry: RegistryServer) -> None:
    digest = registry.push_random_image("att/flood", "v1")
    ref = parse_reference(f"{registry.host}/att/flood@{digest}")
    _push_att(registry, "att/flood", digest, [(_envelope(0), {})] * 65)
    with pytest.raises(LimitError) as caught:
        _client(registry).fetch_attestations(ref, digest)
    assert caught.value.reason is Reason.LIMIT_EXCEEDED
    assert (
        len(_client(registry, limits=Limits(max_signature_layers=65)).fetch_attestations(ref, digest)) == 65
    )


def test_att_layer_bytes_are_bounded_and_sizes_checked(registry: RegistryServer) -> None:
    digest = registry.push_random_image("att/big", "v1")
    ref = parse_reference(f"{registry.host}/att/big@{digest}")
    tag = _push_att(registry, "att/big", digest, [(b"x" * 300, {})])
    with pytest.raises(LimitError) as caught:
        _client(registry, limits=Limits(max_blob_bytes=299)).fetch_attestations(ref, digest)
    assert caught.value.reason is Reason.LIMIT_EXCEEDED
    assert len(_client(registry, limits=Limits(max_blob_bytes=300)).fetch_attestations(ref, digest)) == 1

    body = json.loads(_client(registry).get_manifest(ref, tag).body)
    body["layers"][0]["size"] = 400  # the blob is shorter than declared
    registry.push_manifest("att/big", tag, json.dumps(body).encode(), OCI_MANIFEST)
    with pytest.raises(EvidenceError) as invalid:
        _client(registry).fetch_attestations(ref, digest)
    assert invalid.value.reason is Reason.MANIFEST_INVALID


def test_att_fetch_is_charged_to_the_decision_budget(registry: RegistryServer) -> None:
    digest = registry.push_random_image("att/budget", "v1")
    ref = parse_reference(f"{registry.host}/att/budget@{digest}")
    # three distinct blobs (one blob listed thrice is fetched once: see test_client)
    _push_att(registry, "att/budget", digest, [(bytes([65 + n]) * 2000, {}) for n in range(3)])
    client = _client(registry)
    with (
        Budget(deadline=float("inf"), max_bytes=4000, pool=BytePool(1 << 20)) as budget,
        pytest.raises(LimitError) as caught,
    ):
        client.fetch_attestations(ref, digest, budget=budget)
    assert caught.value.reason is Reason.LIMIT_EXCEEDED
    with Budget(deadline=float("inf"), max_bytes=1 << 20, pool=BytePool(1 << 20)) as roomy:
        assert len(client.fetch_attestations(ref, digest, budget=roomy)) == 3
        assert roomy.spent >= 6000


def test_att_fetch_stops_at_the_deadline(registry: RegistryServer) -> None:
    digest = registry.push_random_image("att/late", "v1")
    ref = parse_reference(f"{registry.host}/att/late@{digest}")
    _push_att(registry, "att/late", digest, [(_envelope(0), {})])
    with (
        Budget(deadline=0.0, max_bytes=1 << 20, pool=BytePool(1 << 20)) as spent,
        pytest.raises(LimitError) as caught,
    ):
        _client(registry).fetch_attestations(ref, digest, budget=spent)
    assert caught.value.reason is Reason.LIMIT_EXCEEDED


def _push_attestation_referrer(
    registry: RegistryServer, repo: str, subject: Digest, bundle: bytes
) -> tuple[Digest, int]:
    """An attestation bundle as cosign v3 attaches it (specs/BUNDLE_SPEC.md): a DSSE bundle whose
    manifest says so and names the predicate type."""
    empty = registry.push_blob(repo, b"{}")
    layer = registry.push_blob(repo, bundle)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": BUNDLE_V03,
            "config": {"mediaType": EMPTY_CONFIG, "digest": str(empty), "size": 2},
            "layers": [{"mediaType": BUNDLE_V03, "digest": str(layer), "size": len(bundle)}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": str(subject), "size": 1},
            "annotations": {
                "dev.sigstore.bundle.content": "dsse-envelope",
                "dev.sigstore.bundle.predicateType": SLSA,
            },
        }
    ).encode()
    return registry.push_manifest(repo, str(Digest.of(manifest)), manifest, OCI_MANIFEST), len(manifest)


def test_v3_attestation_bundles_come_with_the_referrers(registry: RegistryServer) -> None:
    subject = registry.push_random_image("att/v3", "v1")
    ref = parse_reference(f"{registry.host}/att/v3@{subject}")
    signature = b'{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","messageSignature":{}}'
    attestation = b'{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","dsseEnvelope":{}}'
    sig_digest, sig_size = registry.push_referrer_bundle("att/v3", subject, signature)
    att_digest, att_size = _push_attestation_referrer(registry, "att/v3", subject, attestation)
    registry.push_referrers_index(
        "att/v3", subject, [(sig_digest, sig_size, BUNDLE_V03), (att_digest, att_size, BUNDLE_V03)]
    )
    found = _client(registry).fetch_referrer_bundles(ref, subject)
    assert [f.payload for f in found] == [signature, attestation]
    assert {f.kind for f in found} == {"bundle"}  # verification, not the registry, tells them apart
    assert found[1].annotations["dev.sigstore.bundle.content"] == "dsse-envelope"
    assert found[1].annotations["dev.sigstore.bundle.predicateType"] == SLSA
