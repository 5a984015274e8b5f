"""The registry client against the real docker-registry (TLS), plus small liars where a lie is needed."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
import requests
import urllib3.connection

from controller.errors import EvidenceError, FetchError, InputError, LimitError, PolicyError, Reason
from controller.model import Digest
from controller.registry import Keychain, Limits, RegistryClient, RegistryConfig, parse_reference
from controller.registry.manifest import OCI_INDEX, OCI_MANIFEST, SIMPLESIGNING
from tests.fixtures.registry import RegistryServer, TestPKI, referrers_index
from tests.registry.fakes import Route, closed_port, scripted, silent
from tests.sigstore_real import real_data_dir

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"


class Counter:
    """A requests session that records every request it sends (method, url)."""

    def __init__(self) -> None:
        self.session = requests.Session()
        self.session.trust_env = False
        self.calls: list[tuple[str, str]] = []
        self.session.hooks["response"].append(self._hook)

    def _hook(self, response: requests.Response, *args: object, **kwargs: object) -> None:
        self.calls.append((str(response.request.method), str(response.request.url)))


def _client(
    registry: RegistryServer,
    yaml_text: str | None = None,
    *,
    limits: Limits | None = None,
    session: requests.Session | None = None,
) -> RegistryClient:
    config = RegistryConfig.from_yaml(yaml_text if yaml_text is not None else registry.registries_yaml())
    return RegistryClient(config, limits=limits, session=session)


@pytest.fixture(scope="module")
def image(registry: RegistryServer) -> tuple[str, Digest]:
    digest = registry.push_random_image("client/app", "v1")
    return registry.ref("client/app", "v1"), digest


# --- resolve and fetch


def test_resolve_by_tag_is_one_head(registry: RegistryServer, image: tuple[str, Digest]) -> None:
    counter = Counter()
    client = _client(registry, session=counter.session)
    assert client.resolve(parse_reference(image[0])) == image[1]
    assert counter.calls == [("HEAD", f"{registry.url}/v2/client/app/manifests/v1")]


def test_pinned_digest_costs_no_request(registry: RegistryServer, image: tuple[str, Digest]) -> None:
    counter = Counter()
    client = _client(registry, session=counter.session)
    pinned = parse_reference(f"{registry.host}/client/app@{image[1]}")
    assert client.resolve(pinned) == image[1]
    other = Digest.of(b"not even in the registry")
    assert client.resolve(parse_reference(f"{registry.host}/client/app:v1@{other}")) == other
    assert counter.calls == []


def test_missing_image(registry: RegistryServer, image: tuple[str, Digest]) -> None:
    client = _client(registry)
    for ref in (registry.ref("client/app", "nope"), registry.ref("client/absent", "v1")):
        with pytest.raises(FetchError) as caught:
            client.resolve(parse_reference(ref))
        assert caught.value.reason is Reason.IMAGE_NOT_FOUND
    with pytest.raises(FetchError) as caught:
        client.get_manifest(parse_reference(image[0]), str(Digest.of(b"absent")))
    assert caught.value.reason is Reason.IMAGE_NOT_FOUND
    with pytest.raises(FetchError) as caught:
        client.get_blob(parse_reference(image[0]), Digest.of(b"absent"), 100)
    assert caught.value.reason is Reason.IMAGE_NOT_FOUND


def test_get_manifest_by_tag_and_digest(registry: RegistryServer, image: tuple[str, Digest]) -> None:
    client = _client(registry)
    ref = parse_reference(image[0])
    by_tag = client.get_manifest(ref, "v1")
    by_digest = client.get_manifest(ref, str(image[1]))
    assert by_tag == by_digest
    assert by_tag.digest == image[1] == Digest.of(by_tag.body)
    assert by_tag.media_type == OCI_MANIFEST
    with pytest.raises(InputError) as caught:
        client.get_manifest(ref, "../../x")
    assert caught.value.reason is Reason.REFERENCE_INVALID


def test_get_blob_verified_and_bounded(registry: RegistryServer, image: tuple[str, Digest]) -> None:
    data = os.urandom(3000)
    digest = registry.push_blob("client/app", data)
    client = _client(registry)
    ref = parse_reference(image[0])
    assert client.get_blob(ref, digest, 3000) == data
    with pytest.raises(LimitError) as caught:
        client.get_blob(ref, digest, 2999)
    assert caught.value.reason is Reason.LIMIT_EXCEEDED


def test_manifest_size_limit(registry: RegistryServer, image: tuple[str, Digest]) -> None:
    client = _client(registry, limits=Limits(max_manifest_bytes=200))
    with pytest.raises(LimitError) as caught:
        client.get_manifest(parse_reference(image[0]), "v1")
    assert caught.value.reason is Reason.LIMIT_EXCEEDED


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_trust_is_required(registry: RegistryServer, image: tuple[str, Digest]) -> None:
    with pytest.raises(FetchError) as caught:
        RegistryClient().resolve(parse_reference(image[0]))  # the test CA is not trusted by default
    assert caught.value.reason is Reason.REGISTRY_UNAVAILABLE
    insecure = f"configs: {{'{registry.host}': {{tls: {{insecure_skip_verify: true}}}}}}"
    assert _client(registry, insecure).resolve(parse_reference(image[0])) == image[1]


def test_missing_ca_file_is_a_config_error(registry: RegistryServer) -> None:
    text = f"configs: {{'{registry.host}': {{tls: {{ca_file: /nonexistent/ca.pem}}}}}}"
    with pytest.raises(PolicyError) as caught:
        _client(registry, text)
    assert caught.value.reason is Reason.CONFIG_INVALID


def test_client_certificates(mtls_registry: RegistryServer) -> None:
    digest = mtls_registry.push_random_image("mtls/app", "v1")
    ref = parse_reference(mtls_registry.ref("mtls/app", "v1"))
    assert _client(mtls_registry, mtls_registry.registries_yaml(client_cert=True)).resolve(ref) == digest
    with pytest.raises(FetchError) as caught:
        _client(mtls_registry).resolve(ref)
    assert caught.value.reason is Reason.REGISTRY_UNAVAILABLE


def test_concurrent_use(registry: RegistryServer, image: tuple[str, Digest]) -> None:
    client = _client(registry)
    ref = parse_reference(image[0])
    results: list[Digest] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.extend(client.resolve(ref) for _ in range(5))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert results == [image[1]] * 20


# --- signatures (legacy .sig tag)


def test_fetch_real_cosign_signature(registry: RegistryServer) -> None:
    data = real_data_dir()
    case = data / "legacy" / "connaisseur_phbelitz_email_github_2024"
    payload = (case / "payload.json").read_bytes()
    manifest = (case / "sig_manifest.json").read_bytes()
    payload_digest = registry.push_blob("phbelitz/rekor-test", payload)
    config = (
        '{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{"created":"0001-01-01T00:00:00Z"}],'
        f'"os":"","rootfs":{{"type":"layers","diff_ids":["{payload_digest}"]}},"config":{{}}}}'
    ).encode()
    assert str(registry.push_blob("phbelitz/rekor-test", config)) == json.loads(manifest)["config"]["digest"]
    image_digest = Digest.parse(json.loads(payload)["critical"]["image"]["docker-manifest-digest"])
    registry.push_manifest("phbelitz/rekor-test", f"sha256-{image_digest.hex}.sig", manifest, OCI_MANIFEST)

    ref = parse_reference(f"{registry.host}/phbelitz/rekor-test@{image_digest}")
    (signature,) = _client(registry).fetch_signatures(ref, image_digest)
    assert signature.kind == "simplesigning"
    assert signature.payload == payload
    assert signature.layer_digest == payload_digest
    assert dict(signature.annotations) == json.loads((case / "annotations.json").read_text())
    assert signature.source == f"{registry.host}/phbelitz/rekor-test:sha256-{image_digest.hex}.sig layer 0"
    assert signature.media_type == SIMPLESIGNING


def test_fetch_signatures_layers_and_absence(registry: RegistryServer, image: tuple[str, Digest]) -> None:
    client = _client(registry)
    ref = parse_reference(image[0])
    digest = registry.push_random_image("client/signed", "v1")
    assert client.fetch_signatures(ref, digest) == []
    registry.push_signature_manifest(
        "client/app",
        f"sha256-{digest.hex}.sig",
        [(b'{"a":1}', {"dev.cosignproject.cosign/signature": "sig-a"}), (b'{"b":2}', {})],
    )
    other = registry.push_blob("client/app", b"not a signature")
    body = json.loads(client.get_manifest(ref, f"sha256-{digest.hex}.sig").body)
    body["layers"].insert(1, {"mediaType": "application/octet-stream", "digest": str(other), "size": 15})
    registry.push_manifest("client/app", f"sha256-{digest.hex}.sig", json.dumps(body).encode(), OCI_MANIFEST)

    signatures = client.fetch_signatures(ref, digest)
    assert [(s.payload, dict(s.annotations)) for s in signatures] == [
        (b'{"a":1}', {"dev.cosignproject.cosign/signature": "sig-a"}),
        (b'{"b":2}', {}),
    ]
    assert [s.source.rsplit(" ", 1)[1] for s in signatures] == ["0", "2"]


def test_signature_repository(registry: RegistryServer, image: tuple[str, Digest]) -> None:
    client = _client(registry)
    ref = parse_reference(image[0])
    registry.push_signature_manifest("elsewhere/sigs", f"sha256-{image[1].hex}.sig", [(b"{}", {"k": "v"})])
    (signature,) = client.fetch_signatures(
        ref, image[1], signature_repository=f"{registry.host}/elsewhere/sigs"
    )
    assert signature.source.startswith(f"{registry.host}/elsewhere/sigs:")
    assert client.fetch_signatures(ref, image[1]) == []
    with pytest.raises(InputError) as caught:
        client.fetch_signatures(ref, image[1], signature_repository=f"{registry.host}/elsewhere/sigs:tag")
    assert caught.value.reason is Reason.REFERENCE_INVALID


def test_signature_layer_limits(registry: RegistryServer, image: tuple[str, Digest]) -> None:
    ref = parse_reference(image[0])
    many = registry.push_random_image("client/many", "v1")
    registry.push_signature_manifest("client/app", f"sha256-{many.hex}.sig", [(b"{}", {})] * 65)
    with pytest.raises(LimitError) as caught:
        _client(registry).fetch_signatures(ref, many)
    assert caught.value.reason is Reason.LIMIT_EXCEEDED

    big = registry.push_random_image("client/big", "v1")
    registry.push_signature_manifest("client/app", f"sha256-{big.hex}.sig", [(b"x" * 200, {})])
    with pytest.raises(LimitError) as caught:
        _client(registry, limits=Limits(max_blob_bytes=199)).fetch_signatures(ref, big)
    assert caught.value.reason is Reason.LIMIT_EXCEEDED
    assert len(_client(registry, limits=Limits(max_blob_bytes=200)).fetch_signatures(ref, big)) == 1


def test_signature_layer_size_must_match(registry: RegistryServer, image: tuple[str, Digest]) -> None:
    ref = parse_reference(image[0])
    digest = registry.push_random_image("client/sized", "v1")
    tag = f"sha256-{digest.hex}.sig"
    registry.push_signature_manifest("client/app", tag, [(b"0123456789", {})])
    body = json.loads(_client(registry).get_manifest(ref, tag).body)
    for declared, error, reason in (
        (5, LimitError, Reason.LIMIT_EXCEEDED),  # the blob runs past its declared size
        (20, EvidenceError, Reason.MANIFEST_INVALID),  # the blob is shorter than declared
    ):
        body["layers"][0]["size"] = declared
        registry.push_manifest("client/app", tag, json.dumps(body).encode(), OCI_MANIFEST)
        with pytest.raises(error) as caught:
            _client(registry).fetch_signatures(ref, digest)
        assert caught.value.reason is reason


# --- liars behind a mirror: digests are always checked


def test_lying_mirror_manifest_by_digest(registry: RegistryServer, image: tuple[str, Digest]) -> None:
    with scripted() as fake:
        client = _client(registry, registry.registries_yaml({registry.host: [fake.url]}))
        ref = parse_reference(image[0])
        fake.routes[f"/v2/client/app/manifests/{image[1]}"] = Route(
            body=b'{"schemaVersion":2}', headers={"Content-Type": OCI_MANIFEST}
        )
        with pytest.raises(EvidenceError) as caught:
            client.get_manifest(ref, str(image[1]))
        assert caught.value.reason is Reason.DIGEST_MISMATCH
        assert fake.seen[0].query == f"ns={registry.host.replace(':', '%3A')}"


def test_lying_mirror_digest_header(registry: RegistryServer, image: tuple[str, Digest]) -> None:
    with scripted() as fake:
        client = _client(registry, registry.registries_yaml({registry.host: [fake.url]}))
        ref = parse_reference(image[0])
        body = b'{"schemaVersion":2,"mediaType":"' + OCI_MANIFEST.encode() + b'"}'
        fake.routes["/v2/client/app/manifests/v1"] = Route(
            body=body, headers={"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": str(image[1])}
        )
        with pytest.raises(EvidenceError) as caught:
            client.get_manifest(ref, "v1")
        assert caught.value.reason is Reason.DIGEST_MISMATCH
        # resolve: the HEAD has no digest header, so the body is fetched, and it must match the GET's header
        fake.routes["/v2/client/app/manifests/v1"] = lambda seen: Route(
            body=body,
            headers={"Content-Type": OCI_MANIFEST}
            | ({"Docker-Content-Digest": str(image[1])} if seen.method == "GET" else {}),
        )
        with pytest.raises(EvidenceError) as caught:
            client.resolve(ref)
        assert caught.value.reason is Reason.DIGEST_MISMATCH
        fake.routes["/v2/client/app/manifests/v1"] = Route(body=body, headers={"Content-Type": OCI_MANIFEST})
        fake.seen.clear()
        assert client.resolve(ref) == Digest.of(body)
        assert [s.method for s in fake.seen] == ["HEAD", "GET"]
        fake.routes["/v2/client/app/manifests/v1"] = Route(headers={"Docker-Content-Digest": "sha256:zz"})
        with pytest.raises(EvidenceError) as caught:
            client.resolve(ref)
        assert caught.value.reason is Reason.MANIFEST_INVALID


def test_lying_mirror_blobs(registry: RegistryServer, image: tuple[str, Digest]) -> None:
    ref = parse_reference(image[0])
    digest = registry.push_random_image("client/lied", "v1")
    tag = f"sha256-{digest.hex}.sig"
    registry.push_signature_manifest("client/app", tag, [(b'{"real":true}', {})])
    good = Digest.of(b'{"real":true}')
    with scripted() as fake:
        client = _client(registry, registry.registries_yaml({registry.host: [fake.url]}))
        fake.routes[f"/v2/client/app/blobs/{good}"] = Route(body=b'{"fake":true}')
        with pytest.raises(EvidenceError) as caught:
            client.get_blob(ref, good, 100)
        assert caught.value.reason is Reason.DIGEST_MISMATCH
        # the .sig manifest comes from the upstream (the mirror 404s it), the layer blob from the liar
        with pytest.raises(EvidenceError) as caught:
            client.fetch_signatures(ref, digest)
        assert caught.value.reason is Reason.DIGEST_MISMATCH
        fake.routes[f"/v2/client/app/manifests/{tag}"] = Route(
            body=b"{not json", headers={"Content-Type": OCI_MANIFEST}
        )
        with pytest.raises(EvidenceError) as caught:
            client.fetch_signatures(ref, digest)
        assert caught.value.reason is Reason.MANIFEST_INVALID


# --- mirrors


def test_mirror_fallback_order(registry: RegistryServer, image: tuple[str, Digest]) -> None:
    with scripted() as missing, scripted() as broken:
        broken.routes["/v2/client/app/manifests/v1"] = Route(503)
        dead = f"http://127.0.0.1:{closed_port()}"
        yaml_text = registry.registries_yaml({registry.host: [dead, missing.url, broken.url]})
        counter = Counter()
        client = _client(registry, yaml_text, session=counter.session)
        assert client.resolve(parse_reference(image[0])) == image[1]
        assert missing.paths("HEAD") == ["/v2/client/app/manifests/v1"]
        assert broken.paths("HEAD") == ["/v2/client/app/manifests/v1"]
        # the dead endpoint never answered; the others answered in order, the upstream last
        assert [url.split("/v2/")[0] for _, url in counter.calls] == [missing.url, broken.url, registry.url]


def test_docker_hub_through_a_mirror(registry: RegistryServer) -> None:
    digest = registry.push_random_image("library/mirrored", "v1")
    client = _client(registry, registry.registries_yaml({"docker.io": [registry.url]}))
    assert client.resolve(parse_reference("mirrored:v1")) == digest


def test_wildcard_mirror(registry: RegistryServer) -> None:
    digest = registry.push_random_image("acme/wild", "v1")
    client = _client(registry, registry.registries_yaml({"*": [registry.url]}))
    assert client.resolve(parse_reference("ghcr.io/acme/wild:v1")) == digest


def test_the_last_endpoint_decides(registry: RegistryServer) -> None:
    unreachable = f"127.0.0.1:{closed_port()}"
    with scripted() as missing:
        client = _client(registry, registry.registries_yaml({unreachable: [missing.url]}))
        with pytest.raises(FetchError) as caught:
            client.resolve(parse_reference(f"{unreachable}/app:v1"))
        assert caught.value.reason is Reason.REGISTRY_UNAVAILABLE
    with scripted() as upstream_missing:
        dead = f"http://127.0.0.1:{closed_port()}"
        client = _client(registry, registry.registries_yaml({registry.host: [dead]}))
        with pytest.raises(FetchError) as caught:
            client.resolve(parse_reference(registry.ref("client/none", "v1")))
        assert caught.value.reason is Reason.IMAGE_NOT_FOUND
        assert upstream_missing.seen == []


def test_plain_http_only_when_written(registry: RegistryServer) -> None:
    body = b'{"schemaVersion":2}'
    with scripted() as plain:
        plain.routes["/v2/app/manifests/v1"] = Route(
            body=body, headers={"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": str(Digest.of(body))}
        )
        ref = parse_reference(f"{plain.host}/app:v1")
        with pytest.raises(FetchError) as caught:
            RegistryClient().resolve(ref)  # https to a plain-http server fails
        assert caught.value.reason is Reason.REGISTRY_UNAVAILABLE
        assert plain.paths() == []
        written = RegistryConfig.from_yaml(f"mirrors: {{'{plain.host}': {{endpoint: ['{plain.url}']}}}}")
        assert RegistryClient(written).resolve(ref) == Digest.of(body)


def test_5xx_and_429_fall_through_to_the_upstream(
    registry: RegistryServer, image: tuple[str, Digest]
) -> None:
    for status in (500, 502, 429):
        with scripted() as flaky:
            flaky.routes["/v2/client/app/manifests/v1"] = Route(status)
            client = _client(registry, registry.registries_yaml({registry.host: [flaky.url]}))
            assert client.resolve(parse_reference(image[0])) == image[1]
    with scripted() as odd:
        odd.routes["/v2/client/app/manifests/v1"] = Route(418)
        client = _client(registry, registry.registries_yaml({registry.host: [odd.url]}))
        with pytest.raises(FetchError) as caught:
            client.resolve(parse_reference(image[0]))
        assert caught.value.reason is Reason.REGISTRY_UNAVAILABLE


def test_one_tls_connection_for_a_whole_verification(
    registry: RegistryServer, image: tuple[str, Digest], monkeypatch: pytest.MonkeyPatch
) -> None:
    """HEAD, GETs and 404s (signature tag, referrers API, referrers tag) share one keep-alive connection."""
    connections: list[object] = []
    new_conn = urllib3.connection.HTTPConnection._new_conn

    def counting(self: urllib3.connection.HTTPConnection) -> object:
        connections.append(self)
        return new_conn(self)

    monkeypatch.setattr(urllib3.connection.HTTPConnection, "_new_conn", counting)
    counter = Counter()
    client = _client(registry, session=counter.session)
    ref = parse_reference(image[0])
    digest = client.resolve(ref)
    manifest = client.get_manifest(ref, str(digest))
    config_digest = Digest.parse(json.loads(manifest.body)["config"]["digest"])
    assert Digest.of(client.get_blob(ref, config_digest, 1 << 20)) == config_digest
    assert client.fetch_signatures(ref, digest) == []
    assert client.fetch_referrer_bundles(ref, digest) == []
    assert [method for method, _ in counter.calls] == ["HEAD", "GET", "GET", "GET", "GET", "GET"]
    assert len(connections) == 1


# --- time and size bounds


def test_silent_endpoint_times_out_quickly(registry: RegistryServer, image: tuple[str, Digest]) -> None:
    limits = Limits(connect_timeout=0.5, read_timeout=0.5)
    with silent() as quiet:
        client = _client(
            registry, registry.registries_yaml({registry.host: [f"http://{quiet.host}"]}), limits=limits
        )
        started = time.monotonic()
        assert client.resolve(parse_reference(image[0])) == image[1]  # falls through to the upstream
        with pytest.raises(FetchError) as caught:
            RegistryClient(limits=limits).resolve(parse_reference(f"{quiet.host}/app:v1"))  # TLS never starts
        assert caught.value.reason is Reason.REGISTRY_UNAVAILABLE
        assert time.monotonic() - started < 4.0


def test_slow_drip_body_hits_the_deadline(registry: RegistryServer, image: tuple[str, Digest]) -> None:
    digest = Digest.of(b"x" * 2000)
    limits = Limits(read_timeout=2.0, total_timeout=0.6)
    for chunked in (False, True):
        with scripted() as drip:
            drip.routes[f"/v2/client/app/blobs/{digest}"] = Route(
                body=b"x" * 2000, drip=0.02, chunked=chunked
            )
            client = _client(registry, registry.registries_yaml({registry.host: [drip.url]}), limits=limits)
            started = time.monotonic()
            with pytest.raises(LimitError) as caught:
                client.get_blob(parse_reference(image[0]), digest, 4000)
            assert caught.value.reason is Reason.LIMIT_EXCEEDED
            assert time.monotonic() - started < 2.0


def test_body_caps_do_not_trust_content_length(registry: RegistryServer, image: tuple[str, Digest]) -> None:
    data = b"y" * 10000
    digest = Digest.of(data)
    ref = parse_reference(image[0])
    with scripted() as fake:
        client = _client(registry, registry.registries_yaml({registry.host: [fake.url]}))
        path = f"/v2/client/app/blobs/{digest}"
        for route in (Route(body=data, chunked=True), Route(body=data), Route(body=data, content_length=-1)):
            fake.routes[path] = route
            with pytest.raises(LimitError) as caught:
                client.get_blob(ref, digest, 1000)
            assert caught.value.reason is Reason.LIMIT_EXCEEDED
        # a Content-Length that undercounts only cuts the body short: the digest catches it
        fake.routes[path] = Route(body=data, content_length=10)
        with pytest.raises(EvidenceError) as caught_short:
            client.get_blob(ref, digest, 1000)
        assert caught_short.value.reason is Reason.DIGEST_MISMATCH
        fake.routes[path] = Route(body=data, chunked=True)
        assert client.get_blob(ref, digest, 10000) == data


# --- OCI 1.1 referrers (Sigstore bundles)


def test_referrers_tag_schema_fallback(registry: RegistryServer) -> None:
    subject = registry.push_random_image("client/referred", "v1")
    ref = parse_reference(registry.ref("client/referred", "v1"))
    client = _client(registry)
    assert client.fetch_referrer_bundles(ref, subject) == []

    bundle = b'{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}'
    good, good_size = registry.push_referrer_bundle("client/referred", subject, bundle)
    stray, stray_size = registry.push_referrer_bundle(
        "client/referred", Digest.of(b"another image"), b'{"stray":1}'
    )
    registry.push_referrers_index(
        "client/referred",
        subject,
        [
            (good, good_size, BUNDLE_V03),
            (stray, stray_size, BUNDLE_V03),  # its subject is another image: skipped
            (subject, 1, "application/spdx+json"),  # not a bundle: skipped
        ],
    )

    (found,) = client.fetch_referrer_bundles(ref, subject)
    assert found.kind == "bundle"
    assert found.payload == bundle
    assert found.media_type == BUNDLE_V03
    assert found.layer_digest == Digest.of(bundle)
    assert found.annotations["dev.sigstore.bundle.content"] == "message-signature"


def test_referrers_api(registry: RegistryServer) -> None:
    subject = registry.push_random_image("client/api", "v1")
    ref = parse_reference(registry.ref("client/api", "v1"))
    bundle = b'{"bundle":"via the API"}'
    good, size = registry.push_referrer_bundle("client/api", subject, bundle)
    with scripted() as api:
        # the mirror serves the referrers API; manifests and blobs 404 there and come from the upstream
        api.routes[f"/v2/client/api/referrers/{subject}"] = Route(
            body=referrers_index([(good, size, BUNDLE_V03)]), headers={"Content-Type": OCI_INDEX}
        )
        client = _client(registry, registry.registries_yaml({registry.host: [api.url]}))
        (found,) = client.fetch_referrer_bundles(ref, subject)
        assert found.payload == bundle
        assert f"/v2/client/api/manifests/sha256-{subject.hex}" not in api.paths()
        many = referrers_index([(good, size, BUNDLE_V03)] * 3)
        api.routes[f"/v2/client/api/referrers/{subject}"] = Route(
            body=many, headers={"Content-Type": OCI_INDEX}
        )
        limited = _client(
            registry,
            registry.registries_yaml({registry.host: [api.url]}),
            limits=Limits(max_index_children=2),
        )
        with pytest.raises(LimitError) as caught:
            limited.fetch_referrer_bundles(ref, subject)
        assert caught.value.reason is Reason.LIMIT_EXCEEDED


def test_pki_fixture_is_generated_now(registry_pki: TestPKI) -> None:
    assert Path(registry_pki.ca_file).read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert not str(registry_pki.directory).startswith(str(REPO_ROOT))


# --- registries without the referrers API (distribution 2.8 answers "404 page not found", text/plain)


def test_referrers_api_absence_is_quiet_and_remembered(
    registry: RegistryServer, caplog: pytest.LogCaptureFixture
) -> None:
    subject = registry.push_random_image("client/noapi", "v1")
    ref = parse_reference(registry.ref("client/noapi", "v1"))
    counter = Counter()
    client = _client(registry, session=counter.session)
    caplog.set_level("DEBUG", logger="controller.registry")
    assert client.fetch_referrer_bundles(ref, subject) == []
    assert client.fetch_referrer_bundles(ref, subject) == []
    referrers = [url for _, url in counter.calls if "/referrers/" in url]
    assert len(referrers) == 1  # the second lookup skipped the API
    assert len([url for _, url in counter.calls if f"/manifests/sha256-{subject.hex}" in url]) == 2
    assert [r for r in caplog.records if r.levelno >= 30] == []  # no warning: absence is normal
    derived = client.with_keychain(Keychain())
    assert derived.fetch_referrer_bundles(ref, subject) == []
    assert len([url for _, url in counter.calls if "/referrers/" in url]) == 1  # shared by derived clients


@pytest.mark.parametrize(
    "route",
    [
        Route(404, body=b"404 page not found\n", headers={"Content-Type": "text/plain"}),
        Route(404, body=b'{"errors":[{"code":"NAME_UNKNOWN"}]}'),
        Route(400, body=b'{"errors":[{"code":"UNSUPPORTED"}]}'),
        Route(405),
        Route(501),
    ],
    ids=["404-text", "404-json", "400", "405", "501"],
)
def test_every_not_supported_answer_falls_back_to_the_tag_schema(registry_pki: TestPKI, route: Route) -> None:
    subject = Digest.of(b"subject")
    with scripted(registry_pki.server_context()) as fake:
        fake.routes[f"/v2/app/referrers/{subject}"] = route
        config = f"configs: {{'{fake.host}': {{tls: {{ca_file: '{registry_pki.ca_file}'}}}}}}"
        client = RegistryClient(RegistryConfig.from_yaml(config))
        ref = parse_reference(f"{fake.host}/app:v1")
        assert client.fetch_referrer_bundles(ref, subject) == []
        assert client.fetch_referrer_bundles(ref, subject) == []
        assert fake.paths().count(f"/v2/app/referrers/{subject}") == 1
        assert fake.paths().count(f"/v2/app/manifests/sha256-{subject.hex}") == 2


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_real_referrers_failure_still_raises(registry_pki: TestPKI, status: int) -> None:
    subject = Digest.of(b"subject")
    with scripted(registry_pki.server_context()) as fake:
        fake.routes[f"/v2/app/referrers/{subject}"] = Route(status)
        config = f"configs: {{'{fake.host}': {{tls: {{ca_file: '{registry_pki.ca_file}'}}}}}}"
        client = RegistryClient(RegistryConfig.from_yaml(config))
        for _ in range(2):  # and is not remembered as "no API"
            with pytest.raises(FetchError) as caught:
                client.fetch_referrer_bundles(parse_reference(f"{fake.host}/app:v1"), subject)
            assert caught.value.reason is Reason.REGISTRY_UNAVAILABLE
        assert fake.paths().count(f"/v2/app/referrers/{subject}") == 2


# --- details: short, stable, without the image reference or urllib3's text


def test_details_do_not_repeat_the_image(registry: RegistryServer, image: tuple[str, Digest]) -> None:
    client = _client(registry)
    for text in (registry.ref("client/app", "nope"), registry.ref("client/absent", "v1")):
        with pytest.raises(FetchError) as caught:
            client.resolve(parse_reference(text))
        assert caught.value.reason is Reason.IMAGE_NOT_FOUND
        assert text not in caught.value.detail
        assert registry.host not in caught.value.detail


def test_connection_failures_are_short_phrases(registry: RegistryServer, registry_pki: TestPKI) -> None:
    port = closed_port()
    refused = RegistryClient(
        RegistryConfig.from_yaml(
            f"mirrors: {{'127.0.0.1:{port}': {{endpoint: ['http://127.0.0.1:{port}']}}}}"
        )
    )
    with pytest.raises(FetchError) as caught:
        refused.resolve(parse_reference(f"127.0.0.1:{port}/app:v1"))
    assert caught.value.reason is Reason.REGISTRY_UNAVAILABLE
    assert caught.value.detail == f"HEAD 127.0.0.1:{port}/v2/app/manifests/v1: connection refused"

    with pytest.raises(FetchError) as caught:
        RegistryClient().resolve(parse_reference(registry.ref("client/app", "v1")))  # CA not trusted
    assert caught.value.reason is Reason.REGISTRY_UNAVAILABLE
    assert caught.value.detail.startswith(
        f"HEAD {registry.host}/v2/client/app/manifests/v1: TLS certificate verification failed: "
    )
    for noise in ("HTTPSConnectionPool", "Max retries", "urllib3", "object at 0x"):
        assert noise not in caught.value.detail
