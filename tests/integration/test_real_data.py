"""Real production cosign signatures, served by the real local registry under their original names
(through a registries.yaml mirror), verified end to end by the CLI with the EMBEDDED public-good root.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.cli import EXIT_OK, EXIT_REJECTED, main
from tests.fixtures.registry import RegistryServer
from tests.integration.realdata import (
    CASES,
    FLAVIO,
    RealCase,
    mirrors_yaml,
    push_negative_cases,
    push_real_case,
)


@pytest.fixture(scope="module")
def real_registry(registry: RegistryServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Pushes every real case once; yields the registries.yaml that mirrors their hosts locally."""
    for case in (*CASES, FLAVIO):
        push_real_case(registry, case)
    config = tmp_path_factory.mktemp("realdata") / "registries.yaml"
    config.write_text(mirrors_yaml(registry))
    yield config


def _verify(config: Path, *args: str) -> tuple[int, dict[str, object]]:
    out = io.StringIO()
    code = main(["verify", "--registry-config", str(config), "-o", "json", *args], out=out)
    return code, json.loads(out.getvalue()) if out.getvalue() else {}


def _reasons(result: dict[str, object]) -> list[str]:
    images = result["images"]
    assert isinstance(images, list)
    return [str(image["reason"]) for image in images]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_real_signature_verifies_with_the_embedded_root(real_registry: Path, case: RealCase) -> None:
    code, result = _verify(
        real_registry,
        case.image,
        "--certificate-identity",
        case.subject,
        "--certificate-oidc-issuer",
        case.issuer,
    )
    assert code == EXIT_OK, result
    (image,) = result["images"]  # type: ignore[misc]
    assert image["reason"] == "Verified"
    assert image["digest"] == case.digest
    (signer,) = image["signatures"]
    assert (signer["subject"], signer["issuer"], signer["logIndex"]) == (
        case.subject,
        case.issuer,
        case.log_index,
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_real_signature_rejected_for_another_identity(real_registry: Path, case: RealCase) -> None:
    code, result = _verify(
        real_registry,
        case.image,
        "--certificate-identity",
        "someone-else@example.com",
        "--certificate-oidc-issuer",
        case.issuer,
    )
    assert code == EXIT_REJECTED
    assert _reasons(result) == ["IdentityMismatch"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_real_signature_rejected_for_another_issuer(real_registry: Path, case: RealCase) -> None:
    code, result = _verify(
        real_registry,
        case.image,
        "--certificate-identity",
        case.subject,
        "--certificate-oidc-issuer",
        "https://issuer.attacker.example",
    )
    assert code == EXIT_REJECTED
    assert _reasons(result) == ["IdentityMismatch"]


def test_unanchored_regex_is_anchored(real_registry: Path) -> None:
    """cosign's unanchored 'philipp.belitz' would match; ours needs the whole subject."""
    case = CASES[0]
    code, result = _verify(
        real_registry,
        case.image,
        "--certificate-identity-regexp",
        "philipp\\.belitz",
        "--certificate-oidc-issuer",
        case.issuer,
    )
    assert code == EXIT_REJECTED
    assert _reasons(result) == ["IdentityMismatch"]


def test_missing_on_mirror_falls_back_to_unreachable_upstream(real_registry: Path) -> None:
    """The mirror has no .sig for this digest, so the upstream is asked next, as containerd does; it
    is unreachable here (no internet): a transient denial, never an allow."""
    case = CASES[0]
    image = case.image[: -len(case.digest)] + "sha256:" + "0" * 64
    code, result = _verify(
        real_registry, image, "--certificate-identity", case.subject, "--certificate-oidc-issuer", case.issuer
    )
    assert code == EXIT_REJECTED
    assert _reasons(result) == ["RegistryUnavailable"]


def test_2021_rekord_case_rejected_by_default_like_cosign(real_registry: Path) -> None:
    code, result = _verify(
        real_registry,
        FLAVIO.image,
        "--certificate-identity",
        FLAVIO.subject,
        "--certificate-oidc-issuer-regexp",
        ".*",
    )
    assert code == EXIT_REJECTED
    assert _reasons(result) == ["SCTMissing"]


def test_2021_rekord_case_verifies_only_with_explicit_opt_outs(real_registry: Path) -> None:
    args = ["--certificate-identity", FLAVIO.subject, "--certificate-oidc-issuer-regexp", ".*"]
    code, result = _verify(real_registry, FLAVIO.image, *args, "--insecure-ignore-sct")
    assert code == EXIT_REJECTED
    assert _reasons(result) == ["IssuerMissing"]
    code, result = _verify(
        real_registry, FLAVIO.image, *args, "--insecure-ignore-sct", "--allow-missing-issuer"
    )
    assert code == EXIT_OK, result
    (image,) = result["images"]  # type: ignore[misc]
    assert image["signatures"][0]["logIndex"] == FLAVIO.log_index
    assert image["warnings"], "the opt-outs must be visible as warnings"


def test_key_based_signatures_are_not_keyless_evidence(registry: RegistryServer, real_registry: Path) -> None:
    for image in push_negative_cases(registry):
        code, result = _verify(
            real_registry,
            image,
            "--certificate-identity-regexp",
            ".*",
            "--certificate-oidc-issuer-regexp",
            ".*",
        )
        assert code == EXIT_REJECTED
        assert _reasons(result) == ["NotKeylessSignature"]


def test_text_output_shows_what_cosign_verify_shows(real_registry: Path) -> None:
    case = CASES[0]
    out = io.StringIO()
    code = main(
        [
            "verify",
            "--registry-config",
            str(real_registry),
            case.image,
            "--certificate-identity",
            case.subject,
            "--certificate-oidc-issuer",
            case.issuer,
        ],
        out=out,
    )
    assert code == EXIT_OK
    text = out.getvalue()
    for expected in (case.subject, case.issuer, str(case.log_index), "2024-05-30T15:18:17"):
        assert expected in text
