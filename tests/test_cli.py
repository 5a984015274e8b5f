"""The CLI's own settings: the decision deadline a person at a terminal gets (``--timeout``)."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from controller.cli import EXIT_REJECTED, EXIT_USAGE, main
from tests.fixtures.hostile import HostileRegistry
from tests.fixtures.registry import TestPKI

IDENTITY = ["--certificate-identity", "a@b.c", "--certificate-oidc-issuer", "https://accounts.google.com"]


@pytest.mark.parametrize("value", ["0", "-1", "soon", "7200"])
def test_a_bad_timeout_is_a_usage_error(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["verify", "--timeout", value, *IDENTITY, "example.com/app:1"])
    assert caught.value.code == EXIT_USAGE
    assert "--timeout" in capsys.readouterr().err


def test_the_timeout_bounds_a_verify_against_a_hung_registry(registry_pki: TestPKI, tmp_path: Path) -> None:
    with HostileRegistry("hang", tls=registry_pki) as hostile:
        _verify_hung(hostile, tmp_path)


def _verify_hung(hostile: HostileRegistry, tmp_path: Path) -> None:
    config = tmp_path / "registries.yaml"
    config.write_text(hostile.registries_yaml())
    out = io.StringIO()
    started = time.monotonic()
    code = main(
        [
            "verify",
            "--timeout",
            "1",
            "--registry-config",
            str(config),
            *IDENTITY,
            f"{hostile.host}/app@sha256:" + "1" * 64,
        ],
        out=out,
    )
    assert code == EXIT_REJECTED
    assert time.monotonic() - started < 3.0
    assert "LimitExceeded" in out.getvalue()
