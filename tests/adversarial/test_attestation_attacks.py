"""Issue 7 through the real webhook: a hostile ``.att`` tag, and hostile CEL conditions in an ImagePolicy.

The images and their ``.sig`` are real (the session docker-registry over TLS). A scripted mirror in front
of it answers only the ``.att`` manifests of the ``attack/`` images, with hostility (5000 layers, a layer
claiming 1 GiB, an endless manifest, no answer at all); every other path 404s there and comes from the
upstream. Namespace ``attested`` has an ImagePolicy that requires an SLSA provenance attestation; every
other namespace is governed by signature-only ClusterImagePolicies.

* A review in ``attested`` is denied within the deadline with the fetch failure's own reason
  (``LimitExceeded``), naming the attestation and the ``.att`` tag; never a plain ``AttestationMissing``.
* While a burst of such reviews hangs on the ``.att`` tag, a cached review in another namespace is
  answered in under a second, and cold signature-only reviews (the attacked image itself, and a new
  image) within a few seconds.
* A hostile CEL condition in an ImagePolicy is refused (``PolicyInvalid``, in its namespace only) or fails
  by its cost bound (``AttestationConditionFailed``) over a huge statement, quickly, while other
  namespaces are answered on time; a sane condition over the same attestation admits.
"""

from __future__ import annotations

import concurrent.futures
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from controller.model import Digest
from controller.registry.manifest import OCI_MANIFEST
from controller.registry.signatures import DSSE_ENVELOPE
from tests.admission.harness import (
    Images,
    RunningController,
    cluster_policy,
    image_policy,
    pod,
    standard_policies,
)
from tests.adversarial.support import (
    ON_TIME_SECONDS,
    Answered,
    Lab,
    admit,
    apply_policies,
    att_layer,
    att_manifest,
    controller_serving,
    endless_json,
    push_signed,
)
from tests.fixtures.registry import RegistryServer
from tests.kit.attest import attest_image
from tests.kit.gojson import JSONValue
from tests.kit.sigstore import Identity, SigstoreKit
from tests.registry.fakes import Responder, Route, ScriptedServer, Seen, scripted

DEADLINE_SECONDS = 2.0
SLACK_SECONDS = 1.0
COLD_SECONDS = 3.0
HANG_SECONDS = 6.0  # a tarpit answer gives up by itself after this (the teardown ends it sooner)
FLOODED = 4  # images whose .att tag is hostile
BURST = 12  # concurrent attacking reviews
SLSA = "https://slsa.dev/provenance/v1"
GHA = "https://actions.github.io/buildtypes/workflow/v1"
ALICE = "alice@example.com"
TOOK = re.compile(r"after (\d+\.\d)s")
HUGE_ITEMS = 100_000  # a statement of about 0.6 MB: within every byte bound, far past the cost bound


# --- the world: images, the hostile mirror, the controller


@dataclass(frozen=True)
class World:
    host: str
    flooded: tuple[tuple[str, Digest], ...]  # (reference, digest): signed; .att answered by the mirror
    attested: str  # signed, with a real .att (SLSA, built by GitHub Actions)
    huge: str  # signed, with a real .att whose statement holds HUGE_ITEMS numbers
    mirror: ScriptedServer
    hang: threading.Event  # set at teardown: every hanging answer ends

    def att_path(self, digest: Digest, index: int) -> str:
        return f"/v2/attack/flood{index}/manifests/sha256-{digest.hex}.att"

    def att_reads(self) -> int:
        return sum(1 for p in self.mirror.paths() if p.endswith(".att") and "/attack/flood" in p)


def _attest(registry: RegistryServer, kit: SigstoreKit, repo: str, predicate: JSONValue) -> str:
    reference = push_signed(registry, kit, repo)
    digest = reference.rsplit("@", 1)[1]
    att = attest_image(
        kit,
        digest,
        f"{registry.host}/{repo}",
        predicate_type=SLSA,
        predicate=predicate,
        identity=Identity.email(ALICE),
    )
    registry.push_signature_manifest(
        repo,
        f"sha256-{digest.split(':', 1)[1]}.att",
        [(att.payload, att.annotations)],
        layer_media_type=DSSE_ENVELOPE,
    )
    return reference


@pytest.fixture(scope="module")
def world(registry: RegistryServer, sigstore_kit: SigstoreKit) -> Iterator[World]:
    flooded = []
    for i in range(FLOODED):
        reference = push_signed(registry, sigstore_kit, f"attack/flood{i}")
        flooded.append((reference, Digest.parse(reference.rsplit("@", 1)[1])))
    attested = _attest(registry, sigstore_kit, "celatk/good", {"buildDefinition": {"buildType": GHA}})
    huge = _attest(
        registry,
        sigstore_kit,
        "celatk/huge",
        {"buildDefinition": {"buildType": GHA}, "l": list(range(HUGE_ITEMS))},
    )
    hang = threading.Event()
    with scripted() as mirror:
        yield World(registry.host, tuple(flooded), attested, huge, mirror, hang)
        hang.set()


PATHOLOGICAL = (
    "predicate.l.all(a, predicate.l.all(b, predicate.l.all(c, predicate.l.all(d, predicate.l.all(e, true)))))"
)
COSTLY = "predicate.l.map(a, predicate.l.map(b, a + b)).size() > 0"  # compiles; quartic in the list


def _provenance(*conditions: str) -> list[dict[str, object]]:
    entry: dict[str, object] = {"name": "provenance", "predicateType": SLSA}
    if conditions:
        entry["conditions"] = [
            {"expression": c, "message": f"condition {i}"} for i, c in enumerate(conditions)
        ]
    return [entry]


def _documents(lab: Lab, world: World) -> list[dict[str, object]]:
    """The valid policies: what the controller loads from its file at start."""
    host = world.host
    attack, cel = [f"{host}/attack/**"], [f"{host}/celatk/**"]
    return [
        *standard_policies(host, lab.kit.trusted_root_json()),
        cluster_policy("attack-signed", attack),  # every namespace: a signature by alice
        cluster_policy("celatk-signed", cel),
        image_policy("needs-provenance", "attested", attack, subject=ALICE, attestations=_provenance()),
        image_policy(
            "sane-condition",
            "cel-ok",
            cel,
            subject=ALICE,
            attestations=_provenance(f'predicate.buildDefinition.buildType == "{GHA}"'),
        ),
        image_policy("costly-condition", "cel-costly", cel, subject=ALICE, attestations=_provenance(COSTLY)),
    ]


@pytest.fixture(scope="module")
def server(lab: Lab, world: World, images: Images) -> Iterator[RunningController]:
    """The controller; then a tenant's ImagePolicy with a pathological condition is applied, as it would
    be after a ``kubectl apply`` past validation (the CRD schema cannot judge a CEL condition's cost)."""
    registries = lab.registry.registries_yaml({world.host: [world.mirror.url]})
    documents = _documents(lab, world)
    pathological = image_policy(
        "pathological-condition", "cel-refused", [f"{world.host}/celatk/**"], subject=ALICE,
        attestations=_provenance(PATHOLOGICAL),
    )  # fmt: skip
    with controller_serving(
        lab.tmp.mktemp("att-attacks"),
        lab.pki,
        documents,
        registries=registries,
        decision_timeout_seconds=DEADLINE_SECONDS,
    ) as srv:
        apply_policies(srv, [*documents, pathological])
        warm = admit(srv, pod("warm", [images.signed], namespace="bystander"), lab.pki.ca_file)
        assert warm.allowed, warm.message
        yield srv


# --- hostile .att answers


def _route(flood: str, hang: threading.Event) -> Route | Responder:
    headers = {"Content-Type": OCI_MANIFEST}
    if flood == "5000 layers":
        return Route(body=att_manifest(att_layer(b"%d" % i) for i in range(5000)), headers=headers)
    if flood == "a layer claiming 1 GiB":
        return Route(body=att_manifest([att_layer(b"x" * 64, size=1 << 30)]), headers=headers)
    if flood == "endless manifest":
        return Route(raw=endless_json, headers=headers, content_length=-1)

    def tarpit(seen: Seen) -> Route:  # "no answer": holds the request until the teardown or HANG_SECONDS
        hang.wait(HANG_SECONDS)
        return Route(404)

    return tarpit


FLOODS = ("5000 layers", "a layer claiming 1 GiB", "endless manifest", "tarpit")


def _flood(world: World, flood: str) -> None:
    for index, (_, digest) in enumerate(world.flooded):
        world.mirror.routes[world.att_path(digest, index)] = _route(flood, world.hang)


def _assert_att_denial(answer: Answered, image: str, flood: str) -> None:
    """Denied ``LimitExceeded`` (the fetch's reason, never ``AttestationMissing``) within the deadline.

    A flood the registry client refuses at once is named in the verdict (the attestation entry and the
    ``.att`` lookup); a tarpit holds the lookup until the decision's deadline, which says so.
    """
    assert not answer.allowed
    assert answer.reason == "LimitExceeded", answer.message
    assert answer.message.startswith(f"LimitExceeded: {image}: "), answer.message
    if flood == "tarpit":
        took = TOOK.search(answer.message)
        assert took is not None, answer.message
        assert DEADLINE_SECONDS - 0.2 <= float(took.group(1)) <= DEADLINE_SECONDS + SLACK_SECONDS
    else:
        assert "attestation provenance" in answer.message, answer.message  # names the entry
        digest = image.rsplit("@sha256:", 1)[1]
        assert f"sha256-{digest}.att" in answer.message, answer.message  # and the .att tag it could not read
    assert answer.seconds < DEADLINE_SECONDS + SLACK_SECONDS


@pytest.mark.parametrize("flood", FLOODS)
def test_a_hostile_att_tag_denies_with_its_fetch_reason_within_the_deadline(
    server: RunningController, world: World, lab: Lab, flood: str
) -> None:
    _flood(world, flood)
    image, _ = world.flooded[0]
    before = world.att_reads()
    answer = admit(server, pod("p", [image], namespace="attested"), lab.pki.ca_file)
    _assert_att_denial(answer, image, flood)
    assert world.att_reads() > before, "the hostile .att tag was really asked"
    # transient: never cached, so the next review asks again (an absent .att would be remembered)
    again = admit(server, pod("p", [image], namespace="attested"), lab.pki.ca_file)
    _assert_att_denial(again, image, flood)
    assert world.att_reads() > before + 1


def test_signature_only_namespaces_are_not_delayed_by_an_att_attack(
    server: RunningController, world: World, lab: Lab, images: Images, registry: RegistryServer
) -> None:
    ca = lab.pki.ca_file
    _flood(world, "tarpit")
    cold = push_signed(registry, lab.kit, "apps/att-cold")
    targets = [world.flooded[i % FLOODED][0] for i in range(BURST)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=BURST + 2) as pool:
        before = world.att_reads()
        attacks = [
            pool.submit(admit, server, pod(f"a{i}", [image], namespace="attested"), ca)
            for i, image in enumerate(targets)
        ]
        waited = 0.0
        while world.att_reads() - before < FLOODED and waited < DEADLINE_SECONDS / 2:
            time.sleep(0.02)  # until the tarpit really holds the .att reads of every image
            waited += 0.02
        assert world.att_reads() - before >= FLOODED, "the attack is in flight"
        cached = admit(server, pod("cached", [images.signed], namespace="bystander"), ca)
        same_image = admit(server, pod("sig", [world.flooded[1][0]], namespace="sig-only"), ca)
        fresh = admit(server, pod("fresh", [cold], namespace="other"), ca)
        assert not any(a.done() for a in attacks), "the bystander reviews ran during the attack"
        answers = [a.result() for a in attacks]
    assert cached.allowed, cached.message
    assert cached.seconds < ON_TIME_SECONDS, cached.seconds
    assert same_image.allowed, same_image.message  # the attacked image, where no attestation is needed
    assert same_image.seconds < COLD_SECONDS, same_image.seconds
    assert fresh.allowed, fresh.message
    assert fresh.seconds < COLD_SECONDS, fresh.seconds
    for image, answer in zip(targets, answers, strict=True):
        _assert_att_denial(answer, image, "tarpit")


# --- hostile CEL conditions in a namespace's ImagePolicy


def test_a_sane_condition_admits_through_the_webhook(
    server: RunningController, world: World, lab: Lab
) -> None:
    answer = admit(server, pod("p", [world.attested], namespace="cel-ok"), lab.pki.ca_file)
    assert answer.allowed, answer.message


def test_a_pathological_condition_is_refused_in_its_namespace_only(
    server: RunningController, world: World, lab: Lab
) -> None:
    entries = {e.key.name: e for e in server.controller.state.policy_entries}
    assert not entries["pathological-condition"].ready
    denied = admit(server, pod("p", [world.attested], namespace="cel-refused"), lab.pki.ca_file)
    assert not denied.allowed
    assert denied.reason == "PolicyInvalid", denied.message
    assert denied.message.startswith(f"PolicyInvalid: {world.attested}: "), denied.message
    assert "pathological-condition" in denied.message
    elsewhere = admit(server, pod("p", [world.attested], namespace="cel-elsewhere"), lab.pki.ca_file)
    assert elsewhere.allowed, elsewhere.message


def test_a_costly_condition_over_a_huge_statement_fails_by_its_bound_and_delays_nobody(
    server: RunningController, world: World, lab: Lab, images: Images
) -> None:
    ca = lab.pki.ca_file
    first = admit(server, pod("p", [world.huge], namespace="cel-costly"), ca)
    assert not first.allowed
    assert first.reason == "AttestationConditionFailed", first.message
    assert first.message.startswith(f"AttestationConditionFailed: {world.huge}: "), first.message
    assert "exceeds the limit" in first.message, first.message
    assert first.seconds < DEADLINE_SECONDS + SLACK_SECONDS
    with concurrent.futures.ThreadPoolExecutor(max_workers=BURST) as pool:
        attacks = [
            pool.submit(admit, server, pod(f"c{i}", [image], namespace="cel-costly"), ca)
            for i, image in enumerate([world.huge, world.attested] * (BURST // 2))
        ]
        cached = admit(server, pod("cached", [images.signed], namespace="bystander"), ca)
        answers = [a.result() for a in attacks]
    assert cached.allowed, cached.message
    assert cached.seconds < ON_TIME_SECONDS, cached.seconds
    for answer in answers:
        assert answer.reason == "AttestationConditionFailed", answer.message
        assert answer.seconds < DEADLINE_SECONDS + SLACK_SECONDS
    # the bound is on converting the statement too: even a sane condition refuses it, quickly ...
    sane = admit(server, pod("p", [world.huge], namespace="cel-ok"), ca)
    assert sane.reason == "AttestationConditionFailed", sane.message
    assert "exceeds the limit" in sane.message
    assert sane.seconds < ON_TIME_SECONDS
    # ... and a namespace that asks for no attestation admits the image on its signature
    plain = admit(server, pod("p", [world.huge], namespace="cel-elsewhere"), ca)
    assert plain.allowed, plain.message
