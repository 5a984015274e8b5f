"""The shipped image, built and run for real (issue 9): ``hack/build-image.sh`` once per session, then the
controller run FROM that image against the real kube-apiserver, with the chart's settings.

How the container is run (``image_controller``):

* Its flags come from the Deployment that ``helm template`` renders (:func:`tests.image.podman.pod_arguments`):
  uid/gid 65532 and fsGroup, non-root, read-only root, no privilege escalation, all capabilities
  dropped, the default seccomp profile, the memory and CPU limits, the chart's env, the TLS Secret at
  ``/etc/imprimatur/tls`` (mode 0440, group 65532), the registries ConfigMap at
  ``/etc/imprimatur/registries``, the test registry's CA as the Secret ``registryTLS`` names (at
  ``/etc/imprimatur/registry-tls/registry-ca``, mode 0440: the chart's path for a private CA, end to
  end) and ``/tmp`` as a 64 MiB tmpfs. The chart is rendered with ``tls.source=external`` (the
  Secret's content is our 127.0.0.1 certificate), free ports, ``registryTLS`` and ``registryConfig``
  naming the CA file it mounts.
* What a pod would have and a container on the host network must do differently (``HOST_NETWORK``):
  ``--network host``; the webhook, health and metrics servers bind 127.0.0.1, not 0.0.0.0; kopf logs
  in with a kubeconfig (the admin client certificate, mounted read-only) instead of a service account.
* Its webhooks are the chart's rendered namespaced webhooks, registered by URL in a lane of their own
  (:mod:`tests.apiserver.webhooks`): they select only namespaces labelled ``imprimatur.test/lane=image``,
  which also carry the chart's opt-out label, so a shared in-process controller never sees them.
* It runs attached (``podman run --rm``) as a child of the test process that dies with it
  (``setpriv --pdeathsig``; podman passes the signal on), and is removed with ``podman rm -f`` at the end.

The figures (build times, image size, push) are printed at the end of the session.
"""

from __future__ import annotations

import base64
import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from tests.admission.harness import TRUSTED_SUBJECT, cluster_policy, trust_root
from tests.apiserver.harness import Outcome, kubectl
from tests.apiserver.webhooks import (
    LANE_LABEL,
    by_url,
    chart_webhook_configurations,
    for_lane,
    helm_binary,
    lane_labels,
    register,
    unregister,
)
from tests.deploy.helmrun import CHART, KUBE_VERSION, NAMESPACE, RELEASE, Helm, Obj, find
from tests.fixtures.apiserver import ApiServer
from tests.fixtures.processes import spawn, stop
from tests.fixtures.registry import RegistryServer, TestPKI, free_port
from tests.image.podman import (
    CONTAINERS_CONF,
    BuiltImage,
    ImageError,
    PodContext,
    build_image,
    pod_arguments,
    podman,
    probe_url,
    the_container,
    wait_until,
)
from tests.kit.oci import push_signed_image
from tests.kit.sigstore import GITHUB_OAUTH_ISSUER, Identity, SigstoreKit

__all__ = ["ImageController", "built_image", "image_controller"]

LANE = "image"
TEST_NAMESPACE = "image-test"
POLICY = "image-test"
CONTAINER_PREFIX = "imprimatur-image-test"
REGISTRY_CA = "registry-ca"  # the registryTLS entry
REGISTRY_CA_SECRET = "image-test-registry-ca"  # the Secret it names, holding ca.crt
REGISTRY_CA_FILE = f"/etc/imprimatur/registry-tls/{REGISTRY_CA}/ca.crt"
KUBECONFIG_DIR = "/etc/imprimatur/kube"
STARTUP_SECONDS = 60.0  # the chart's startupProbe: periodSeconds 2 x failureThreshold 30
ANSWER_SECONDS = 30.0
STOP_SECONDS = 5

FIGURES: list[str] = []  # printed by pytest_terminal_summary


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("the shipped image (tests/image)")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def built_image() -> BuiltImage:
    """The project's Dockerfile built with podman (the base stand-in built once and cached)."""
    try:
        image = build_image()
    except ImageError as e:
        pytest.fail(str(e))
    FIGURES.append(
        f"build: {image.seconds:.1f} s for hack/build-image.sh; {image.report.replace(chr(10), '; ')}"
    )
    FIGURES.append(
        f"image: {image.name} {image.size / 1e6:.0f} MB (podman image inspect .Size), id {image.id[:12]}"
    )
    return image


@dataclass(frozen=True)
class ImageController:
    """The controller running from the built image, its lane namespace, and the images to review."""

    api: ApiServer
    image: BuiltImage
    container: str
    log_file: Path
    namespace: str
    signed: str
    unsigned: str

    def kubectl(self, *args: str, stdin: str | None = None) -> Outcome:
        return kubectl(self.api, *args, stdin=stdin)

    def logs(self) -> str:
        return self.log_file.read_text(errors="replace")


def render_text(helm: Helm, *args: str) -> str:
    """``helm template`` of the chart as the release the deploy tests render, with ``args`` added."""
    return helm.run(
        "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION, *args
    )


def render(helm: Helm, *args: str) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(render_text(helm, *args)) if doc]


def kubeconfig(api: ApiServer) -> bytes:
    """The admin's kubeconfig with the certificates inline, so one read-only file is all kopf needs."""

    def data(path: Path | str) -> str:
        return base64.b64encode(Path(path).read_bytes()).decode("ascii")

    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "test",
                "cluster": {"server": api.url, "certificate-authority-data": data(api.pki.ca_file)},
            }
        ],
        "users": [
            {
                "name": "admin",
                "user": {
                    "client-certificate-data": data(api.pki.admin_cert),
                    "client-key-data": data(api.pki.admin_key),
                },
            }
        ],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
        "current-context": "test",
    }
    return yaml.safe_dump(document).encode()


def _publish(registry: RegistryServer, kit: SigstoreKit) -> tuple[str, str]:
    """A signed (by alice) and an unsigned image under ``image-test/``, by digest."""
    host = registry.host
    identity = Identity.email(TRUSTED_SUBJECT, GITHUB_OAUTH_ISSUER)
    repo = "image-test/app"
    digest = push_signed_image(
        registry, repo, "v1", lambda d: [kit.sign_image(str(d), f"{host}/{repo}", identity=identity)]
    )
    unsigned = registry.push_random_image("image-test/unsigned", "v1")
    return f"{host}/{repo}@{digest}", f"{host}/image-test/unsigned@{unsigned}"


def _answered(api: ApiServer, namespace: str, last: list[str]) -> bool:
    """True once the lane's webhook answers with the policies loaded: an image no policy covers is denied
    NoMatchingPolicy (before kopf's first listing it would be PoliciesNotLoaded)."""
    probe = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "image-probe"},
        "spec": {"containers": [{"name": "c", "image": "probe.invalid/not/governed@sha256:" + "0" * 64}]},
    }
    response = api.request("POST", f"/api/v1/namespaces/{namespace}/pods?dryRun=All", probe)
    last[:] = [f"HTTP {response.status_code}: {response.text[:500]}"]
    try:
        message = str(response.json().get("message", "")) if response.status_code == 403 else ""
    except ValueError:
        return False
    return message.startswith('admission webhook "pods.imprimatur.dev" denied the request: NoMatchingPolicy:')


def _healthy(url: str) -> bool:
    try:
        return requests.get(url, timeout=1.0).status_code == 200
    except requests.RequestException:
        return False


def _chart_flags(
    deployment: Obj, rendered: list[Obj], pki: TestPKI, registry: RegistryServer, volumes: Path
) -> list[str]:
    """The Deployment's pod as podman flags: its TLS Secret holds our 127.0.0.1 serving certificate, the
    registryTLS Secret the test registry's CA."""
    secret_name = next(
        v["secret"]["secretName"]
        for v in deployment["spec"]["template"]["spec"]["volumes"]
        if v["name"] == "tls"
    )
    context = PodContext(
        namespace=NAMESPACE,
        pod_name="imprimatur-image-test-0",
        secrets={
            secret_name: {
                "tls.crt": Path(pki.server_cert).read_bytes(),
                "tls.key": Path(pki.server_key).read_bytes(),
                "ca.crt": Path(pki.ca_file).read_bytes(),
            },
            REGISTRY_CA_SECRET: {"ca.crt": Path(registry.ca_file).read_bytes()},
        },
        config_maps={d["metadata"]["name"]: d["data"] for d in rendered if d["kind"] == "ConfigMap"},
        volumes_dir=volumes,
    )
    return pod_arguments(deployment, context)


def _host_network_flags(deployment: Obj, api: ApiServer, extra: Path) -> list[str]:
    """What differs from a pod: the host's network (so 127.0.0.1 binds) and a kubeconfig."""
    extra.mkdir()
    (extra / "config").write_bytes(kubeconfig(api))
    for path in extra.iterdir():
        path.chmod(0o444)
    liveness = next(
        e["value"] for e in the_container(deployment)["env"] if e["name"] == "IMPRIMATUR_LIVENESS_ENDPOINT"
    )
    return [
        "--network=host",
        "--env=IMPRIMATUR_WEBHOOK_ADDR=127.0.0.1",
        "--env=IMPRIMATUR_METRICS_ADDR=127.0.0.1",
        f"--env=IMPRIMATUR_LIVENESS_ENDPOINT={liveness.replace('//0.0.0.0:', '//127.0.0.1:')}",
        f"--env=KUBECONFIG={KUBECONFIG_DIR}/config",
        f"--volume={extra / 'config'}:{KUBECONFIG_DIR}/config:ro",
    ]


@pytest.fixture(scope="session")
def image_controller(  # noqa: PLR0917 (pytest fixtures are positional)
    apiserver: ApiServer,
    built_image: BuiltImage,
    registry: RegistryServer,
    registry_pki: TestPKI,
    sigstore_kit: SigstoreKit,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ImageController]:
    """The controller from the built image, its lane's webhooks registered and answering."""
    tmp = tmp_path_factory.mktemp("image-controller")
    tmp.chmod(0o755)  # the volumes under it are read by uid 65532
    signed, unsigned = _publish(registry, sigstore_kit)
    apiserver.apply(
        [
            trust_root(sigstore_kit.trusted_root_json()),
            cluster_policy(
                POLICY,
                [f"{registry.host}/image-test/**"],
                namespaceSelector={"matchLabels": {LANE_LABEL: LANE}},
            ),
        ]
    )
    apiserver.create_namespace(NAMESPACE)
    apiserver.create_namespace(TEST_NAMESPACE, lane_labels(LANE))

    webhook, health, metrics = free_port(), free_port(), free_port()
    registries = tmp / "registries.yaml"
    registries.write_text(
        yaml.safe_dump({"configs": {registry.host: {"tls": {"ca_file": REGISTRY_CA_FILE}}}})
    )
    rendered = render(
        Helm(helm_binary()),
        "--set", f"ports.webhook={webhook},ports.health={health},ports.metrics={metrics}",
        "--set", "tls.source=external",
        "--set", f"registryTLS[0].name={REGISTRY_CA},registryTLS[0].secretName={REGISTRY_CA_SECRET}",
        "--set-file", f"registryConfig={registries}",
    )  # fmt: skip
    deployment = find(rendered, "Deployment")
    chart_flags = _chart_flags(deployment, rendered, registry_pki, registry, tmp / "volumes")
    host_network = _host_network_flags(deployment, apiserver, tmp / "extra")
    name = f"{CONTAINER_PREFIX}-{free_port()}"
    log = tmp / "container.log"
    command = [
        "env",
        f"CONTAINERS_CONF={CONTAINERS_CONF}",
        "podman",
        "run",
        "--rm",
        f"--name={name}",
        *chart_flags,
        *host_network,
        built_image.name,
    ]
    (tmp / "podman-run.txt").write_text(" ".join(command) + "\n")
    process = spawn(command, log, STOP_SECONDS + 5)
    configurations = for_lane(
        by_url(chart_webhook_configurations(), f"https://127.0.0.1:{webhook}", registry_pki.ca_file), LANE
    )

    def gone() -> str | None:
        if process.poll() is None:
            return None
        return f"exit {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}"

    try:
        started = time.monotonic()
        wait_until(
            "healthy (the chart's startupProbe)",
            lambda: _healthy(probe_url(deployment, "startupProbe")),
            STARTUP_SECONDS,
            gone,
        )
        FIGURES.append(
            f"run: the container answered its startupProbe {time.monotonic() - started:.1f} s after podman run"
        )
        register(apiserver, configurations)
        last: list[str] = []
        try:
            wait_until(
                "answering the API server with the policies loaded",
                lambda: _answered(apiserver, TEST_NAMESPACE, last),
                ANSWER_SECONDS,
                gone,
            )
        except ImageError as e:
            raise ImageError(f"{e}; the API server's last answer: {last}") from e
        yield ImageController(
            apiserver,
            built_image,
            name,
            log,
            TEST_NAMESPACE,
            signed,
            unsigned,
        )
    except ImageError as e:
        pytest.fail(f"{e}\ncontainer log:\n{log.read_text(errors='replace')[-3000:]}")
    finally:
        with contextlib.suppress(Exception):
            unregister(apiserver, configurations)
        podman("rm", "--force", f"--time={STOP_SECONDS}", name, check=False, timeout=STOP_SECONDS + 30)
        stop(process, STOP_SECONDS)
        with contextlib.suppress(subprocess.SubprocessError):
            leftover = podman("ps", "--all", "--quiet", f"--filter=name={name}", check=False).stdout.strip()
            assert not leftover, f"container {name} left behind"
