"""The demo's admission requests, the answer expected of each, and how an answer is checked.

A row passes only when the webhook's answer agrees with its expectation in full: admitted or denied,
the denial's reason code, the text a warning must carry (a date, an exception's name), and for the
mutating webhook the image the JSON patch writes and the signer it records.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from controller.admission.pinning import ANNOTATION
from demo.world import BUILT_BY_ACTIONS, EXCEPTION_NAME, INCIDENT_NAMESPACE, RELEASE, World
from tests.admission.harness import pod, webhook_for, workload

ALLOWED = "allowed"
PINNED = "pinned"
MUTATE_PODS = "mutate-pods"
_ANNOTATION_POINTER = "/metadata/annotations/" + ANNOTATION.replace("~", "~0").replace("/", "~1")


@dataclass(frozen=True)
class Pin:
    """What the mutating webhook must do: write ``image`` at ``pointer``, recording ``signer``."""

    pointer: str
    image: str
    signer: str


@dataclass(frozen=True)
class Case:
    """One admission request and the answer we expect."""

    title: str
    obj: dict[str, object]
    expect_allowed: bool
    expect_reason: str = ALLOWED  # the denial's Reason code, or "allowed"
    expect_text: str = ""  # text the denial's message, or one warning, must contain
    pin: Pin | None = None  # sent to mutate-pods: the patch it must make
    operation: str = "CREATE"
    old: dict[str, object] | None = None
    sub_resource: str | None = None

    @property
    def webhook(self) -> str:
        return MUTATE_PODS if self.pin is not None else webhook_for(self.obj)


@dataclass(frozen=True)
class Answer:
    """The webhook's response: what kubectl would show, and the JSON patch (mutating webhook)."""

    allowed: bool
    message: str
    warnings: tuple[str, ...]
    code: int | None
    patch: tuple[Mapping[str, object], ...] = field(default=())

    @property
    def reason(self) -> str:
        """The reason code of a denial, else ``allowed`` (``pinned`` when the patch pins an image)."""
        if not self.allowed:
            return self.message.split(":", 1)[0]
        return PINNED if any(str(op.get("path")).endswith("/image") for op in self.patch) else ALLOWED

    def written(self, pointer: str) -> object:
        """The value the patch writes at ``pointer`` (None when it writes nothing there)."""
        return next((op.get("value") for op in self.patch if op.get("path") == pointer), None)

    def signers(self) -> dict[str, str]:
        """image -> signer, from the ``imprimatur.dev/verified-images`` record the patch writes."""
        value = self.written(_ANNOTATION_POINTER)
        if value is None:
            annotations = self.written("/metadata/annotations")
            value = annotations.get(ANNOTATION) if isinstance(annotations, Mapping) else None
        record = json.loads(value) if isinstance(value, str) else {}
        return {image: str(entry.get("signer")) for image, entry in record.items() if isinstance(entry, dict)}


def check(case: Case, answer: Answer) -> str:
    """``""`` when the answer is the expected one, else what differs."""
    if answer.allowed != case.expect_allowed:
        return f"{'admitted' if answer.allowed else 'denied'}, expected the opposite"
    if not case.expect_allowed and answer.reason != case.expect_reason:
        return f"reason {answer.reason}, expected {case.expect_reason}"
    if case.expect_text and not any(case.expect_text in text for text in (answer.message, *answer.warnings)):
        return f"nothing says {case.expect_text!r}"
    if case.pin is not None:
        if answer.written(case.pin.pointer) != case.pin.image:
            return f"the patch writes {answer.written(case.pin.pointer)!r}, expected {case.pin.image!r}"
        tag = case.pin.image.split("@", 1)[0]
        if answer.signers().get(tag) != case.pin.signer:
            return f"recorded signer {answer.signers().get(tag)!r}, expected {case.pin.signer!r}"
    return ""


def cases(world: World) -> Sequence[Case]:
    """The requests kube-apiserver would send, in the order the table shows them."""
    host, frontend, worker = world.host, world.frontend, world.worker
    elsewhere = f"{host}/random/app@{frontend.split('@')[1]}"
    frontend_digest = frontend.split("@", 1)[1]
    return [
        Case("Pod: frontend signed by the release workflow", pod("frontend", [frontend]), True),
        Case("Pod: frontend by tag (the tag can move)", pod("frontend", [world.frontend_tag]), True),
        Case(
            "mutate-pods: frontend by tag, pinned",
            pod("frontend", [world.frontend_tag]),
            True,
            pin=Pin("/spec/containers/0/image", f"{world.frontend_tag}@{frontend_digest}", RELEASE.subject),
        ),
        Case("Pod: backend signed by an intern", pod("backend", [world.backend]), False, "IdentityMismatch"),
        Case("Pod: worker not signed at all", pod("worker", [worker]), False, "SignatureNotFound"),
        Case("Pod: image no policy covers", pod("random", [elsewhere]), False, "NoMatchingPolicy"),
        Case(
            "Pod: lab tool, warn mode until enforceAfter",
            pod("lab", [world.lab]),
            True,
            expect_text=f"(enforced from {world.setting.enforce_after_text})",
        ),
        Case("Pod: api, provenance built by Actions", pod("api", [world.api]), True),
        Case(
            "Pod: cron, provenance built on a laptop",
            pod("cron", [world.cron]),
            False,
            "AttestationConditionFailed",
            expect_text=f"condition {BUILT_BY_ACTIONS!r} failed",
        ),
        Case(
            "Pod: batch, no provenance at all",
            pod("batch", [world.batch]),
            False,
            "AttestationMissing",
            expect_text="attestation provenance",
        ),
        Case("Pod: vendor agent, trusted by its key", pod("agent", [world.agent]), True),
        Case(
            "team-b: same agent, keyless identity only",
            pod("agent", [world.agent], namespace="team-b"),
            False,
            "NotKeylessSignature",
            expect_text="a key-based signature, not keyless evidence",
        ),
        Case("Deployment: frontend", workload("Deployment", "frontend", [frontend]), True),
        Case(
            "Deployment: frontend + unsigned sidecar",
            workload("Deployment", "shop", [frontend, worker]),
            False,
            "SignatureNotFound",
        ),
        Case(
            "CronJob: backend report",
            workload("CronJob", "report", [world.backend]),
            False,
            "IdentityMismatch",
        ),
        Case(
            "team-a trusts anyone: no cluster policy",
            pod("attack", [elsewhere], namespace="team-a"),
            False,
            "NoMatchingPolicy",
        ),
        Case(
            "team-a adds env=prod: frontend lacks it",
            pod("frontend", [frontend], namespace="team-a"),
            False,
            "AnnotationMismatch",
        ),
        Case(
            "incident: unsigned worker, by exception",
            pod("worker", [worker], namespace=INCIDENT_NAMESPACE),
            True,
            expect_text=f"ImagePolicyException {INCIDENT_NAMESPACE}/{EXCEPTION_NAME} admits {worker} until",
        ),
        Case(
            "kubectl debug: unsigned debugger",
            pod("checkout", [frontend], ephemeral_images=[worker]),
            False,
            "SignatureNotFound",
            operation="UPDATE",
            old=pod("checkout", [frontend]),
            sub_resource="ephemeralcontainers",
        ),
    ]
