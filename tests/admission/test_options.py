"""The server's environment: defaults, every variable, and malformed values."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.admission.options import ObjectRef, ServerOptions
from controller.errors import PolicyError, Reason


def test_defaults_match_the_chart() -> None:
    options = ServerOptions.from_env({})
    assert options.webhook_port == 8443
    assert options.tls_dir == Path("/etc/imprimatur/tls")
    assert options.health == ("0.0.0.0", 8080, "/healthz")  # noqa: S104
    assert options.metrics_port == 9090
    assert options.docker_config_secret is None
    assert options.standalone is True
    assert options.decision_timeout_seconds < 10  # answers before the chart's webhook timeoutSeconds


def test_every_variable_is_read(tmp_path: Path) -> None:
    options = ServerOptions.from_env(
        {
            "IMPRIMATUR_WEBHOOK_PORT": "9443",
            "IMPRIMATUR_WEBHOOK_ADDR": "127.0.0.1",
            "IMPRIMATUR_WEBHOOK_HOST": "imprimatur.imprimatur.svc",
            "IMPRIMATUR_TLS_DIR": str(tmp_path),
            "IMPRIMATUR_TLS_RELOAD_SECONDS": "2.5",
            "IMPRIMATUR_LIVENESS_ENDPOINT": "http://127.0.0.1:18080/ready",
            "IMPRIMATUR_METRICS_PORT": "0",
            "IMPRIMATUR_REGISTRY_CONFIG": "/etc/x/registries.yaml",
            "IMPRIMATUR_DOCKER_CONFIG": "/etc/x/config.json",
            "IMPRIMATUR_DOCKER_CONFIG_SECRET": "imprimatur/registry-creds",
            "IMPRIMATUR_DECISION_TIMEOUT_SECONDS": "4",
            "IMPRIMATUR_MAX_CONCURRENT_REVIEWS": "8",
            "IMPRIMATUR_CREDENTIALS_TTL_SECONDS": "0",
            "IMPRIMATUR_STANDALONE": "false",
            "IMPRIMATUR_LOG_LEVEL": "DEBUG",
        }
    )
    assert options.webhook_port == 9443
    assert options.webhook_addr == "127.0.0.1"
    assert options.webhook_host == "imprimatur.imprimatur.svc"
    assert options.tls_dir == tmp_path
    assert options.tls_files is None  # no files there: self-signed
    assert options.tls_reload_seconds == 2.5
    assert options.health == ("127.0.0.1", 18080, "/ready")
    assert options.metrics_port == 0
    assert options.registry_config == Path("/etc/x/registries.yaml")
    assert options.docker_config == Path("/etc/x/config.json")
    assert options.docker_config_secret == ObjectRef("imprimatur", "registry-creds")
    assert options.decision_timeout_seconds == 4
    assert options.max_concurrent_reviews == 8
    assert options.credentials_ttl_seconds == 0
    assert options.standalone is False
    assert options.log_level == "debug"


def test_tls_files_are_found(tmp_path: Path) -> None:
    (tmp_path / "tls.crt").write_text("x")
    (tmp_path / "tls.key").write_text("x")
    options = ServerOptions.from_env({"IMPRIMATUR_TLS_DIR": str(tmp_path)})
    assert options.tls_files == (tmp_path / "tls.crt", tmp_path / "tls.key", tmp_path / "ca.crt")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IMPRIMATUR_WEBHOOK_PORT", "https"),
        ("IMPRIMATUR_WEBHOOK_PORT", "70000"),
        ("IMPRIMATUR_DECISION_TIMEOUT_SECONDS", "60"),
        ("IMPRIMATUR_DECISION_TIMEOUT_SECONDS", "0"),
        ("IMPRIMATUR_MAX_CONCURRENT_REVIEWS", "0"),
        ("IMPRIMATUR_STANDALONE", "maybe"),
        ("IMPRIMATUR_LOG_LEVEL", "chatty"),
        ("IMPRIMATUR_LIVENESS_ENDPOINT", "https://0.0.0.0:8080/healthz"),
        ("IMPRIMATUR_LIVENESS_ENDPOINT", "http://0.0.0.0:port/healthz"),
        ("IMPRIMATUR_DOCKER_CONFIG_SECRET", "just-a-name"),
        ("IMPRIMATUR_DOCKER_CONFIG_SECRET", "Bad/Name"),
        ("IMPRIMATUR_DOCKER_CONFIG_SECRET", "a/b/c"),
    ],
)
def test_malformed_values_are_config_errors(name: str, value: str) -> None:
    with pytest.raises(PolicyError) as caught:
        ServerOptions.from_env({name: value})
    assert caught.value.reason == Reason.CONFIG_INVALID


def test_metrics_address_and_namespace() -> None:
    options = ServerOptions.from_env(
        {"IMPRIMATUR_METRICS_ADDR": "127.0.0.1", "IMPRIMATUR_NAMESPACE": "imprimatur"}
    )
    assert options.metrics_addr == "127.0.0.1"
    assert options.namespace == "imprimatur"
    assert ServerOptions.from_env({}).metrics_addr == "0.0.0.0"  # noqa: S104 - the default
    with pytest.raises(PolicyError) as raised:
        ServerOptions.from_env({"IMPRIMATUR_METRICS_ADDR": "0.0.0.0 --evil"})
    assert raised.value.reason == Reason.CONFIG_INVALID
