"""``python -m demo``: Imprimatur admitting and denying pods, with no cluster and no internet.

What runs, all on this machine and all real:

1. a private Sigstore (Fulcio CA, CT log, Rekor key) from the test kit, and its ``trusted_root.json``;
2. Debian's ``docker-registry`` over TLS on 127.0.0.1, holding images signed the way ``cosign sign``
   (keyless) signs them: by the release workflow, by someone else, or not at all;
3. ``imprimatur serve --policy policies.yaml``: the webhook server, in its own process, over HTTPS;
4. the AdmissionReview v1 requests kube-apiserver would send for Pods, Deployments and a
   ``kubectl debug`` ephemeral container, each answer printed in a table.

Exit status 0 when every answer is the expected one, 1 otherwise. Everything started is stopped.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from tests.admission.harness import pod, review, webhook_for, workload, write_policies
from tests.fixtures.registry import RegistryServer, TestPKI, free_port, start_registry
from tests.kit.oci import push_signed_image
from tests.kit.sigstore import GITHUB_OAUTH_ISSUER, Identity, SigstoreKit

REPO = Path(__file__).resolve().parents[1]
READY_TIMEOUT_SECONDS = 30.0
HTTP_TIMEOUT_SECONDS = 15.0

RELEASE = Identity.github_workflow("acme/shop", ".github/workflows/release.yml", "refs/heads/main")
INTERN = Identity.email("intern@acme.example", GITHUB_OAUTH_ISSUER)


@dataclass(frozen=True)
class Case:
    """One admission request and the answer we expect."""

    title: str
    obj: dict[str, object]
    expect_allowed: bool
    operation: str = "CREATE"
    old: dict[str, object] | None = None
    sub_resource: str | None = None


@dataclass(frozen=True)
class Answer:
    allowed: bool
    message: str
    warnings: tuple[str, ...]
    code: int | None


def _policies(host: str, trusted_root: bytes) -> list[dict[str, object]]:
    return [
        {
            "apiVersion": "imprimatur.dev/v1alpha1",
            "kind": "TrustRoot",
            "metadata": {"name": "acme-sigstore"},
            "spec": {"inline": trusted_root.decode()},
        },
        {
            "apiVersion": "imprimatur.dev/v1alpha1",
            "kind": "ClusterImagePolicy",
            "metadata": {"name": "shop-release"},
            "spec": {
                "images": [{"glob": f"{host}/shop/**"}],
                "identities": [
                    {
                        "issuer": RELEASE.issuer,
                        "subject": RELEASE.subject,
                        "claims": {"githubWorkflowRepository": "acme/shop"},
                    }
                ],
                "trustRoot": "acme-sigstore",
            },
        },
        {
            "apiVersion": "imprimatur.dev/v1alpha1",
            "kind": "ClusterImagePolicy",
            "metadata": {"name": "labs-warn"},
            "spec": {
                "images": [{"glob": f"{host}/labs/**"}],
                "identities": [{"issuer": RELEASE.issuer, "subjectRegExp": "https://github\\.com/acme/.*"}],
                "trustRoot": "acme-sigstore",
                "mode": "warn",
            },
        },
        # A namespace admin's policies: they can only add requirements in their own namespace.
        {
            "apiVersion": "imprimatur.dev/v1alpha1",
            "kind": "ImagePolicy",
            "metadata": {"name": "trust-anyone", "namespace": "team-a"},
            "spec": {
                "images": [{"glob": "**"}],
                "identities": [{"issuerRegExp": ".*", "subjectRegExp": ".*"}],
                "trustRoot": "acme-sigstore",
            },
        },
        {
            "apiVersion": "imprimatur.dev/v1alpha1",
            "kind": "ImagePolicy",
            "metadata": {"name": "prod-only", "namespace": "team-a"},
            "spec": {
                "images": [{"glob": f"{host}/shop/**"}],
                "identities": [{"issuer": RELEASE.issuer, "subject": RELEASE.subject}],
                "annotations": {"env": "prod"},
                "trustRoot": "acme-sigstore",
            },
        },
    ]


def _cases(host: str, frontend: str, backend: str, worker: str, lab: str) -> list[Case]:
    debugger_old = pod("checkout", [frontend])
    return [
        Case("Pod: frontend signed by the release workflow", pod("frontend", [frontend]), True),
        Case("Pod: frontend by tag (the tag can move)", pod("frontend", [f"{host}/shop/frontend:1.4"]), True),
        Case("Pod: backend signed by an intern", pod("backend", [backend]), False),
        Case("Pod: worker not signed at all", pod("worker", [worker]), False),
        Case(
            "Pod: image no policy covers",
            pod("random", [f"{host}/random/app@{frontend.split('@')[1]}"]),
            False,
        ),
        Case("Pod: lab tool, warn-mode policy", pod("lab", [lab]), True),
        Case("Deployment: frontend", workload("Deployment", "frontend", [frontend]), True),
        Case(
            "Deployment: frontend + unsigned sidecar",
            workload("Deployment", "shop", [frontend, worker]),
            False,
        ),
        Case("CronJob: backend report", workload("CronJob", "report", [backend]), False),
        Case(
            "team-a trusts anyone: no cluster policy",
            pod("attack", [f"{host}/random/app@{frontend.split('@')[1]}"], namespace="team-a"),
            False,
        ),
        Case(
            "team-a adds env=prod: frontend lacks it", pod("frontend", [frontend], namespace="team-a"), False
        ),
        Case(
            "kubectl debug: unsigned debugger",
            pod("checkout", [frontend], ephemeral_images=[worker]),
            False,
            operation="UPDATE",
            old=debugger_old,
            sub_resource="ephemeralcontainers",
        ),
    ]


@contextmanager
def _serve(
    policy_file: Path, tls_dir: Path, registries_yaml: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port, health, metrics = free_port(), free_port(), free_port()
    log = (tls_dir.parent / "imprimatur.log").open("wb")
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "IMPRIMATUR_WEBHOOK_ADDR": "127.0.0.1",
        "IMPRIMATUR_WEBHOOK_PORT": str(port),
        "IMPRIMATUR_TLS_DIR": str(tls_dir),
        "IMPRIMATUR_LIVENESS_ENDPOINT": f"http://127.0.0.1:{health}/healthz",
        "IMPRIMATUR_METRICS_PORT": str(metrics),
        "IMPRIMATUR_METRICS_ADDR": "127.0.0.1",
        "IMPRIMATUR_REGISTRY_CONFIG": str(registries_yaml),
    }
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, a path we created
        [sys.executable, "-m", "controller.cli", "serve", "--policy", str(policy_file)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"imprimatur serve exited with {process.returncode}: "
                    f"{(tls_dir.parent / 'imprimatur.log').read_text()[-2000:]}"
                )
            try:
                if requests.get(f"http://127.0.0.1:{health}/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("imprimatur serve did not become ready")
            time.sleep(0.1)
        yield f"https://127.0.0.1:{port}", process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def _ask(url: str, case: Case, ca_file: str) -> Answer:
    request = review(case.obj, operation=case.operation, old=case.old, sub_resource=case.sub_resource)
    reply = requests.post(
        f"{url}/{webhook_for(case.obj)}", json=request, verify=ca_file, timeout=HTTP_TIMEOUT_SECONDS
    )
    reply.raise_for_status()
    response: dict[str, Any] = reply.json()["response"]
    if response["uid"] != request["request"]["uid"]:  # type: ignore[index]
        raise RuntimeError("the webhook answered another request")
    status = response.get("status") or {}
    return Answer(
        bool(response["allowed"]),
        str(status.get("message", "")),
        tuple(response.get("warnings", ())),
        status.get("code"),
    )


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _print_table(rows: Sequence[tuple[Case, Answer]], out: Any) -> None:
    header = f"{'#':>2}  {'request':<44} {'expect':<7} {'answer':<7} {'reason':<20} ok"
    out.write(header + "\n" + "-" * len(header) + "\n")
    for i, (case, answer) in enumerate(rows, 1):
        if answer.allowed:
            count = len(answer.warnings)
            reason = f"allowed, {count} warning{'s' if count > 1 else ''}" if count else "allowed"
        else:
            reason = answer.message.split(":", 1)[0]
        ok = "✓" if answer.allowed == case.expect_allowed else "✗ MISMATCH"
        out.write(
            f"{i:>2}  {_short(case.title, 44):<44} {'ADMIT' if case.expect_allowed else 'DENY':<7} "
            f"{'ADMIT' if answer.allowed else 'DENY':<7} {_short(reason, 20):<20} {ok}\n"
        )
    out.write("\nDetails (the admission message kubectl shows, and warnings):\n")
    for i, (_case, answer) in enumerate(rows, 1):
        for line in answer.message.splitlines():
            out.write(f"{i:>2}  denied [{answer.code}]: {line}\n")
        for warning in answer.warnings:
            out.write(f"{i:>2}  warning: {warning}\n")


def run(out: Any = sys.stdout, keep: bool = False) -> int:
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="imprimatur-demo-"))
    registry: RegistryServer | None = None
    try:
        out.write("Imprimatur demo: a local Sigstore, a local registry, the real webhook over HTTPS.\n\n")
        pki = TestPKI.generate(workdir / "pki")
        registry = start_registry(workdir / "registry", pki)
        host = registry.host
        kit = SigstoreKit(now=datetime.now(UTC))

        def signed(repo: str, tag: str, who: Identity) -> str:
            digest = push_signed_image(
                registry, repo, tag, lambda d: [kit.sign_image(str(d), f"{host}/{repo}", identity=who)]
            )
            return f"{host}/{repo}@{digest}"

        frontend = signed("shop/frontend", "1.4", RELEASE)
        backend = signed("shop/backend", "2.0", INTERN)
        worker = f"{host}/shop/worker@{registry.push_random_image('shop/worker', '0.9')}"
        lab = f"{host}/labs/tool@{registry.push_random_image('labs/tool', 'dev')}"
        out.write(f"registry   https://{host}  (docker-registry, TLS)\n")
        out.write(f"signed by  {RELEASE.subject}\n           (issuer {RELEASE.issuer})\n\n")

        policy_file = write_policies(workdir / "policies.yaml", _policies(host, kit.trusted_root_json()))
        tls_dir = workdir / "tls"
        tls_dir.mkdir()
        shutil.copy(pki.server_cert, tls_dir / "tls.crt")
        shutil.copy(pki.server_key, tls_dir / "tls.key")
        shutil.copy(pki.ca_file, tls_dir / "ca.crt")
        registries_yaml = workdir / "registries.yaml"
        registries_yaml.write_text(registry.registries_yaml())

        with _serve(policy_file, tls_dir, registries_yaml) as (url, _process):
            out.write(f"webhook    {url}  (imprimatur serve --policy {policy_file.name})\n\n")
            rows = [
                (case, _ask(url, case, pki.ca_file)) for case in _cases(host, frontend, backend, worker, lab)
            ]
        _print_table(rows, out)
        mismatches = sum(1 for case, answer in rows if case.expect_allowed != answer.allowed)
        out.write(
            f"\n{len(rows) - mismatches}/{len(rows)} answers as expected in {time.monotonic() - started:.1f}s.\n"
        )
        if keep:
            out.write(f"Kept {workdir} (policies.yaml, imprimatur.log).\n")
        return 0 if mismatches == 0 else 1
    finally:
        if registry is not None:
            registry.stop()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (policies, server log)")
    args = parser.parse_args(argv)
    return run(keep=args.keep)


if __name__ == "__main__":
    sys.exit(main())
