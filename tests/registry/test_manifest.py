"""Strict manifest and index parsing (on real cosign manifests and on crafted bad ones)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.errors import EvidenceError, LimitError, Reason
from controller.model import Digest
from controller.registry.manifest import (
    OCI_INDEX,
    OCI_MANIFEST,
    SIMPLESIGNING,
    parse_image_manifest,
    parse_index,
)
from tests.sigstore_real import DEFAULT

LEGACY = DEFAULT / "legacy"
CONNAISSEUR = LEGACY / "connaisseur_phbelitz_email_github_2024"
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def _manifest(**overrides: object) -> bytes:
    document: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": D1, "size": 2},
        "layers": [{"mediaType": SIMPLESIGNING, "digest": D2, "size": 10, "annotations": {"k": "v"}}],
    }
    document.update(overrides)
    return json.dumps({k: v for k, v in document.items() if v is not None}).encode()


@pytest.mark.skipif(not CONNAISSEUR.exists(), reason="shared test data not present")
def test_real_cosign_sig_manifest() -> None:
    manifest = parse_image_manifest((CONNAISSEUR / "sig_manifest.json").read_bytes(), max_layers=64)
    assert manifest.media_type == OCI_MANIFEST
    (layer,) = manifest.layers
    assert layer.media_type == SIMPLESIGNING
    assert layer.digest == Digest.of((CONNAISSEUR / "payload.json").read_bytes())
    assert layer.size == 251
    assert layer.annotations == json.loads((CONNAISSEUR / "annotations.json").read_text())


def test_good_manifest_fields() -> None:
    manifest = parse_image_manifest(
        _manifest(artifactType="application/x", subject={"mediaType": OCI_MANIFEST, "digest": D1, "size": 3}),
        max_layers=1,
    )
    assert manifest.artifact_type == "application/x"
    assert manifest.subject is not None and manifest.subject.digest == Digest.parse(D1)
    assert manifest.layers[0].annotations == {"k": "v"}
    # Docker schema 2 and an absent mediaType are accepted; unknown fields are ignored
    assert (
        parse_image_manifest(
            _manifest(mediaType="application/vnd.docker.distribution.manifest.v2+json", extra=[1]),
            max_layers=1,
        ).media_type
        == "application/vnd.docker.distribution.manifest.v2+json"
    )
    assert parse_image_manifest(_manifest(mediaType=None), max_layers=1).media_type is None


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b"\xff",
        _manifest(schemaVersion=1),
        _manifest(schemaVersion=True),
        _manifest(schemaVersion="2"),
        _manifest(mediaType=OCI_INDEX),
        _manifest(mediaType=5),
        _manifest(manifests=[]),
        _manifest(layers={}),
        _manifest(layers=None),
        _manifest(config=None),
        _manifest(layers=[{"mediaType": SIMPLESIGNING, "digest": "md5:" + "a" * 32, "size": 1}]),
        _manifest(layers=[{"mediaType": SIMPLESIGNING, "digest": D2, "size": -1}]),
        _manifest(layers=[{"mediaType": SIMPLESIGNING, "digest": D2, "size": 1.5}]),
        _manifest(layers=[{"mediaType": SIMPLESIGNING, "digest": D2, "size": True}]),
        _manifest(layers=[{"mediaType": "", "digest": D2, "size": 1}]),
        _manifest(layers=[{"digest": D2, "size": 1}]),
        _manifest(layers=[{"mediaType": SIMPLESIGNING, "digest": D2, "size": 1, "annotations": {"k": 1}}]),
        _manifest(layers=[{"mediaType": SIMPLESIGNING, "digest": D2, "size": 1, "annotations": ["k"]}]),
        _manifest(layers=["x"]),
        _manifest(artifactType=7),
        _manifest(subject={"digest": D1}),
        b'{"schemaVersion": 2, "schemaVersion": 2, "config": {}, "layers": []}',
        b'{"schemaVersion": 2, "x": NaN}',
        b"[" * 100000,
    ],
)
def test_bad_manifests(body: bytes) -> None:
    with pytest.raises(EvidenceError) as caught:
        parse_image_manifest(body, max_layers=64)
    assert caught.value.reason is Reason.MANIFEST_INVALID


def test_layer_count_limit() -> None:
    layer = {"mediaType": SIMPLESIGNING, "digest": D2, "size": 1}
    assert len(parse_image_manifest(_manifest(layers=[layer] * 3), max_layers=3).layers) == 3
    with pytest.raises(LimitError) as caught:
        parse_image_manifest(_manifest(layers=[layer] * 4), max_layers=3)
    assert caught.value.reason is Reason.LIMIT_EXCEEDED


def test_index_parsing_and_limit() -> None:
    entry = {"mediaType": OCI_MANIFEST, "digest": D1, "size": 5, "artifactType": "application/x"}
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry, entry]}).encode()
    index = parse_index(body, max_children=2)
    assert [m.artifact_type for m in index.manifests] == ["application/x", "application/x"]
    with pytest.raises(LimitError) as caught:
        parse_index(body, max_children=1)
    assert caught.value.reason is Reason.LIMIT_EXCEEDED
    for bad in (
        json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "manifests": []}).encode(),
        json.dumps({"schemaVersion": 2, "manifests": {}}).encode(),
        json.dumps({"schemaVersion": 2, "manifests": [{"mediaType": OCI_MANIFEST}]}).encode(),
    ):
        with pytest.raises(EvidenceError) as caught_bad:
            parse_index(bad, max_children=8)
        assert caught_bad.value.reason is Reason.MANIFEST_INVALID


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=300)
    | st.recursive(
        st.none() | st.integers() | st.text(max_size=5),
        lambda c: (
            st.lists(c)
            | st.dictionaries(
                st.sampled_from(
                    ["schemaVersion", "layers", "config", "mediaType", "digest", "size", "annotations"]
                ),
                c,
            )
        ),
        max_leaves=20,
    ).map(lambda v: json.dumps(v).encode())
)
def test_parsers_only_raise_reasoned_errors(body: bytes) -> None:
    for parse in (lambda b: parse_image_manifest(b, max_layers=4), lambda b: parse_index(b, max_children=4)):
        try:
            parse(body)
        except (EvidenceError, LimitError) as e:
            assert e.reason in (Reason.MANIFEST_INVALID, Reason.LIMIT_EXCEEDED)
