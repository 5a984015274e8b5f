"""Shared by the admission tests and the demo: AdmissionReviews as kube-apiserver sends them, Kubernetes
objects, signed test images in a real registry, the policies that govern them, and a controller run
in a background thread.

Nothing here fakes the controller: reviews go over HTTPS to the real webhook server, images are signed
by the test Sigstore kit and pushed to a real ``docker-registry``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from controller.admission.options import ServerOptions
from controller.admission.server import Controller, build_controller
from controller.admission.tls import ReloadingTLS
from controller.config import Settings
from tests.kit.oci import push_sig_image, push_signed_image
from tests.kit.sigstore import GITHUB_OAUTH_ISSUER, Identity, SigstoreKit

TRUSTED_SUBJECT = "alice@example.com"
WRONG_SUBJECT = "mallory@example.com"
TRUST_ROOT_NAME = "test-kit"
API_GROUP = "imprimatur.dev/v1alpha1"

# --- Kubernetes objects


def container(name: str, image: str) -> dict[str, object]:
    return {"name": name, "image": image}


def pod_spec(
    images: Sequence[str],
    *,
    init_images: Sequence[str] = (),
    pull_secrets: Sequence[str] = (),
    service_account: str | None = None,
    ephemeral_images: Sequence[str] = (),
) -> dict[str, object]:
    spec: dict[str, object] = {"containers": [container(f"c{i}", image) for i, image in enumerate(images)]}
    if init_images:
        spec["initContainers"] = [container(f"init{i}", image) for i, image in enumerate(init_images)]
    if ephemeral_images:
        spec["ephemeralContainers"] = [
            {**container(f"debugger{i}", image), "targetContainerName": "c0"}
            for i, image in enumerate(ephemeral_images)
        ]
    if pull_secrets:
        spec["imagePullSecrets"] = [{"name": name} for name in pull_secrets]
    if service_account:
        spec["serviceAccountName"] = service_account
    return spec


def pod(name: str, images: Sequence[str], *, namespace: str = "default", **spec: Any) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": pod_spec(images, **spec),
    }


# kind -> (apiVersion, plural, how the pod template nests)
WORKLOAD_KINDS: Mapping[str, tuple[str, str]] = {
    "Deployment": ("apps/v1", "deployments"),
    "ReplicaSet": ("apps/v1", "replicasets"),
    "StatefulSet": ("apps/v1", "statefulsets"),
    "DaemonSet": ("apps/v1", "daemonsets"),
    "Job": ("batch/v1", "jobs"),
    "CronJob": ("batch/v1", "cronjobs"),
    "ReplicationController": ("v1", "replicationcontrollers"),
}


def workload(
    kind: str, name: str, images: Sequence[str], *, namespace: str = "default", **spec: Any
) -> dict[str, object]:
    """A workload of ``kind`` whose pod template runs ``images``."""
    api_version, _ = WORKLOAD_KINDS[kind]
    template = {"metadata": {"labels": {"app": name}}, "spec": pod_spec(images, **spec)}
    body: dict[str, object]
    if kind == "CronJob":
        body = {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": template}}}
    elif kind == "Job":
        body = {"template": template}
    elif kind == "ReplicationController":
        body = {"replicas": 1, "selector": {"app": name}, "template": template}
    else:
        body = {"selector": {"matchLabels": {"app": name}}, "template": template}
        if kind != "DaemonSet":
            body["replicas"] = 1
        if kind == "StatefulSet":
            body["serviceName"] = name
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


def review(
    obj: Mapping[str, object],
    *,
    operation: str = "CREATE",
    old: Mapping[str, object] | None = None,
    sub_resource: str | None = None,
    dry_run: bool = False,
    uid: str | None = None,
) -> dict[str, object]:
    """The AdmissionReview v1 kube-apiserver sends for ``obj`` (a Pod or a workload)."""
    api_version = str(obj["apiVersion"])
    group, _, version = api_version.rpartition("/")
    kind = str(obj["kind"])
    plural = "pods" if kind == "Pod" else WORKLOAD_KINDS[kind][1]
    meta = obj["metadata"]
    assert isinstance(meta, Mapping)
    gvk = {"group": group, "version": version, "kind": kind}
    gvr = {"group": group, "version": version, "resource": plural}
    request: dict[str, object] = {
        "uid": uid or str(uuid.uuid4()),
        "kind": gvk,
        "resource": gvr,
        "requestKind": gvk,
        "requestResource": gvr,
        "name": meta["name"],
        "namespace": meta["namespace"],
        "operation": operation,
        "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
        "object": dict(obj),
        "oldObject": dict(old) if old is not None else None,
        "dryRun": dry_run,
        "options": {
            "apiVersion": "meta.k8s.io/v1",
            "kind": "CreateOptions" if operation == "CREATE" else "UpdateOptions",
        },
    }
    if sub_resource is not None:
        request["subResource"] = sub_resource
        request["requestSubResource"] = sub_resource
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def webhook_for(obj: Mapping[str, object]) -> str:
    return "validate-pods" if obj["kind"] == "Pod" else "validate-workloads"


# --- signed images in a real registry


@dataclass(frozen=True)
class Images:
    """References to test images: each signed (or not) the way its name says."""

    signed: str  # by the trusted identity, pinned by digest
    signed_tag: str  # the same image by tag only
    wrong_identity: str  # signed by an identity no policy trusts
    unsigned: str
    no_tlog: str  # signed by the trusted identity, no Rekor entry (governed by a tlog-optional policy)
    warn_unsigned: str  # unsigned, governed only by a warn-mode policy
    ungoverned: str  # no policy matches it
    other_signed: str  # signed by bob (for namespaced policies)

    @property
    def host(self) -> str:
        return self.signed.split("/", 1)[0]


def publish_images(registry: Any, kit: SigstoreKit) -> Images:
    """Push the test images and their cosign signatures to ``registry``."""
    host = registry.host
    bob = Identity.email("bob@example.com", GITHUB_OAUTH_ISSUER)
    mallory = Identity.email(WRONG_SUBJECT, GITHUB_OAUTH_ISSUER)

    def signed_by(identity: Identity, repo: str, *, tlog: bool = True) -> Callable[[Any], list[Any]]:
        return lambda digest: [kit.sign_image(str(digest), f"{host}/{repo}", identity=identity, tlog=tlog)]

    good = push_signed_image(
        registry, "apps/good", "v1", signed_by(Identity.email(TRUSTED_SUBJECT), "apps/good")
    )
    wrong = push_signed_image(registry, "apps/wrong", "v1", signed_by(mallory, "apps/wrong"))
    unsigned = registry.push_random_image("apps/unsigned", "v1")
    no_tlog = push_signed_image(
        registry, "lax/notlog", "v1", signed_by(Identity.email(TRUSTED_SUBJECT), "lax/notlog", tlog=False)
    )
    warn = registry.push_random_image("warn/unsigned", "v1")
    ungoverned = registry.push_random_image("elsewhere/app", "v1")
    other = registry.push_random_image("apps/bob", "v1")
    push_sig_image(
        registry,
        "apps/bob",
        other,
        [
            kit.sign_image(str(other), f"{host}/apps/bob", identity=Identity.email(TRUSTED_SUBJECT)),
            kit.sign_image(str(other), f"{host}/apps/bob", identity=bob),
        ],
    )
    return Images(
        signed=f"{host}/apps/good@{good}",
        signed_tag=f"{host}/apps/good:v1",
        wrong_identity=f"{host}/apps/wrong@{wrong}",
        unsigned=f"{host}/apps/unsigned@{unsigned}",
        no_tlog=f"{host}/lax/notlog@{no_tlog}",
        warn_unsigned=f"{host}/warn/unsigned@{warn}",
        ungoverned=f"{host}/elsewhere/app@{ungoverned}",
        other_signed=f"{host}/apps/bob@{other}",
    )


def identity(subject: str = TRUSTED_SUBJECT) -> dict[str, object]:
    return {"issuer": GITHUB_OAUTH_ISSUER, "subject": subject}


def cluster_policy(
    name: str, globs: Sequence[str], *, subject: str = TRUSTED_SUBJECT, **spec: object
) -> dict[str, object]:
    return {
        "apiVersion": API_GROUP,
        "kind": "ClusterImagePolicy",
        "metadata": {"name": name},
        "spec": {
            "images": [{"glob": g} for g in globs],
            "identities": [identity(subject)],
            "trustRoot": TRUST_ROOT_NAME,
            **spec,
        },
    }


def image_policy(
    name: str, namespace: str, globs: Sequence[str], *, subject: str, **spec: object
) -> dict[str, object]:
    doc = cluster_policy(name, globs, subject=subject, **spec)
    doc["kind"] = "ImagePolicy"
    meta = doc["metadata"]
    assert isinstance(meta, dict)
    meta["namespace"] = namespace
    return doc


def trust_root(trusted_root_json: bytes, name: str = TRUST_ROOT_NAME) -> dict[str, object]:
    return {
        "apiVersion": API_GROUP,
        "kind": "TrustRoot",
        "metadata": {"name": name},
        "spec": {"inline": trusted_root_json.decode("utf-8")},
    }


def standard_policies(host: str, trusted_root_json: bytes) -> list[dict[str, object]]:
    """The test kit's trust root; ``apps/**`` needs alice; ``lax/**`` alice without tlog; ``warn/**`` warns."""
    return [
        trust_root(trusted_root_json),
        cluster_policy("apps", [f"{host}/apps/**"]),
        cluster_policy("lax", [f"{host}/lax/**"], tlog="optional"),
        cluster_policy("warn", [f"{host}/warn/**"], mode="warn"),
    ]


def write_policies(path: Path, documents: Sequence[Mapping[str, object]]) -> Path:
    path.write_text(yaml.safe_dump_all([dict(d) for d in documents], sort_keys=False))
    return path


# --- a controller in a background thread


@dataclass
class RunningController:
    """A controller serving in its own thread and event loop, as in its own process."""

    controller: Controller
    thread: threading.Thread
    loop: asyncio.AbstractEventLoop
    task: asyncio.Task[None]
    errors: list[BaseException] = field(default_factory=list)
    stop_flag: threading.Event | None = None

    @property
    def url(self) -> str:
        return self.controller.server.url

    def stop(self) -> None:
        if self.stop_flag is not None:
            self.stop_flag.set()  # kopf stops gracefully (and frees the thread waiting on the flag)
            self.thread.join(timeout=10)
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.task.cancel)
            self.thread.join(timeout=15)
        self.controller.close()


def launch(
    controller: Controller,
    main: Callable[[Controller], Coroutine[Any, Any, None]],
    stop_flag: threading.Event | None = None,
) -> RunningController:
    """Run ``main(controller)`` in a new thread and event loop; return at once (see wait_started)."""
    ready = threading.Event()
    box: dict[str, Any] = {}
    errors: list[BaseException] = []

    async def runner() -> None:
        box["loop"] = asyncio.get_running_loop()
        task = asyncio.create_task(main(controller))
        box["task"] = task
        ready.set()
        with contextlib.suppress(asyncio.CancelledError):
            try:
                await task
            except BaseException as e:
                errors.append(e)
                raise

    def target() -> None:
        with contextlib.suppress(BaseException):
            asyncio.run(runner())
        ready.set()

    thread = threading.Thread(target=target, name="controller", daemon=True)
    thread.start()
    if not ready.wait(10) or "task" not in box:
        raise RuntimeError("controller thread did not start")
    return RunningController(controller, thread, box["loop"], box["task"], errors, stop_flag)


def _check_started(running: RunningController, waited: float, timeout: float) -> bool:
    if running.controller.server.started.is_set():
        return True
    if running.errors or not running.thread.is_alive():
        running.stop()
        raise RuntimeError(f"controller failed: {running.errors!r}")
    if waited > timeout:
        running.stop()
        raise RuntimeError(f"webhook server did not start within {timeout}s")
    return False


def start_in_thread(
    controller: Controller, main: Callable[[Controller], Coroutine[Any, Any, None]], *, timeout: float = 20.0
) -> RunningController:
    """Run ``main(controller)`` in a new thread; return once its webhook server listens."""
    running = launch(controller, main)
    waited = 0.0
    while not _check_started(running, waited, timeout):
        time.sleep(0.02)
        waited += 0.02
    return running


async def start_in_thread_async(
    controller: Controller,
    main: Callable[[Controller], Coroutine[Any, Any, None]],
    *,
    timeout: float = 20.0,
    stop_flag: threading.Event | None = None,
) -> RunningController:
    """:func:`start_in_thread` for async tests: the caller's event loop keeps running meanwhile."""
    running = launch(controller, main, stop_flag)
    waited = 0.0
    while not _check_started(running, waited, timeout):
        await asyncio.sleep(0.02)
        waited += 0.02
    return running


def options_for_test(**overrides: Any) -> ServerOptions:
    """Options for a test controller: loopback, ephemeral webhook port, no metrics unless given."""
    values: dict[str, Any] = {
        "webhook_addr": "127.0.0.1",
        "webhook_port": 0,
        "tls_dir": None,
        "metrics_port": 0,
        "metrics_addr": "127.0.0.1",
        "liveness_endpoint": "http://127.0.0.1:0/healthz",
        "decision_timeout_seconds": 8.0,
    }
    values.update(overrides)
    return ServerOptions(**values)


def new_controller(
    *, cert: str, key: str, registries_yaml: str | None, tmp: Path, reader: Any = None, **overrides: Any
) -> Controller:
    """A controller with the given serving certificate and registry configuration."""
    registry_config = None
    if registries_yaml is not None:
        registry_config = tmp / "registries.yaml"
        registry_config.write_text(registries_yaml)
    options = options_for_test(registry_config=registry_config, **overrides)
    tls = ReloadingTLS(Path(cert), Path(key))
    tls.load()
    return build_controller(options, Settings(), reader=reader, tls=tls)


def response_of(answer: Mapping[str, object]) -> dict[str, Any]:
    """``response`` of an AdmissionReview answer, checked for shape."""
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["kind"] == "AdmissionReview"
    response = answer["response"]
    assert isinstance(response, dict)
    return response


def dumps(document: object) -> bytes:
    return json.dumps(document).encode()


@contextlib.contextmanager
def running(
    controller: Controller, main: Callable[[Controller], Coroutine[Any, Any, None]]
) -> Iterator[RunningController]:
    server = start_in_thread(controller, main)
    try:
        yield server
    finally:
        server.stop()
