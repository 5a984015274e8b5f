"""registries.yaml (k3s / RKE2): strict parsing, endpoint order, per-host TLS and credentials."""

from __future__ import annotations

import base64

import pytest

from controller.errors import ImprimaturError, LimitError, PolicyError, Reason
from controller.registry.config import Endpoint, RegistryConfig, TLSConfig, parse_endpoint

FULL = """
mirrors:
  docker.io:
    endpoint:
      - "https://mirror.internal:5000"
      - "http://plain.internal:5000"
  "registry.example.com":
    endpoint: ["https://proxy.internal/v2/example-proxy"]
  "*":
    endpoint: ["catch-all.internal"]
configs:
  "mirror.internal:5000":
    auth:
      username: user
      password: secret
    tls:
      ca_file: /etc/ca.pem
      cert_file: /etc/client.pem
      key_file: /etc/client-key.pem
  "plain.internal:5000":
    auth:
      auth: {auth}
  "proxy.internal":
    auth:
      identity_token: refresh-me
    tls:
      insecure_skip_verify: true
  "index.docker.io":
    auth: {username: hubuser, password: hubpass}
""".replace("{auth}", base64.b64encode(b"u2:p:2").decode())


def test_full_config_endpoints_in_order_then_upstream() -> None:
    config = RegistryConfig.from_yaml(FULL)
    assert config.endpoints("docker.io") == (
        Endpoint("https", "mirror.internal:5000", "/v2", mirror=True),
        Endpoint("http", "plain.internal:5000", "/v2", mirror=True),
        Endpoint("https", "index.docker.io", "/v2", mirror=False),
    )
    # the same registry by its aliases
    assert config.endpoints("index.docker.io") == config.endpoints("docker.io")
    assert config.endpoints("registry.example.com") == (
        Endpoint("https", "proxy.internal", "/v2/example-proxy/v2", mirror=True),
        Endpoint("https", "registry.example.com", "/v2", mirror=False),
    )
    # the wildcard serves registries without their own entry; no scheme means https
    assert config.endpoints("quay.io") == (
        Endpoint("https", "catch-all.internal", "/v2", mirror=True),
        Endpoint("https", "quay.io", "/v2", mirror=False),
    )


def test_full_config_host_settings() -> None:
    config = RegistryConfig.from_yaml(FULL)
    mirror = config.host_config("mirror.internal:5000")
    assert mirror is not None and mirror.credential is not None
    assert (mirror.credential.username, mirror.credential.password) == ("user", "secret")
    assert mirror.tls == TLSConfig("/etc/ca.pem", "/etc/client.pem", "/etc/client-key.pem", False)
    plain = config.host_config("PLAIN.internal:5000")
    assert plain is not None and plain.credential is not None
    assert (plain.credential.username, plain.credential.password) == ("u2", "p:2")
    proxy = config.host_config("proxy.internal")
    assert proxy is not None and proxy.credential is not None
    assert proxy.credential.identity_token == "refresh-me"
    assert proxy.tls.insecure_skip_verify is True
    # configs keyed by a Docker Hub alias apply to every alias
    hub = config.host_config("docker.io")
    assert hub is not None and hub.credential is not None and hub.credential.username == "hubuser"
    assert config.host_config("unknown.example") is None
    assert set(config.files()) == {"/etc/ca.pem", "/etc/client.pem", "/etc/client-key.pem"}


def test_empty_and_default_config() -> None:
    for text in ("", "{}", "mirrors: {}\nconfigs: {}\n", "mirrors:\n"):
        config = RegistryConfig.from_yaml(text)
        assert config.endpoints("ghcr.io") == (Endpoint("https", "ghcr.io", "/v2", mirror=False),)
    assert RegistryConfig().endpoints("docker.io") == (Endpoint("https", "index.docker.io", "/v2"),)


def test_a_listed_upstream_is_not_tried_twice() -> None:
    config = RegistryConfig.from_yaml('mirrors: {"ghcr.io": {endpoint: ["https://ghcr.io", "https://m.io"]}}')
    assert [e.host for e in config.endpoints("ghcr.io")] == ["ghcr.io", "m.io"]


def test_http_only_when_written() -> None:
    assert parse_endpoint("http://plain:5000").scheme == "http"
    assert parse_endpoint("https://secure:5000").scheme == "https"
    assert parse_endpoint("bare:5000").scheme == "https"
    assert parse_endpoint("https://h/v2/").api_root == "/v2"
    assert parse_endpoint("https://h/prefix").api_root == "/prefix/v2"


@pytest.mark.parametrize(
    "text",
    [
        "- a list",
        "unknown: 1",
        "mirrors: [a]",
        "mirrors: {docker.io: {endpoint: https://not-a-list}}",
        "mirrors: {docker.io: {endpoints: []}}",
        "mirrors: {docker.io: {endpoint: [], rewrite: {'^(.*)': 'x/$1'}}}",
        "mirrors: {docker.io: {endpoint: ['ftp://mirror']}}",
        "mirrors: {docker.io: {endpoint: ['https://user:pw@mirror']}}",
        "mirrors: {docker.io: {endpoint: ['https://mirror?x=1']}}",
        "mirrors: {docker.io: {endpoint: ['https://mirror:99999']}}",
        "mirrors: {docker.io: {endpoint: ['']}}",
        "mirrors: {docker.io: {endpoint: [5]}}",
        "mirrors: {'bad host!': {endpoint: []}}",
        "mirrors: {docker.io: {endpoint: []}, Docker.IO: {endpoint: []}}",
        "configs: {h.example: {}, H.example: {}}",
        "configs: {'*': {auth: {username: a, password: b}}}",
        "configs: {h: {auth: {username: a}}}",
        "configs: {h: {auth: {user: a, password: b}}}",
        "configs: {h: {auth: {auth: '!!!notbase64'}}}",
        "configs: {h: {auth: {auth: " + base64.b64encode(b"nocolon").decode() + "}}}",
        "configs: {h: {tls: {insecure_skip_verify: 'yes'}}}",
        "configs: {h: {tls: {key_file: /k.pem}}}",
        "configs: {h: {tls: {ca: /ca.pem}}}",
        "configs: {h: {tls: {ca_file: 5}}}",
        "configs: {h: {auth: {identity_token: a, identitytoken: b}}}",
        "configs: {h: {}, h: {}}",  # duplicate key
        "configs: {h: [1]}",
        "mirrors: {docker.io: {endpoint: [a]}}\nmirrors: {}",  # duplicate top-level key
        "mirrors: {docker.io: {endpoint: [" + ", ".join(f"'https://m{i}'" for i in range(17)) + "]}}",
        "{{{",
    ],
)
def test_invalid_configs_are_rejected(text: str) -> None:
    with pytest.raises(PolicyError) as caught:
        RegistryConfig.from_yaml(text)
    assert caught.value.reason is Reason.CONFIG_INVALID


def test_oversized_config_is_a_limit_error() -> None:
    with pytest.raises(LimitError) as caught:
        RegistryConfig.from_yaml("#" * (1024 * 1024 + 1))
    assert caught.value.reason is Reason.LIMIT_EXCEEDED


def test_yaml_tags_are_not_constructed() -> None:
    with pytest.raises(ImprimaturError) as caught:
        RegistryConfig.from_yaml("mirrors: !!python/object/apply:os.system ['true']")
    assert caught.value.reason is Reason.CONFIG_INVALID


@pytest.mark.parametrize("alias", ["index.docker.io", "registry-1.docker.io"])
@pytest.mark.parametrize("alias_first", [True, False])
def test_docker_hub_listed_under_two_names_loads_and_docker_io_wins(alias: str, alias_first: bool) -> None:
    entries = [
        f"  {alias}:\n    endpoint: ['https://alias-mirror.internal']\n",
        "  docker.io:\n    endpoint: ['https://hub-mirror.internal']\n",
    ]
    configs = [
        f"  {alias}:\n    auth: {{username: aliasuser, password: p}}\n",
        "  docker.io:\n    auth: {username: hubuser, password: p}\n",
    ]
    order = slice(None) if alias_first else slice(None, None, -1)
    text = "mirrors:\n" + "".join(entries[order]) + "configs:\n" + "".join(configs[order])
    config = RegistryConfig.from_yaml(text)
    expected = (
        Endpoint("https", "hub-mirror.internal", "/v2", mirror=True),
        Endpoint("https", "index.docker.io", "/v2", mirror=False),
    )
    for name in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        assert config.endpoints(name) == expected
    hub = config.host_config("index.docker.io")
    assert hub is not None and hub.credential is not None and hub.credential.username == "hubuser"


def test_a_docker_hub_alias_alone_still_applies() -> None:
    config = RegistryConfig.from_yaml("mirrors: {index.docker.io: {endpoint: ['https://m.internal']}}")
    assert config.endpoints("docker.io")[0] == Endpoint("https", "m.internal", "/v2", mirror=True)
