"""ImagePolicy globs attacked through the real webhook.

A namespace user writes ImagePolicies, and their ``spec.images[].glob`` are matched on the webhook's
event loop for every image reviewed in that namespace. What they must not reach: the admission latency
of other namespaces. The bounds that hold (controller/policy/glob.py, globset.py, policyset.py): at
most 64 wildcards per glob (refused at the door, PolicyInvalid naming the field), globs matched by RE2
programs compiled once when the policy set is built, and per namespace at most 256 globs / 256
wildcards / 16,384 glob characters matched; the ImagePolicies past that are never compiled nor
matched, and one denial in their place covers the namespace.

Before these bounds, the 50 policies below (64 globs of ``*a???...`` each) would have cost the
state-set matcher about 4 ms per glob and image: some 13 s of the event loop for each image of the
attacker's Pods.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections.abc import Sequence

from controller.errors import Reason
from controller.policy.glob import MAX_WILDCARDS_PER_GLOB
from controller.policy.policyset import MAX_WILDCARDS_PER_NAMESPACE
from tests.admission.harness import TRUSTED_SUBJECT, Images, RunningController, image_policy, pod
from tests.adversarial.support import (
    ON_TIME_SECONDS,
    Answered,
    Lab,
    admit,
    apply_policies,
    policy_review,
)

ATTACK_POLICIES = 50
GLOBS_PER_POLICY = 64  # the CRD's maxItems
ATTACK_SECONDS = 15.0  # the attack stops by itself
ATTACK_REVIEWS = 400  # ... or after this many Pods
IMAGES_PER_POD = 8
BYSTANDER_REVIEWS = 150


def _costly_glob(host: str, tag: str) -> str:
    """The slowest glob for RE2 within the bound: ``*a`` then 63 ``?`` (its DFA would need 2^63 states)."""
    return f"{host}/{tag}*a" + "?" * (MAX_WILDCARDS_PER_GLOB - 1)


def _attack_policies(host: str) -> list[dict[str, object]]:
    """50 ImagePolicies in 'attacker': the first ones fill the namespace's wildcard budget with one costly
    glob each, the rest hold 64 costly globs each (past the budget)."""
    fitting = MAX_WILDCARDS_PER_NAMESPACE // MAX_WILDCARDS_PER_GLOB
    docs = []
    for i in range(ATTACK_POLICIES):
        count = 1 if i < fitting else GLOBS_PER_POLICY
        globs = [_costly_glob(host, f"x{i}-{j}") for j in range(count)]
        docs.append(image_policy(f"p{i:02}", "attacker", globs, subject=TRUSTED_SUBJECT))
    return docs


def _attacker_images(host: str, rng: random.Random) -> list[str]:
    """Names that near-miss the fitting globs, random a/b so that RE2's DFA cache never helps."""
    fitting = MAX_WILDCARDS_PER_NAMESPACE // MAX_WILDCARDS_PER_GLOB
    images = []
    for _ in range(IMAGES_PER_POD):
        prefix = f"{host}/x{rng.randrange(fitting)}-0"
        tail = "".join(rng.choice("ab") for _ in range(250 - len(prefix)))
        images.append(f"{prefix}{tail}:v1")
    return images


def _p99(samples: Sequence[float]) -> float:
    return statistics.quantiles(samples, n=100)[98]


def _bystander(server: RunningController, images: Images, ca: str) -> float:
    return admit(server, pod("b", [images.signed], namespace="bystander"), ca).seconds


def test_fifty_costly_image_policies_do_not_slow_other_namespaces(lab: Lab, images: Images) -> None:
    host = images.host
    with lab.serve("glob-flood", lab.standard(images), warm=images.signed) as server:
        ca = lab.pki.ca_file
        alone = _p99([_bystander(server, images, ca) for _ in range(BYSTANDER_REVIEWS)])

        started = time.monotonic()
        apply_policies(server, [*lab.standard(images), *_attack_policies(host)])
        applied = time.monotonic() - started
        policies = server.controller.state.engine.policies
        fitting = MAX_WILDCARDS_PER_NAMESPACE // MAX_WILDCARDS_PER_GLOB
        assert len(policies.over_budget("attacker")) == ATTACK_POLICIES - fitting
        assert policies.over_budget("bystander") == ()

        attacker: list[Answered] = []
        attacking = threading.Event()
        attacking.set()

        def attack() -> None:
            rng = random.Random(11)
            ends = time.monotonic() + ATTACK_SECONDS
            try:
                while time.monotonic() < ends and len(attacker) < ATTACK_REVIEWS:
                    attack_pod = pod("a", _attacker_images(host, rng), namespace="attacker")
                    attacker.append(admit(server, attack_pod, ca))
            finally:
                attacking.clear()

        thread = threading.Thread(target=attack, daemon=True)
        thread.start()
        samples: list[float] = []
        try:
            while attacking.is_set() or len(samples) < BYSTANDER_REVIEWS:
                samples.append(_bystander(server, images, ca))
                if len(samples) > 20 * BYSTANDER_REVIEWS:
                    break
        finally:
            thread.join(timeout=ATTACK_SECONDS + 60)
        assert not thread.is_alive()
        during = _p99(samples)

        # the attacker's Pods were answered, denied (no cluster policy covers their images), on time
        assert attacker
        assert all(not a.allowed for a in attacker)
        assert all(a.reason == Reason.NO_MATCHING_POLICY for a in attacker), attacker[0].message
        worst = max(a.seconds for a in attacker)
        # a signed image the cluster admits is denied in 'attacker': its ImagePolicies are past the budget
        denied = admit(server, pod("s", [images.signed], namespace="attacker"), ca)
        assert not denied.allowed
        assert denied.reason == Reason.POLICY_INVALID
        assert f"ImagePolicy attacker/p{fitting:02}" in denied.message
        print(
            f"\n{ATTACK_POLICIES} ImagePolicies applied in {applied * 1000:.0f} ms; bystander p99 alone "
            f"{alone * 1000:.1f} ms, during the attack {during * 1000:.1f} ms over {len(samples)} reviews; "
            f"{len(attacker)} attacker Pods of {IMAGES_PER_POD} images, worst {worst * 1000:.1f} ms, "
            f"median {statistics.median(a.seconds for a in attacker) * 1000:.1f} ms"
        )
        assert worst < ON_TIME_SECONDS
        assert during < ON_TIME_SECONDS
        assert during < max(3 * alone, alone + 0.1)


def test_a_glob_past_the_wildcard_bound_is_refused_at_the_door(lab: Lab, images: Images) -> None:
    with lab.serve("glob-door", lab.standard(images)) as server:
        ca = lab.pki.ca_file
        fits = image_policy("fits", "attacker", [_costly_glob(images.host, "x")], subject=TRUSTED_SUBJECT)
        assert policy_review(server, "ImagePolicy", fits, ca, username="mallory").allowed
        costly = image_policy(
            "costly",
            "attacker",
            [f"{images.host}/ok", _costly_glob(images.host, "x") + "?"],
            subject=TRUSTED_SUBJECT,
        )
        refused = policy_review(server, "ImagePolicy", costly, ca, username="mallory")
        assert not refused.allowed
        assert refused.reason == Reason.POLICY_INVALID
        assert "spec.images[1].glob" in refused.message
        assert "65 wildcards" in refused.message
