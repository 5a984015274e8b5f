"""Evidence by what a policy wants: the ``.att`` tag only when attestations are needed, keys in the cache
key, and a slow ``.att`` that never holds up a decision which does not need it.

Against the real docker-registry over TLS, with every request counted; a scripted mirror in front of it
where a registry must be slow.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from controller.config import Settings
from controller.engine.evidence import VERIFIERS, Evidence
from controller.engine.lanes import LaneLimits, Lanes
from controller.engine.roots import utc_now
from controller.engine.sources import DECISION_DEADLINE, Job, Sources, Want
from controller.errors import Reason
from controller.model import COSIGN_SIGNATURE_PREDICATE, Digest, ImageRef
from controller.registry import RegistryClient, RegistryConfig, parse_reference
from controller.registry.signatures import DSSE_ENVELOPE
from controller.verify import TrustRoot
from tests.fixtures.registry import RegistryServer
from tests.kit.attest import attest_image, key_sign_image, trusted_key
from tests.kit.sigstore import KeyType, SigstoreKit, generate_key
from tests.registry.fakes import Route, scripted

SLSA = "https://slsa.dev/provenance/v1"


class CountingSession(requests.Session):
    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False
        self.sent: collections.Counter[tuple[str, str]] = collections.Counter()
        self._lock = threading.Lock()

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        with self._lock:
            self.sent[(str(request.method), urlsplit(str(request.url)).path)] += 1
        return super().send(request, **kwargs)

    def total(self) -> int:
        with self._lock:
            return sum(self.sent.values())

    def att_reads(self) -> int:
        with self._lock:
            return sum(n for (_, path), n in self.sent.items() if path.endswith(".att"))


class Published:
    def __init__(self, ref: ImageRef, digest: Digest) -> None:
        self.ref, self.digest = ref, digest


@pytest.fixture(scope="module")
def root(sigstore_kit: SigstoreKit) -> TrustRoot:
    return TrustRoot.from_json(sigstore_kit.trusted_root_json(), "test-kit")


def _publish(registry: RegistryServer, kit: SigstoreKit, repo: str, *, key: Any = None) -> Published:
    digest = registry.push_random_image(repo, "v1")
    ref = f"{registry.host}/{repo}"
    layer = kit.sign_image(str(digest), ref) if key is None else key_sign_image(kit, str(digest), ref, key)
    registry.push_signature_manifest(repo, f"sha256-{digest.hex}.sig", [(layer.payload, layer.annotations)])
    att = attest_image(kit, str(digest), ref, predicate_type=SLSA, predicate={"builder": {"id": "ci"}})
    registry.push_signature_manifest(
        repo, f"sha256-{digest.hex}.att", [(att.payload, att.annotations)], layer_media_type=DSSE_ENVELOPE
    )
    return Published(parse_reference(f"{ref}@{digest}"), digest)


@pytest.fixture
def make(registry: RegistryServer) -> Iterator[Any]:
    made: list[Lanes] = []

    def build(yaml_text: str | None = None, **settings: Any) -> tuple[Sources, CountingSession]:
        session = CountingSession()
        config = RegistryConfig.from_yaml(yaml_text or registry.registries_yaml())
        lanes = Lanes(LaneLimits())
        made.append(lanes)
        sources = Sources(
            registry=RegistryClient(config, session=session),
            settings=Settings(**settings),
            lanes=lanes,
            clock=utc_now,
        )
        return sources, session

    yield build
    for lanes in made:
        lanes.close()


def _job(image: Published) -> Job:
    return Job(str(image.ref), image.ref, image.digest, "-", None)


def _evidence(sources: Sources, image: Published, want: Want) -> tuple[Evidence, float]:
    return asyncio.run(sources.evidence_for(_job(image), None, want))


def test_the_att_tag_is_read_only_when_attestations_are_wanted(
    make: Any, registry: RegistryServer, sigstore_kit: SigstoreKit, root: TrustRoot
) -> None:
    image = _publish(registry, sigstore_kit, "sources/att")
    sources, session = make()

    plain, _ = _evidence(sources, image, Want(root))
    assert [v.kind for v in plain.verified] == ["signature"]
    assert session.att_reads() == 0

    wanted, expires = _evidence(sources, image, Want(root, attestations=True))
    assert expires > 0  # cached
    assert sorted(v.kind for v in wanted.verified) == ["attestation", "signature"]
    (attestation,) = [v for v in wanted.verified if v.kind == "attestation"]
    assert attestation.predicate_type == SLSA
    assert attestation.predicate_type != COSIGN_SIGNATURE_PREDICATE
    assert b'"builder"' in attestation.statement
    assert session.att_reads() == 1

    before = session.total()
    assert _evidence(sources, image, Want(root))[0] == plain
    assert _evidence(sources, image, Want(root, attestations=True))[0] == wanted
    assert session.total() == before  # both answered from the evidence cache


def test_the_key_set_is_part_of_the_evidence_key(
    make: Any, registry: RegistryServer, sigstore_kit: SigstoreKit, root: TrustRoot
) -> None:
    signer, stranger = generate_key(KeyType.ECDSA_P256), generate_key(KeyType.ED25519)
    image = _publish(registry, sigstore_kit, "sources/keyed", key=signer)
    sources, session = make()

    unkeyed, _ = _evidence(sources, image, Want(root))
    assert unkeyed.verified == ()
    assert unkeyed.failures  # a key-signed layer and no key to check it with

    both = (trusted_key(signer, "a"), trusted_key(stranger, "b"))
    keyed, _ = _evidence(sources, image, Want(root, keys=both))
    (verified,) = keyed.verified
    assert verified.key_id.startswith("sha256:")
    assert (verified.subject, verified.issuer) == ("", "")

    before = session.total()
    # the same keys in another order, with another source: the same evidence, no request
    same = (trusted_key(stranger, "c"), trusted_key(signer, "d"), trusted_key(signer, "e"))
    assert _evidence(sources, image, Want(root, keys=same))[0] == keyed
    assert session.total() == before

    wrong, _ = _evidence(sources, image, Want(root, keys=(trusted_key(stranger),)))
    assert session.total() > before  # another key set is other evidence: verified afresh
    assert wrong.verified == ()
    assert {f.reason for f in wrong.failures} == {Reason.KEY_MISMATCH}


def test_a_slow_att_tag_never_delays_what_does_not_need_it(
    make: Any, registry: RegistryServer, sigstore_kit: SigstoreKit, root: TrustRoot
) -> None:
    image = _publish(registry, sigstore_kit, "sources/slow")
    with scripted() as mirror:
        # the .att manifest drips a byte every 0.2 s; everything else 404s there and comes from upstream
        mirror.routes[f"/v2/sources/slow/manifests/sha256-{image.digest.hex}.att"] = Route(
            body=b"{" + b" " * 200 + b"}", drip=0.2, headers={"Content-Type": "application/json"}
        )
        sources, _ = make(registry.registries_yaml({registry.host: [mirror.url]}))

        async def timed(want: Want) -> tuple[tuple[Evidence, float], float]:
            started = time.monotonic()
            result = await sources.evidence_for(_job(image), None, want)
            return result, time.monotonic() - started

        async def both() -> list[tuple[tuple[Evidence, float], float]]:
            DECISION_DEADLINE.set(time.monotonic() + 2.0)
            return list(await asyncio.gather(timed(Want(root, attestations=True)), timed(Want(root))))

        (slow, slow_seconds), (fast, fast_seconds) = asyncio.run(both())

    assert fast_seconds < 1.0, fast_seconds
    assert [v.kind for v in fast[0].verified] == ["signature"]
    assert fast[1] > 0  # cached
    assert slow_seconds >= 1.5, slow_seconds  # it ran until the decision's deadline ...
    assert slow[1] == 0.0  # ... and what it found is not cached
    assert any(f.transient and f.reason is Reason.LIMIT_EXCEEDED for f in slow[0].failures)
    assert all(v.kind == "signature" for v in slow[0].verified)


def test_every_candidate_kind_has_a_verifier() -> None:
    assert set(VERIFIERS) == {"simplesigning", "bundle", "attestation"}
