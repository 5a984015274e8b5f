"""Credentials, docker config files, challenges, tokens, and the auth flows against real registries."""

from __future__ import annotations

import base64
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.errors import FetchError, LimitError, PolicyError, Reason
from controller.registry import Keychain, RegistryClient, RegistryConfig, parse_reference
from controller.registry.auth import (
    Challenge,
    Credential,
    Token,
    TokenCache,
    parse_challenges,
    parse_token_response,
)
from tests.fixtures.registry import RegistryServer, TokenServer


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --- docker config files


def test_dockerconfigjson_forms() -> None:
    config = {
        "auths": {
            "https://index.docker.io/v1/": {"auth": _b64("hub:hubpass"), "email": "x@example.com"},
            "ghcr.io": {"username": "gh", "password": "ghpass"},
            "HTTPS://Registry.Example.com:5000/v2/": {"auth": _b64("ex:p:w")},
            "acr.example.io": {"identitytoken": "refresh-token"},
            "*.gcr.io": {"auth": _b64("glob:globpass")},
            "empty.example": {"email": "only@example.com"},
        }
    }
    keychain = Keychain.from_docker_config(json.dumps(config).encode())
    hub = keychain.lookup("docker.io")
    assert hub == Credential("hub", "hubpass")
    assert keychain.lookup("index.docker.io") == hub
    assert keychain.lookup("registry-1.docker.io") == hub
    assert keychain.lookup("ghcr.io") == Credential("gh", "ghpass")
    assert keychain.lookup("registry.example.com:5000") == Credential("ex", "p:w")
    assert keychain.lookup("registry.example.com") is None  # the port is part of the host
    acr = keychain.lookup("acr.example.io")
    assert acr is not None and acr.identity_token == "refresh-token"
    assert keychain.lookup("eu.gcr.io") == Credential("glob", "globpass")
    assert keychain.lookup("a.b.gcr.io") is None  # "*" stands for one domain component
    assert keychain.lookup("empty.example") is None
    assert keychain.lookup("quay.io") is None


def test_legacy_dockercfg_flat_map() -> None:
    legacy = {"https://index.docker.io/v1/": {"auth": _b64("old:oldpass"), "email": "e"}}
    keychain = Keychain.from_docker_config(json.dumps(legacy))
    assert keychain.lookup("docker.io") == Credential("old", "oldpass")


def test_auth_field_wins_over_username_and_password() -> None:
    config = {"auths": {"h.io": {"auth": _b64("a:b"), "username": "c", "password": "d"}}}
    assert Keychain.from_docker_config(json.dumps(config)).lookup("h.io") == Credential("a", "b")


def test_merge_earlier_wins() -> None:
    first = Keychain.from_docker_config(json.dumps({"auths": {"h.io": {"auth": _b64("first:1")}}}))
    second = Keychain.from_docker_config(
        json.dumps({"auths": {"h.io": {"auth": _b64("second:2")}, "o.io": {"auth": _b64("other:3")}}})
    )
    merged = Keychain.merge(first, second)
    assert merged.lookup("h.io") == Credential("first", "1")
    assert merged.lookup("o.io") == Credential("other", "3")
    assert Keychain.merge().lookup("h.io") is None


@pytest.mark.parametrize(
    "document",
    [
        b"not json",
        b"[]",
        b'{"auths": []}',
        b'{"auths": {"h.io": "string"}}',
        b'{"auths": {"h.io": {"auth": "%%%"}}}',
        json.dumps({"auths": {"h.io": {"auth": _b64("nocolon")}}}).encode(),
        json.dumps({"auths": {"h.io": {"username": "only-user"}}}).encode(),
        json.dumps({"auths": {"h.io": {"username": 5, "password": "p"}}}).encode(),
        json.dumps({"auths": {"bad host!": {"auth": _b64("a:b")}}}).encode(),
        b'{"auths": {"h.io": {"auth": "YTpi"}, "h.io": {"auth": "YTpi"}}}',  # duplicate key
        b"\xff\xfe",
    ],
)
def test_bad_docker_configs(document: bytes) -> None:
    with pytest.raises(PolicyError) as caught:
        Keychain.from_docker_config(document)
    assert caught.value.reason is Reason.CONFIG_INVALID


def test_oversized_docker_config() -> None:
    with pytest.raises(LimitError) as caught:
        Keychain.from_docker_config(b" " * (1024 * 1024 + 1))
    assert caught.value.reason is Reason.LIMIT_EXCEEDED


def test_credential_never_shows_secrets() -> None:
    credential = Credential("user", "hunter2", "")
    assert "hunter2" not in repr(credential)
    assert credential.fingerprint != Credential("user", "hunter3").fingerprint
    with pytest.raises(PolicyError) as caught:
        Credential("user", "")
    assert caught.value.reason is Reason.CONFIG_INVALID


# --- challenges


def test_parse_bearer_challenge() -> None:
    header = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/nginx:pull",error="invalid_token"'
    )
    (challenge,) = parse_challenges(header)
    assert challenge == Challenge(
        "bearer",
        {
            "realm": "https://auth.docker.io/token",
            "service": "registry.docker.io",
            "scope": "repository:library/nginx:pull",
            "error": "invalid_token",
        },
    )


def test_parse_multiple_and_odd_challenges() -> None:
    challenges = parse_challenges(
        'Basic realm="a \\"quoted\\" realm", Bearer realm="https://x/token", service = s ,Negotiate abc=='
    )
    assert [c.scheme for c in challenges] == ["basic", "bearer", "negotiate"]
    assert challenges[0].params == {"realm": 'a "quoted" realm'}
    assert challenges[1].params == {"realm": "https://x/token", "service": "s"}
    assert parse_challenges("") == []
    assert parse_challenges("BASIC") == [Challenge("basic", {})]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_challenge_parser_never_raises(header: str) -> None:
    for challenge in parse_challenges(header):
        assert challenge.scheme == challenge.scheme.lower()


# --- tokens


def test_token_response_fields() -> None:
    assert parse_token_response(b'{"token": "abc", "expires_in": 300}') == Token("abc", 290.0)
    assert parse_token_response(b'{"access_token": "xyz"}') == Token("xyz", 50.0)
    # never cached longer than an hour, whatever the server says
    assert parse_token_response(b'{"token": "t", "expires_in": 99999999}').ttl_seconds == 3590.0


@pytest.mark.parametrize(
    "body", [b"", b"[]", b"{}", b'{"token": ""}', b'{"token": 5}', b'{"token": "a\\nb"}', b'{"token": "a b"}']
)
def test_bad_token_responses(body: bytes) -> None:
    with pytest.raises(FetchError) as caught:
        parse_token_response(body)
    assert caught.value.reason is Reason.REGISTRY_AUTH_FAILED


def test_token_cache_expiry_and_bound() -> None:
    cache = TokenCache(max_entries=2)
    cache.put(("h", "s", ""), Token("t1", 0.05))
    assert cache.get(("h", "s", "")) == "t1"
    assert cache.get(("h", "s", "other")) is None
    time.sleep(0.1)
    assert cache.get(("h", "s", "")) is None
    cache.put(("h", "a", ""), Token("a", 60))
    cache.put(("h", "b", ""), Token("b", 60))
    cache.put(("h", "c", ""), Token("c", 60))
    assert cache.get(("h", "a", "")) is None  # evicted
    assert cache.get(("h", "c", "")) == "c"
    cache.put(("h", "z", ""), Token("z", 0))  # nothing to cache
    assert cache.get(("h", "z", "")) is None


# --- flows against the real registries


def _keychain(host: str, user: str, password: str) -> Keychain:
    return Keychain.from_docker_config(
        json.dumps({"auths": {host: {"username": user, "password": password}}})
    )


@pytest.fixture(scope="module")
def bearer_image(auth_registry: RegistryServer) -> str:
    auth_registry.push_random_image("private/app", "v1")
    auth_registry.push_random_image("public/app", "v1")
    auth_registry.push_random_image("private/other", "v1")
    return auth_registry.ref("private/app", "v1")


def test_bearer_flow_with_pull_secret(
    auth_registry: RegistryServer, token_server: TokenServer, bearer_image: str
) -> None:
    token_server.clear()
    client = RegistryClient(
        RegistryConfig.from_yaml(auth_registry.registries_yaml()),
        _keychain(auth_registry.host, "alice", "wonderland"),
    )
    ref = parse_reference(bearer_image)
    digest = client.resolve(ref)
    assert client.resolve(ref) == digest
    assert client.get_manifest(ref, str(digest)).digest == digest
    # one token for the repository, then the cache: resolve twice + get_manifest cost one token request
    assert [(r.user, r.scopes) for r in token_server.requests] == [
        ("alice", ("repository:private/app:pull",))
    ]
    # a second repository: a new scope, fetched up front (the registry's challenge is remembered)
    client.resolve(parse_reference(auth_registry.ref("private/other", "v1")))
    assert len(token_server.requests) == 2
    assert token_server.requests[1].scopes == ("repository:private/other:pull",)
    assert token_server.requests[1].service == "imprimatur-test-registry"


def test_bearer_flow_with_registries_yaml_credentials(
    auth_registry: RegistryServer, bearer_image: str
) -> None:
    config = RegistryConfig.from_yaml(auth_registry.registries_yaml(credentials=("alice", "wonderland")))
    assert RegistryClient(config).resolve(parse_reference(bearer_image)).algorithm == "sha256"


def test_bearer_flow_with_identity_token(
    auth_registry: RegistryServer, token_server: TokenServer, bearer_image: str
) -> None:
    token_server.clear()
    keychain = Keychain.from_docker_config(
        json.dumps({"auths": {auth_registry.host: {"identitytoken": "refresh-alice"}}})
    )
    client = RegistryClient(RegistryConfig.from_yaml(auth_registry.registries_yaml()), keychain)
    client.resolve(parse_reference(bearer_image))
    assert [(r.method, r.grant_type, r.user) for r in token_server.requests] == [
        ("POST", "refresh_token", "alice")
    ]


def test_bearer_anonymous_gets_public_only(auth_registry: RegistryServer, bearer_image: str) -> None:
    client = RegistryClient(RegistryConfig.from_yaml(auth_registry.registries_yaml()))
    assert client.resolve(parse_reference(auth_registry.ref("public/app", "v1"))).algorithm == "sha256"
    with pytest.raises(FetchError) as caught:
        client.resolve(parse_reference(bearer_image))
    assert caught.value.reason is Reason.REGISTRY_AUTH_FAILED


def test_bearer_wrong_password(auth_registry: RegistryServer, bearer_image: str) -> None:
    client = RegistryClient(
        RegistryConfig.from_yaml(auth_registry.registries_yaml()),
        _keychain(auth_registry.host, "alice", "wrong"),
    )
    with pytest.raises(FetchError) as caught:
        client.resolve(parse_reference(bearer_image))
    assert caught.value.reason is Reason.REGISTRY_AUTH_FAILED


def test_with_keychain_credentials_do_not_leak_to_the_base_client(
    auth_registry: RegistryServer, bearer_image: str
) -> None:
    base = RegistryClient(
        RegistryConfig.from_yaml(auth_registry.registries_yaml()),
        _keychain(auth_registry.host, "alice", "wrong"),
    )
    pod = base.with_keychain(_keychain(auth_registry.host, "alice", "wonderland"))
    ref = parse_reference(bearer_image)
    assert pod.resolve(ref).algorithm == "sha256"
    # the token the pod's secret earned is cached under that secret only
    with pytest.raises(FetchError) as caught:
        base.resolve(ref)
    assert caught.value.reason is Reason.REGISTRY_AUTH_FAILED
    # an empty extra keychain falls back to the base credentials
    with pytest.raises(FetchError) as caught:
        base.with_keychain(Keychain()).resolve(ref)
    assert caught.value.reason is Reason.REGISTRY_AUTH_FAILED


@pytest.fixture(scope="module")
def basic_image(basic_registry: RegistryServer) -> str:
    basic_registry.push_random_image("team/app", "v1")
    return basic_registry.ref("team/app", "v1")


def test_basic_flow(basic_registry: RegistryServer, basic_image: str) -> None:
    client = RegistryClient(
        RegistryConfig.from_yaml(basic_registry.registries_yaml()),
        _keychain(basic_registry.host, "bob", "builder"),
    )
    ref = parse_reference(basic_image)
    digest = client.resolve(ref)
    assert client.get_manifest(ref, "v1").digest == digest


def test_basic_flow_failures(basic_registry: RegistryServer, basic_image: str) -> None:
    config = RegistryConfig.from_yaml(basic_registry.registries_yaml())
    ref = parse_reference(basic_image)
    for client in (
        RegistryClient(config),
        RegistryClient(config, _keychain(basic_registry.host, "bob", "nope")),
    ):
        with pytest.raises(FetchError) as caught:
            client.resolve(ref)
        assert caught.value.reason is Reason.REGISTRY_AUTH_FAILED
