"""Issue 10, attack 7: an ImagePolicy edit in one namespace cannot empty everyone's cache.

Registry traffic is counted at the HTTP layer (every ``requests.Session.send`` to the registry's host,
which is how the registry client reaches it). After team-a's ImagePolicy is edited, team-b's next
review costs no registry request; neither does team-a's own, since verified evidence depends on the
digest, the signature repository and the trust root, not on the policies.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.admission.harness import (
    TRUSTED_SUBJECT,
    Images,
    RunningController,
    image_policy,
    pod,
    standard_policies,
)
from tests.adversarial.support import (
    ON_TIME_SECONDS,
    Lab,
    admit,
    apply_policies,
)
from tests.fixtures.registry import RegistryServer, TestPKI
from tests.kit.sigstore import SigstoreKit


class RequestCounter:
    """Counts HTTP requests sent through any ``requests.Session`` to one host."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.urls: list[str] = []
        self._lock = threading.Lock()

    def wrap(self, original: Any) -> Any:
        def send(session: requests.Session, request: requests.PreparedRequest, **kwargs: Any) -> Any:
            if request.url is not None and self.host in request.url:
                with self._lock:
                    self.urls.append(request.url)
            return original(session, request, **kwargs)

        return send

    def __len__(self) -> int:
        with self._lock:
            return len(self.urls)


@pytest.fixture(scope="module")
def server(lab: Lab, images: Images) -> Iterator[RunningController]:
    with lab.serve(
        "cache-tenancy", policies(images.host, lab.kit.trusted_root_json(), TRUSTED_SUBJECT)
    ) as srv:
        yield srv


def policies(host: str, trusted_root: bytes, team_a_subject: str) -> list[dict[str, object]]:
    return [
        *standard_policies(host, trusted_root),
        image_policy("team-a-extra", "team-a", [f"{host}/apps/**"], subject=team_a_subject),
    ]


@pytest.fixture
def counter(monkeypatch: pytest.MonkeyPatch, registry: RegistryServer) -> RequestCounter:
    counting = RequestCounter(registry.host)
    monkeypatch.setattr(requests.Session, "send", counting.wrap(requests.Session.send))
    return counting


def test_image_policy_edit_costs_other_namespaces_no_registry_request(
    server: RunningController,
    images: Images,
    registry_pki: TestPKI,
    sigstore_kit: SigstoreKit,
    counter: RequestCounter,
) -> None:
    ca = registry_pki.ca_file
    first = admit(server, pod("p", [images.signed, images.other_signed], namespace="team-b"), ca)
    assert first.allowed, first.message
    assert len(counter) > 0, "the cold review must have read the registry (the counter works)"
    warm_a = admit(server, pod("p", [images.signed, images.other_signed], namespace="team-a"), ca)
    assert warm_a.allowed, warm_a.message

    before = len(counter)
    # team-a's ImagePolicy now requires bob: images.other_signed carries his signature, images.signed not
    apply_policies(server, policies(images.host, sigstore_kit.trusted_root_json(), "bob@example.com"))

    again = admit(server, pod("p", [images.signed, images.other_signed], namespace="team-b"), ca)
    assert again.allowed, again.message
    assert again.seconds < ON_TIME_SECONDS
    assert len(counter) == before, counter.urls[before:]

    edited = admit(server, pod("p", [images.other_signed], namespace="team-a"), ca)
    assert edited.allowed, edited.message  # the edit took effect in team-a ...
    denied = admit(server, pod("p", [images.signed], namespace="team-a"), ca)
    assert not denied.allowed
    assert denied.reason == "IdentityMismatch", denied.message
    assert len(counter) == before, counter.urls[before:]  # ... decided from the cached evidence
