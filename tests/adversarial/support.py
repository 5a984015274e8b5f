"""Helpers for the adversarial tests: controllers over real HTTPS, signed images, reviews timed and read.

Every attack of issue 10 goes through the real webhook: a controller built by
:func:`controller.admission.server.build_controller` serves policies loaded from files by
:func:`serve_files` in its own thread (see :mod:`tests.admission.harness`); images live in the real
``docker-registry`` or on the hostile registry of :mod:`tests.fixtures.hostile`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from controller.admission.objects import compile_policy_entry
from controller.admission.server import Controller, build_controller, serve_files
from controller.admission.tls import ReloadingTLS
from controller.admission.webhook import WEBHOOK_POLICIES
from controller.config import Settings
from controller.model import Digest
from controller.registry.manifest import OCI_MANIFEST
from controller.registry.signatures import DSSE_ENVELOPE
from tests.admission.harness import (
    TRUSTED_SUBJECT,
    Images,
    RunningController,
    options_for_test,
    pod,
    response_of,
    review,
    running,
    standard_policies,
    webhook_for,
    write_policies,
)
from tests.fixtures.hostile import HostileRegistry
from tests.fixtures.registry import RegistryServer, TestPKI
from tests.kit.oci import push_signed_image
from tests.kit.sigstore import Identity, SigstoreKit

HTTP_TIMEOUT = 30.0
ON_TIME_SECONDS = 1.0  # a review of a cached image, whatever else is going on


def push_signed(registry: RegistryServer, kit: SigstoreKit, repo: str, subject: str = TRUSTED_SUBJECT) -> str:
    """A new random image at ``repo``, signed by ``subject`` (GitHub issuer); its digest reference."""
    host = registry.host
    digest = push_signed_image(
        registry,
        repo,
        "v1",
        lambda d: [kit.sign_image(str(d), f"{host}/{repo}", identity=Identity.email(subject))],
    )
    return f"{host}/{repo}@{digest}"


def push_unsigned(registry: RegistryServer, repo: str) -> str:
    return f"{registry.host}/{repo}@{registry.push_random_image(repo, 'v1')}"


def registries_yaml(registry: RegistryServer, *hostile: HostileRegistry) -> str:
    """Trust the test CA for the real registry and for each hostile one."""
    extra = {h.host: {"tls": {"ca_file": registry.ca_file}} for h in hostile}
    return registry.registries_yaml(extra_configs=extra)


@contextlib.contextmanager
def controller_serving(
    tmp: Path,
    pki: TestPKI,
    documents: Sequence[Mapping[str, object]],
    *,
    registries: str | None,
    settings: Settings | None = None,
    **overrides: Any,
) -> Iterator[RunningController]:
    """A controller with ``settings`` serving ``documents`` (written to a file, loaded by serve_files)."""
    policy_file = write_policies(tmp / "policies.yaml", documents)
    registry_config = None
    if registries is not None:
        registry_config = tmp / "registries.yaml"
        registry_config.write_text(registries)
    options = options_for_test(registry_config=registry_config, **overrides)
    tls = ReloadingTLS(Path(pki.server_cert), Path(pki.server_key))
    tls.load()
    controller = build_controller(options, settings or Settings(), reader=None, tls=tls)

    async def main(c: Controller) -> None:
        await serve_files(c, [str(policy_file)])

    with running(controller, main) as server:
        yield server


@dataclass(frozen=True)
class Lab:
    """The session's registry, its test PKI and the Sigstore kit: what every adversarial controller needs."""

    tmp: pytest.TempPathFactory
    registry: RegistryServer
    pki: TestPKI
    kit: SigstoreKit

    def standard(self, images: Images, *extra: Mapping[str, object]) -> list[Mapping[str, object]]:
        """The admission tests' standard policies for ``images``, then ``extra``."""
        return [*standard_policies(images.host, self.kit.trusted_root_json()), *extra]

    @contextlib.contextmanager
    def serve(
        self,
        name: str,
        documents: Sequence[Mapping[str, object]],
        *,
        hostile: Sequence[HostileRegistry] = (),
        warm: str | None = None,
        warm_namespace: str = "bystander",
        **overrides: Any,
    ) -> Iterator[RunningController]:
        """A controller serving ``documents``, trusting the test CA for the registry and each ``hostile`` one.

        With ``warm``, a pod of that signed image in ``warm_namespace`` is admitted first (and must be),
        so that its evidence is cached before any attack.
        """
        with controller_serving(
            self.tmp.mktemp(name),
            self.pki,
            documents,
            registries=registries_yaml(self.registry, *hostile),
            **overrides,
        ) as srv:
            if warm is not None:
                answer = admit(srv, pod("warm", [warm], namespace=warm_namespace), self.pki.ca_file)
                assert answer.allowed, answer.message
            yield srv

    @contextlib.contextmanager
    def serve_by_default(
        self, name: str, documents: Sequence[Mapping[str, object]]
    ) -> Iterator[dict[str, RunningController]]:
        """Two controllers serving ``documents``: one with the default deny, one with the default allow."""
        with contextlib.ExitStack() as stack:
            yield {
                default: stack.enter_context(
                    self.serve(f"{name}-{default}", documents, settings=Settings(default_decision=default))
                )
                for default in ("deny", "allow")
            }


def apply_policies(server: RunningController, documents: Sequence[Mapping[str, object]]) -> None:
    """Replace the controller's policies, as the operator's indexes do after a policy edit.

    The policies among ``documents`` are compiled with the cluster's compiler (an invalid one keeps its
    error and is enforced as a denial) and applied on the controller's own event loop. TrustRoot
    documents are skipped: the trust roots stay the loaded entries, as the operator's index keeps an
    unchanged TrustRoot's entry (a recompiled root is a new root, whose cached evidence is dropped).
    """

    async def apply() -> None:
        policies = [compile_policy_entry(d) for d in documents if d["kind"] != "TrustRoot"]
        state = server.controller.state
        state.apply(policies, state.trust_root_entries)

    asyncio.run_coroutine_threadsafe(apply(), server.loop).result(timeout=10)


@dataclass(frozen=True)
class Answered:
    """One webhook answer: its ``response`` and how long the round trip took."""

    response: dict[str, Any]
    seconds: float

    @property
    def allowed(self) -> bool:
        return bool(self.response["allowed"])

    @property
    def message(self) -> str:
        return str(self.response.get("status", {}).get("message", ""))

    @property
    def reason(self) -> str | None:
        """The reason code of the first line of a denial (``Reason: image: detail``); None if allowed."""
        return self.message.split(": ", 1)[0] if self.message else None

    @property
    def warnings(self) -> list[str]:
        return list(self.response.get("warnings") or [])


def send(
    server: RunningController,
    request: Mapping[str, object],
    ca: str,
    path: str,
    *,
    timeout: float = HTTP_TIMEOUT,
) -> Answered:
    """POST an AdmissionReview to ``path`` over HTTPS; check the envelope and the uid echo."""
    started = time.monotonic()
    answer = requests.post(f"{server.url}/{path}", json=dict(request), verify=ca, timeout=timeout)
    took = time.monotonic() - started
    assert answer.status_code == 200, answer.text
    response = response_of(answer.json())
    assert response["uid"] == request["request"]["uid"]  # type: ignore[index]
    return Answered(response, took)


def admit(server: RunningController, obj: Mapping[str, object], ca: str, **review_args: Any) -> Answered:
    """Send ``obj``'s AdmissionReview to the webhook for its kind."""
    return send(server, review(obj, **review_args), ca, webhook_for(obj))


# --- reviews of the policy custom resources, as a namespace user sends them

_POLICY_PLURALS = {"ImagePolicy": "imagepolicies", "ImagePolicyException": "imagepolicyexceptions"}


def policy_review(
    server: RunningController, kind: str, body: Mapping[str, Any], ca: str, *, username: str
) -> Answered:
    """Send the CREATE AdmissionReview of an ``imprimatur.dev/v1alpha1`` ``kind`` object, by an
    ordinary authenticated ``username``, to the policy webhook."""
    gvk = {"group": "imprimatur.dev", "version": "v1alpha1", "kind": kind}
    gvr = {"group": "imprimatur.dev", "version": "v1alpha1", "resource": _POLICY_PLURALS[kind]}
    meta = body["metadata"]
    request = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "name": meta["name"],
            "namespace": meta["namespace"],
            "operation": "CREATE",
            "userInfo": {"username": username, "groups": ["system:authenticated"]},
            "object": dict(body),
            "oldObject": None,
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }
    return send(server, request, ca, WEBHOOK_POLICIES)


# --- hostile ``.att`` answers: an OCI manifest of DSSE layers, and an endless JSON body


def att_manifest(layers: Iterable[dict[str, object]]) -> bytes:
    """An OCI image manifest (empty config) listing ``layers``."""
    config = {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        "digest": str(Digest.of(b"{}")),
        "size": 2,
    }
    return json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": list(layers)}
    ).encode()


def att_layer(data: bytes, size: int | None = None) -> dict[str, object]:
    """A DSSE envelope layer descriptor for ``data``, claiming ``size`` bytes (default: its length)."""
    return {
        "mediaType": DSSE_ENVELOPE,
        "digest": str(Digest.of(data)),
        "size": len(data) if size is None else size,
    }


def endless_json() -> Iterator[bytes]:
    """An unterminated JSON body: 6.5 GB at most; the client stops far sooner, the server after 10 s."""
    for _ in range(100_000):
        yield b"{" * 65536
