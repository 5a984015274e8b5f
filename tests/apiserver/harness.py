"""Our controller against the real kube-apiserver: kopf logged in with the admin certificate, the
webhook registered in the API server as the chart registers it (but by URL), signed and unsigned
images in the real test registry.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kopf
import kubernetes

from controller.admission.kube import KubernetesReader
from controller.admission.server import Controller, serve_cluster
from tests.admission.harness import (
    API_GROUP,
    TRUST_ROOT_NAME,
    TRUSTED_SUBJECT,
    RunningController,
    cluster_policy,
    launch,
    new_controller,
    trust_root,
)
from tests.apiserver.webhooks import by_url, chart_webhook_configurations, register
from tests.fixtures.apiserver import ApiServer
from tests.fixtures.registry import RegistryServer, TestPKI, free_port
from tests.kit.oci import push_signed_image
from tests.kit.sigstore import GITHUB_OAUTH_ISSUER, Identity, SigstoreKit

CONTROLLER_NAMESPACE = "imprimatur-system"  # the chart's release namespace: never sent to the webhook
CONTROLLER_START_SECONDS = 20.0
LOAD_TIMEOUT_SECONDS = 20.0
WEBHOOK_ACTIVE_TIMEOUT_SECONDS = 15.0
POLL_SECONDS = 0.05
OBSERVED_TIMEOUT_SECONDS = 20.0
ANYONE_SUBJECT = "mallory@example.com"


@dataclass(frozen=True)
class ClusterImages:
    """Images in the test registry, signed (or not) the way their names say; all pinned by digest."""

    signed: str  # by alice, under the ``apps`` ClusterImagePolicy
    unsigned: str  # under the ``apps`` ClusterImagePolicy
    anyone_signed: str  # by mallory; no ClusterImagePolicy covers it
    ungoverned_unsigned: str  # no ClusterImagePolicy covers it
    strict_signed: str  # by alice, under the stored invalid ``strict`` ClusterImagePolicy
    wrong_identity: str  # by mallory, under the ``apps`` ClusterImagePolicy (which wants alice)
    warn_unsigned: str  # under the ``warn`` ClusterImagePolicy (mode: warn)

    @property
    def signed_tag(self) -> str:
        """``signed`` by its tag: ``<host>/kube/apps/good:v1``."""
        return self.signed.split("@", 1)[0] + ":v1"

    @property
    def host(self) -> str:
        return self.signed.split("/", 1)[0]


def publish(registry: RegistryServer, kit: SigstoreKit) -> ClusterImages:
    """Push the images (under ``kube/``, apart from the other suites' repositories) and signatures."""
    host = registry.host

    def signed(repo: str, subject: str) -> str:
        identity = Identity.email(subject, GITHUB_OAUTH_ISSUER)
        digest = push_signed_image(
            registry,
            repo,
            "v1",
            lambda d: [kit.sign_image(str(d), f"{host}/{repo}", identity=identity)],
        )
        return f"{host}/{repo}@{digest}"

    def unsigned(repo: str) -> str:
        return f"{host}/{repo}@{registry.push_random_image(repo, 'v1')}"

    return ClusterImages(
        signed=signed("kube/apps/good", TRUSTED_SUBJECT),
        unsigned=unsigned("kube/apps/unsigned"),
        anyone_signed=signed("kube/elsewhere/signed", ANYONE_SUBJECT),
        ungoverned_unsigned=unsigned("kube/elsewhere/unsigned"),
        strict_signed=signed("kube/strict/app", TRUSTED_SUBJECT),
        wrong_identity=signed("kube/apps/wrong", ANYONE_SUBJECT),
        warn_unsigned=unsigned("kube/warn/app"),
    )


INVALID_POLICY = "strict"
WARN_POLICY = "warn"
INVALID_SUBJECT_REGEXP = r"(a)\1"  # a backreference: valid for Python's re, refused by RE2 (cosign's syntax)


def invalid_policy(name: str, glob: str) -> dict[str, object]:
    """A ClusterImagePolicy over ``glob`` whose subject regex does not compile (RE2 has no backreferences)."""
    return {
        "apiVersion": API_GROUP,
        "kind": "ClusterImagePolicy",
        "metadata": {"name": name},
        "spec": {
            "images": [{"glob": glob}],
            "identities": [{"issuer": GITHUB_OAUTH_ISSUER, "subjectRegExp": INVALID_SUBJECT_REGEXP}],
            "trustRoot": TRUST_ROOT_NAME,
        },
    }


def baseline_policies(images: ClusterImages, kit: SigstoreKit) -> list[dict[str, object]]:
    """The kit's TrustRoot; ``<host>/kube/apps/**`` must be signed by alice; ``<host>/kube/warn/**``
    too, in warn mode; and ``strict``, an invalid policy over ``<host>/kube/strict/**``. These are stored before the webhook is registered, so the
    invalid one gets in, as a policy written before an upgrade would (the webhook refuses it now)."""
    return [
        trust_root(kit.trusted_root_json()),
        cluster_policy("apps", [f"{images.host}/kube/apps/**"]),
        cluster_policy(WARN_POLICY, [f"{images.host}/kube/warn/**"], mode="warn"),
        invalid_policy(INVALID_POLICY, f"{images.host}/kube/strict/**"),
    ]


# --- the controller


def kopf_login(api: ApiServer) -> Callable[..., kopf.ConnectionInfo]:
    """A kopf login handler: the API server's URL and CA, the admin client certificate."""

    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(
            server=api.url,
            ca_path=str(api.pki.ca_file),
            certificate_path=str(api.pki.admin_cert),
            private_key_path=str(api.pki.admin_key),
            default_namespace="default",
        )

    return login


def kube_reader(api: ApiServer) -> KubernetesReader:
    """The controller's reader of Secrets and ServiceAccounts, from the same kubeconfig kubectl uses."""
    configuration = kubernetes.client.Configuration()
    load: Any = kubernetes.config.load_kube_config  # untyped
    load(config_file=str(api.kubeconfig), client_configuration=configuration)
    return KubernetesReader(kubernetes.client.ApiClient(configuration))


def _wait_for(what: str, check: Callable[[], bool], timeout: float, running: RunningController) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if running.errors or not running.thread.is_alive():
            raise RuntimeError(f"controller stopped while waiting until {what}: {running.errors!r}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"not {what} within {timeout}s")
        time.sleep(POLL_SECONDS)


def _webhook_answers(api: ApiServer, namespace: str, last: list[str]) -> bool:
    """True once the API server calls our webhooks and gets their answer: a server-side dry run of a pod
    with an image no policy covers is denied by one of them (not failed, not admitted)."""
    probe = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "webhook-probe"},
        "spec": {"containers": [{"name": "c", "image": "probe.invalid/not/governed@sha256:" + "0" * 64}]},
    }
    response = api.request("POST", f"/api/v1/namespaces/{namespace}/pods?dryRun=All", probe)
    last[:] = [f"HTTP {response.status_code}: {response.text[:1000]}"]
    try:
        message = str(response.json().get("message", ""))
    except ValueError:
        return False
    return re.match(r'admission webhook "[a-z-]+\.imprimatur\.dev" denied the request: ', message) is not None


def start_controller(
    api: ApiServer,
    registry: RegistryServer,
    pki: TestPKI,
    tmp: Path,
    *,
    port: int = 0,
    configurations: Callable[[str], list[dict[str, Any]]] | None = None,
    probe_namespace: str = "default",
    login: Callable[..., kopf.ConnectionInfo] | None = None,
    wait_loaded: bool = True,
) -> RunningController:
    """Start the controller (kopf + our webhook server) in a thread, wait until it has loaded the
    policies (unless ``wait_loaded`` is false), register its webhooks (``configurations(url)``; by
    default the chart's, see :mod:`tests.apiserver.webhooks`) and wait until the API server calls them
    for a pod in ``probe_namespace``."""
    tmp.mkdir(parents=True, exist_ok=True)
    controller: Controller = new_controller(
        cert=pki.server_cert,
        key=pki.server_key,
        registries_yaml=registry.registries_yaml(),
        tmp=tmp,
        reader=kube_reader(api),
        liveness_endpoint=f"http://127.0.0.1:{free_port()}/healthz",
        webhook_port=port,
        namespace=CONTROLLER_NAMESPACE,  # issue 7: where policies' key secretRefs are read, as in the chart
    )
    stop_flag = threading.Event()
    login = login or kopf_login(api)

    async def main(c: Controller) -> None:
        await serve_cluster(c, login=login, stop_flag=stop_flag)

    running = launch(controller, main, stop_flag)
    try:
        _wait_for("serving", controller.server.started.is_set, CONTROLLER_START_SECONDS, running)
        if wait_loaded:
            _wait_for("loaded", lambda: controller.state.loaded, LOAD_TIMEOUT_SECONDS, running)
        chosen = configurations or (lambda url: by_url(chart_webhook_configurations(), url, pki.ca_file))
        register(api, chosen(running.url))
        last: list[str] = []
        try:
            _wait_for(
                "answering the API server",
                lambda: _webhook_answers(api, probe_namespace, last),
                WEBHOOK_ACTIVE_TIMEOUT_SECONDS,
                running,
            )
        except RuntimeError as e:
            raise RuntimeError(f"{e}; the API server's last answer: {last}") from e
    except BaseException:
        running.stop()
        raise
    return running


# --- what kubectl prints


@dataclass(frozen=True)
class Outcome:
    """What one kubectl command did: exit code and output."""

    returncode: int
    stdout: str
    stderr: str

    def refusal(self, webhook: str) -> str:
        """The message of the denial by ``webhook`` (``pods``, ``workloads``, ``policies``), or ``""``."""
        marker = f'admission webhook "{webhook}.imprimatur.dev" denied the request: '
        return self.stderr.partition(marker)[2].strip()

    def denials(self, webhook: str) -> list[tuple[str, str]]:
        """``(reason, image)`` of each line of the denial by ``webhook`` (``pods`` or ``workloads``)."""
        marker = f'admission webhook "{webhook}.imprimatur.dev" denied the request: '
        _, found, rest = self.stderr.partition(marker)
        if not found:
            return []
        return [
            (m.group(1), m.group(2))
            for m in re.finditer(r"^([A-Z][A-Za-z]+): (\S+): ", rest, flags=re.MULTILINE)
        ]


def kubectl(api: ApiServer, *args: str, stdin: str | None = None) -> Outcome:
    result = api.kubectl(*args, stdin=stdin)
    return Outcome(result.returncode, result.stdout, result.stderr)


def wait_observed(api: ApiServer, plural: str, name: str, namespace: str | None = None) -> str:
    """Wait until the controller has written the status of the object's current generation (so it has
    compiled it into its policy set); return the status of its Ready condition."""
    where = f"namespaces/{namespace}/" if namespace else ""
    path = f"/apis/{API_GROUP}/{where}{plural}/{name}"
    deadline = time.monotonic() + OBSERVED_TIMEOUT_SECONDS
    while True:
        response = api.request("GET", path)
        assert response.status_code == 200, response.text
        document = response.json()
        status = document.get("status") or {}
        if status.get("observedGeneration") == document["metadata"]["generation"]:
            ready = [c for c in status.get("conditions", []) if c.get("type") == "Ready"]
            return str(ready[0]["status"]) if ready else ""
        assert time.monotonic() < deadline, f"{path}: status not written within {OBSERVED_TIMEOUT_SECONDS}s"
        time.sleep(POLL_SECONDS)


def table(output: str) -> list[Mapping[str, str]]:
    """The rows of a ``kubectl get`` table, as header -> cell. Cells are cut at the header's column
    starts, as kubectl aligns them, so an empty cell (an unset printer column) stays empty."""
    lines = [line for line in output.splitlines() if line.strip()]
    if not lines:
        return []
    starts = [m.start() for m in re.finditer(r"\S+(?: \S+)*", lines[0])]
    names = [lines[0][a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
    return [
        {name: line[a:b].strip() for name, a, b in zip(names, starts, [*starts[1:], None], strict=True)}
        for line in lines[1:]
    ]


def identity_of_anyone() -> dict[str, str]:
    return {"issuerRegExp": ".*", "subjectRegExp": ".*"}


def namespaced_policy(
    name: str, namespace: str, *, identity: Mapping[str, str] | None = None, **spec: object
) -> dict[str, object]:
    """An ImagePolicy in ``namespace`` over every image (``**``), trusting any identity of the kit
    (or ``identity``)."""
    return {
        "apiVersion": API_GROUP,
        "kind": "ImagePolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "images": [{"glob": "**"}],
            "identities": [dict(identity or identity_of_anyone())],
            "trustRoot": TRUST_ROOT_NAME,
            **spec,
        },
    }
