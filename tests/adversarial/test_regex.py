"""Issue 10, attack 2: a regular expression in a namespaced policy cannot freeze the controller.

Under Python's backtracking ``re``, ``ht(?:.|.)*!`` against an issuer URL, or ``(a+)+$`` against a long
subject, held the GIL for seconds and stalled every review in the cluster. With RE2 each decides in
linear time; a review in another namespace is answered on time meanwhile. A pattern only Python accepts
(a lookahead) makes the policy invalid: ``PolicyInvalid`` for what it covers, in its namespace only.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.admission.harness import (
    TRUSTED_SUBJECT,
    RunningController,
    cluster_policy,
    image_policy,
    pod,
    trust_root,
)
from tests.adversarial.support import (
    ON_TIME_SECONDS,
    Lab,
    admit,
    apply_policies,
    push_signed,
)
from tests.fixtures.registry import RegistryServer, TestPKI
from tests.kit.sigstore import GITHUB_OAUTH_ISSUER, SigstoreKit

LONG_SUBJECT = "a" * 80 + "@example.com"  # (a+)+$ backtracks 2^80 ways before failing on "@"
WELL_UNDER_A_SECOND = 0.5
PATHOLOGICAL = {
    "issuer": {"issuerRegExp": "ht(?:.|.)*!", "subject": LONG_SUBJECT},
    "subject": {"issuer": GITHUB_OAUTH_ISSUER, "subjectRegExp": "(a+)+$"},
}


@dataclass(frozen=True)
class RegexImages:
    long_subject: list[str]  # signed by LONG_SUBJECT, one per attack so each is decided cold
    alice: str  # signed by alice


@pytest.fixture(scope="module")
def regex_images(registry: RegistryServer, sigstore_kit: SigstoreKit) -> RegexImages:
    return RegexImages(
        long_subject=[push_signed(registry, sigstore_kit, f"rx/long{i}", LONG_SUBJECT) for i in range(4)],
        alice=push_signed(registry, sigstore_kit, "rx/alice"),
    )


def base_documents(host: str, trusted_root: bytes) -> list[dict[str, object]]:
    """Any signer of the test kit may run rx/** cluster-wide; team-a adds a pathological requirement."""
    anyone = [{"issuerRegExp": ".*", "subjectRegExp": ".*"}]
    return [
        trust_root(trusted_root),
        cluster_policy("rx", [f"{host}/rx/**"], identities=anyone),
        image_policy("issuer-bomb", "team-a", [f"{host}/rx/**"], subject=TRUSTED_SUBJECT,
                     identities=[PATHOLOGICAL["issuer"]]),
        image_policy("subject-bomb", "team-s", [f"{host}/rx/**"], subject=TRUSTED_SUBJECT,
                     identities=[PATHOLOGICAL["subject"]]),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def server(lab: Lab, regex_images: RegexImages) -> Iterator[RunningController]:
    documents = base_documents(lab.registry.host, lab.kit.trusted_root_json())
    # team-b's signed image is cached before any attack
    with lab.serve("regex", documents, warm=regex_images.alice, warm_namespace="team-b") as srv:
        yield srv


@pytest.mark.parametrize(("namespace", "index"), [("team-a", 0), ("team-s", 1)], ids=["issuer", "subject"])
def test_pathological_pattern_decides_fast_and_stalls_nobody(
    server: RunningController, regex_images: RegexImages, registry_pki: TestPKI, namespace: str, index: int
) -> None:
    ca = registry_pki.ca_file
    image = regex_images.long_subject[index]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        attack = pool.submit(admit, server, pod("bomb", [image], namespace=namespace), ca)
        other = pool.submit(admit, server, pod("bystander", [regex_images.alice], namespace="team-b"), ca)
        attacked, bystander = attack.result(), other.result()
    assert not attacked.allowed
    assert attacked.reason == "IdentityMismatch", attacked.message
    assert attacked.seconds < WELL_UNDER_A_SECOND + ON_TIME_SECONDS  # a cold decision: registry reads
    assert bystander.allowed, bystander.message
    assert bystander.seconds < ON_TIME_SECONDS


def test_pattern_match_itself_takes_milliseconds(
    server: RunningController, regex_images: RegexImages, registry_pki: TestPKI
) -> None:
    """The same image, its evidence cached by another namespace: what is left is policy evaluation."""
    ca = registry_pki.ca_file
    image = regex_images.long_subject[2]
    assert admit(server, pod("warm", [image], namespace="team-c"), ca).allowed  # evidence now cached
    for namespace in ("team-a", "team-s"):
        attacked = admit(server, pod("bomb", [image], namespace=namespace), ca)
        assert attacked.reason == "IdentityMismatch", attacked.message
        assert attacked.seconds < WELL_UNDER_A_SECOND


def test_python_only_pattern_invalidates_the_policy_in_its_namespace_only(
    server: RunningController,
    regex_images: RegexImages,
    registry: RegistryServer,
    registry_pki: TestPKI,
    sigstore_kit: SigstoreKit,
) -> None:
    ca = registry_pki.ca_file
    lookahead = image_policy(
        "lookahead", "team-l", [f"{registry.host}/rx/**"], subject=TRUSTED_SUBJECT,
        identities=[{"issuer": GITHUB_OAUTH_ISSUER, "subjectRegExp": "(?=a)alice@example\\.com"}],
    )  # fmt: skip
    apply_policies(server, [*base_documents(registry.host, sigstore_kit.trusted_root_json()), lookahead])
    entries = {e.key.name: e for e in server.controller.state.policy_entries}
    assert not entries["lookahead"].ready  # RE2 refuses the lookahead: the policy does not compile
    denied = admit(server, pod("p", [regex_images.alice], namespace="team-l"), ca)
    assert not denied.allowed
    assert denied.reason == "PolicyInvalid", denied.message
    assert "lookahead" in denied.message
    elsewhere = admit(server, pod("p", [regex_images.alice], namespace="team-b"), ca)
    assert elsewhere.allowed, elsewhere.message
    assert elsewhere.seconds < ON_TIME_SECONDS
