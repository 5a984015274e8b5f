"""Issue 10, attack 1: a namespaced ImagePolicy can only ADD requirements, never open the cluster's door.

The matrix {no / passing / failing ClusterImagePolicy} x {no / stricter / looser / warn-mode
ImagePolicy} x {default deny, default allow} x {image signed by alice, unsigned}, through the real
webhook, against the explicit truth table :data:`TABLE`. Plus a ClusterImagePolicy scoped to
``namespaces: [payments]``: in payments it governs; elsewhere the image falls to the default.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.admission.harness import (
    WRONG_SUBJECT,
    RunningController,
    cluster_policy,
    image_policy,
    pod,
    trust_root,
)
from tests.adversarial.support import (
    Lab,
    admit,
    push_signed,
    push_unsigned,
)
from tests.fixtures.registry import RegistryServer, TestPKI
from tests.kit.sigstore import SigstoreKit

BOB = "bob@example.com"

# cluster policy | namespace (its ImagePolicy) | default | image | expected: allow, warn (allowed with
# the warn-mode ImagePolicy's warning), or the reason code of the denial.
TABLE = """
none plain  deny  signed   NoMatchingPolicy
none strict deny  signed   NoMatchingPolicy
none loose  deny  signed   NoMatchingPolicy
none warned deny  signed   NoMatchingPolicy
pass plain  deny  signed   allow
pass strict deny  signed   IdentityMismatch
pass loose  deny  signed   allow
pass warned deny  signed   warn
fail plain  deny  signed   IdentityMismatch
fail strict deny  signed   IdentityMismatch
fail loose  deny  signed   IdentityMismatch
fail warned deny  signed   IdentityMismatch
none plain  allow signed   allow
none strict allow signed   IdentityMismatch
none loose  allow signed   allow
none warned allow signed   warn
pass plain  allow signed   allow
pass strict allow signed   IdentityMismatch
pass loose  allow signed   allow
pass warned allow signed   warn
fail plain  allow signed   IdentityMismatch
fail strict allow signed   IdentityMismatch
fail loose  allow signed   IdentityMismatch
fail warned allow signed   IdentityMismatch
none plain  deny  unsigned NoMatchingPolicy
none strict deny  unsigned NoMatchingPolicy
none loose  deny  unsigned NoMatchingPolicy
none warned deny  unsigned NoMatchingPolicy
pass plain  deny  unsigned SignatureNotFound
pass strict deny  unsigned SignatureNotFound
pass loose  deny  unsigned SignatureNotFound
pass warned deny  unsigned SignatureNotFound
fail plain  deny  unsigned SignatureNotFound
fail strict deny  unsigned SignatureNotFound
fail loose  deny  unsigned SignatureNotFound
fail warned deny  unsigned SignatureNotFound
none plain  allow unsigned allow
none strict allow unsigned SignatureNotFound
none loose  allow unsigned SignatureNotFound
none warned allow unsigned warn
pass plain  allow unsigned SignatureNotFound
pass strict allow unsigned SignatureNotFound
pass loose  allow unsigned SignatureNotFound
pass warned allow unsigned SignatureNotFound
fail plain  allow unsigned SignatureNotFound
fail strict allow unsigned SignatureNotFound
fail loose  allow unsigned SignatureNotFound
fail warned allow unsigned SignatureNotFound
"""
ROWS = [tuple(line.split()) for line in TABLE.strip().splitlines()]


@dataclass(frozen=True)
class MatrixImages:
    """A signed (alice) and an unsigned image under each repository: adv/{none,pass,fail,pay}/."""

    signed: dict[str, str]
    unsigned: dict[str, str]


@pytest.fixture(scope="module")
def matrix_images(registry: RegistryServer, sigstore_kit: SigstoreKit) -> MatrixImages:
    repos = ("none", "pass", "fail", "pay")
    return MatrixImages(
        signed={r: push_signed(registry, sigstore_kit, f"adv/{r}/signed") for r in repos},
        unsigned={r: push_unsigned(registry, f"adv/{r}/unsigned") for r in repos},
    )


def documents(host: str, trusted_root: bytes) -> list[dict[str, object]]:
    every = [f"{host}/adv/**"]
    return [
        trust_root(trusted_root),
        cluster_policy("pass", [f"{host}/adv/pass/**"]),
        cluster_policy("fail", [f"{host}/adv/fail/**"], subject=WRONG_SUBJECT),
        cluster_policy("payments-only", [f"{host}/adv/pay/**"], namespaces=["payments"]),
        image_policy("stricter", "strict", every, subject=BOB),
        image_policy(
            "looser", "loose", every, subject=BOB, identities=[{"issuerRegExp": ".*", "subjectRegExp": ".*"}]
        ),
        image_policy("warned", "warned", every, subject=BOB, mode="warn"),
    ]


@pytest.fixture(scope="module")
def servers(lab: Lab) -> Iterator[dict[str, RunningController]]:
    """Two controllers on the same policy files: one with the default deny, one with default allow."""
    with lab.serve_by_default(
        "tenancy", documents(lab.registry.host, lab.kit.trusted_root_json())
    ) as started:
        yield started


def test_truth_table_is_complete() -> None:
    keys = {row[:4] for row in ROWS}
    assert len(keys) == len(ROWS) == 3 * 4 * 2 * 2


@pytest.mark.parametrize("row", ROWS, ids=["-".join(row) for row in ROWS])
def test_namespace_policy_only_adds_requirements(
    servers: dict[str, RunningController],
    matrix_images: MatrixImages,
    registry_pki: TestPKI,
    row: tuple[str, ...],
) -> None:
    cluster, namespace, default, kind, expected = row
    srv = servers[default]
    image = (matrix_images.signed if kind == "signed" else matrix_images.unsigned)[cluster]
    answer = admit(srv, pod("p", [image], namespace=namespace), registry_pki.ca_file)
    if expected in ("allow", "warn"):
        assert answer.allowed, answer.message
        warned = [w for w in answer.warnings if "warned" in w]
        assert bool(warned) == (expected == "warn"), answer.warnings
    else:
        assert not answer.allowed
        assert answer.reason == expected, answer.message
        assert answer.message.startswith(f"{expected}: {image}: ")


@pytest.mark.parametrize("default", ["deny", "allow"])
@pytest.mark.parametrize("namespace", ["payments", "elsewhere"])
def test_cluster_policy_scoped_to_namespaces(
    servers: dict[str, RunningController],
    matrix_images: MatrixImages,
    registry_pki: TestPKI,
    namespace: str,
    default: str,
) -> None:
    srv = servers[default]
    signed = admit(srv, pod("p", [matrix_images.signed["pay"]], namespace=namespace), registry_pki.ca_file)
    unsigned_image = matrix_images.unsigned["pay"]
    unsigned = admit(srv, pod("p", [unsigned_image], namespace=namespace), registry_pki.ca_file)
    if namespace == "payments":  # the policy governs: alice's signature is required
        assert signed.allowed, signed.message
        assert not unsigned.allowed
        assert unsigned.reason == "SignatureNotFound", unsigned.message
    elif default == "deny":  # outside payments no ClusterImagePolicy matches: the default decides
        assert (signed.allowed, signed.reason) == (False, "NoMatchingPolicy"), signed.message
        assert (unsigned.allowed, unsigned.reason) == (False, "NoMatchingPolicy"), unsigned.message
    else:
        assert signed.allowed, signed.message
        assert unsigned.allowed, unsigned.message
        assert unsigned.warnings, "an image allowed by the default says so"
