"""``python -m demo``: Imprimatur admitting, denying and pinning pods, with no cluster and no internet.

What runs, all on this machine and all real:

1. a private Sigstore (Fulcio CA, CT log, Rekor key) from the test kit, and its ``trusted_root.json``;
2. Debian's ``docker-registry`` over TLS on 127.0.0.1, holding images signed the way ``cosign sign``
   signs them (keyless by the release workflow or by someone else, with a key, or not at all), some
   with an SLSA provenance attestation (``cosign attest``) (see :mod:`demo.world`);
3. ``imprimatur serve --policy policies.yaml``: the webhook server, in its own process, over HTTPS,
   with policies that require signatures, attestations with CEL conditions, a key, a warn-mode
   deadline, and an ImagePolicyException;
4. the AdmissionReview v1 requests kube-apiserver would send for Pods, Deployments and a
   ``kubectl debug`` ephemeral container, to the validating webhooks and to the mutating one that pins
   tags to digests (see :mod:`demo.cases`), each answer checked and printed in a table.

Exit status 0 when every answer is the expected one, 1 otherwise. Everything started is stopped.
"""

from __future__ import annotations

import argparse
import base64
import json
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

from demo.cases import Answer, Case, cases, check
from demo.world import RELEASE, Setting, policies, publish
from tests.admission.harness import review, write_policies
from tests.fixtures.registry import RegistryServer, TestPKI, free_port, start_registry
from tests.kit.sigstore import SigstoreKit

REPO = Path(__file__).resolve().parents[1]
READY_TIMEOUT_SECONDS = 30.0
READY_POLL_SECONDS = 0.05
HTTP_TIMEOUT_SECONDS = 15.0
MAX_PATCH_OPS = 64


@dataclass(frozen=True)
class Server:
    """``imprimatur serve`` started in its own process; :meth:`wait_ready` before asking it anything."""

    url: str
    health: str
    process: subprocess.Popen[bytes]
    log: Path

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"imprimatur serve exited with {self.process.returncode}: {self.log.read_text()[-2000:]}"
                )
            try:
                if requests.get(self.health, timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("imprimatur serve did not become ready")
            time.sleep(READY_POLL_SECONDS)


@contextmanager
def _serve(policy_file: Path, tls_dir: Path, registries_yaml: Path) -> Iterator[Server]:
    """Start the server (it loads the policies while the caller goes on) and stop it at the end."""
    port, health, metrics = free_port(), free_port(), free_port()
    log_path = tls_dir.parent / "imprimatur.log"
    log = log_path.open("wb")
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
        yield Server(f"https://127.0.0.1:{port}", f"http://127.0.0.1:{health}/healthz", process, log_path)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def _patch(response: dict[str, Any]) -> tuple[dict[str, object], ...]:
    if "patch" not in response:
        return ()
    if response.get("patchType") != "JSONPatch":
        raise RuntimeError(f"the webhook sent a patch of type {response.get('patchType')!r}")
    ops = json.loads(base64.b64decode(response["patch"], validate=True))
    if not isinstance(ops, list) or len(ops) > MAX_PATCH_OPS or not all(isinstance(op, dict) for op in ops):
        raise RuntimeError("the webhook sent a malformed JSON patch")
    return tuple(ops)


def _ask(url: str, case: Case, ca_file: str) -> Answer:
    request = review(case.obj, operation=case.operation, old=case.old, sub_resource=case.sub_resource)
    reply = requests.post(f"{url}/{case.webhook}", json=request, verify=ca_file, timeout=HTTP_TIMEOUT_SECONDS)
    reply.raise_for_status()
    response: dict[str, Any] = reply.json()["response"]
    if response["uid"] != request["request"]["uid"]:  # type: ignore[index]
        raise RuntimeError("the webhook answered another request")
    status = response.get("status") or {}
    return Answer(
        bool(response["allowed"]),
        str(status.get("message", "")),
        tuple(response.get("warnings") or ()),
        status.get("code"),
        _patch(response),
    )


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


TITLE_WIDTH = 44
REASON_WIDTH = 26


def _summary(answer: Answer) -> str:
    count = len(answer.warnings)
    if answer.allowed and count:
        return f"{answer.reason}, {count} warning{'s' if count > 1 else ''}"
    return answer.reason


def _print_table(rows: Sequence[tuple[Case, Answer, str]], out: Any) -> None:
    header = f"{'#':>2}  {'request':<{TITLE_WIDTH}} {'expect':<7} {'answer':<7} {'reason':<{REASON_WIDTH}} ok"
    out.write(header + "\n" + "-" * len(header) + "\n")
    for i, (case, answer, problem) in enumerate(rows, 1):
        expect = "ADMIT" if case.expect_allowed else "DENY"
        got = "ADMIT" if answer.allowed else "DENY"
        out.write(
            f"{i:>2}  {_short(case.title, TITLE_WIDTH):<{TITLE_WIDTH}} {expect:<7} {got:<7} "
            f"{_short(_summary(answer), REASON_WIDTH):<{REASON_WIDTH}} {'✗ MISMATCH' if problem else '✓'}\n"
        )
    out.write("\nDetails (the admission message kubectl shows, warnings, and the pinning patch):\n")
    for i, (case, answer, problem) in enumerate(rows, 1):
        for line in answer.message.splitlines():
            out.write(f"{i:>2}  denied [{answer.code}]: {line}\n")
        for warning in answer.warnings:
            out.write(f"{i:>2}  warning: {warning}\n")
        if case.pin is not None:
            for op in answer.patch:
                if str(op.get("path")).endswith("/image"):
                    out.write(f"{i:>2}  patch: {op.get('op')} {op.get('path')} = {op.get('value')}\n")
            for image, signer in answer.signers().items():
                out.write(f"{i:>2}  annotation imprimatur.dev/verified-images: {image} signed by {signer}\n")
        if problem:
            out.write(f"{i:>2}  MISMATCH: {problem}\n")


def run(out: Any = sys.stdout, keep: bool = False) -> int:
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="imprimatur-demo-"))
    registry: RegistryServer | None = None
    try:
        out.write("Imprimatur demo: a local Sigstore, a local registry, the real webhook over HTTPS.\n\n")
        pki = TestPKI.generate(workdir / "pki")
        registry = start_registry(workdir / "registry", pki)
        now = datetime.now(UTC)
        kit = SigstoreKit(now=now)
        setting = Setting.of(registry.host, now)
        policy_file = write_policies(workdir / "policies.yaml", policies(setting, kit.trusted_root_json()))
        tls_dir = workdir / "tls"
        tls_dir.mkdir()
        shutil.copy(pki.server_cert, tls_dir / "tls.crt")
        shutil.copy(pki.server_key, tls_dir / "tls.key")
        shutil.copy(pki.ca_file, tls_dir / "ca.crt")
        registries_yaml = workdir / "registries.yaml"
        registries_yaml.write_text(registry.registries_yaml())

        with _serve(policy_file, tls_dir, registries_yaml) as server:
            world = publish(registry, kit, setting)  # while the server starts: policies name no digest
            out.write(f"registry   https://{setting.host}  (docker-registry, TLS)\n")
            out.write(f"signed by  {RELEASE.subject}\n           (issuer {RELEASE.issuer})\n\n")
            server.wait_ready()
            out.write(f"webhook    {server.url}  (imprimatur serve --policy {policy_file.name})\n\n")
            answered = [(case, _ask(server.url, case, pki.ca_file)) for case in cases(world)]
        rows = [(case, answer, check(case, answer)) for case, answer in answered]
        _print_table(rows, out)
        mismatches = sum(1 for _, _, problem in rows if problem)
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
