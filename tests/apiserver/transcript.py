"""Print a real kubectl session against the real API server and our controller (for the README).

``python -m tests.apiserver.transcript`` starts what the e2e tests start (etcd, kube-apiserver, a
docker-registry with kit-signed images, the controller behind the chart's webhooks), runs a few kubectl
commands and prints each with its output, stdout and stderr as a terminal shows them.
"""

from __future__ import annotations

import shlex
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from tests.admission.harness import cluster_policy, trust_root
from tests.apiserver.harness import WARN_POLICY, publish, start_controller
from tests.fixtures.apiserver import ApiServer, run_apiserver
from tests.fixtures.registry import TestPKI, start_registry
from tests.kit.sigstore import SigstoreKit


def _show(api: ApiServer, *args: str) -> None:
    result = api.kubectl(*args)
    print("$ kubectl " + " ".join(shlex.quote(a) for a in args))
    output = result.stderr + result.stdout
    sys.stdout.write(output if output.endswith("\n") else output + "\n")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="imprimatur-transcript-") as tmp:
        root = Path(tmp)
        pki = TestPKI.generate(root / "pki")
        registry = start_registry(root / "registry", pki)
        try:
            kit = SigstoreKit(now=datetime.now(UTC))
            images = publish(registry, kit)
            with run_apiserver(root / "apiserver") as api:
                api.apply(
                    [
                        trust_root(kit.trusted_root_json()),
                        cluster_policy("apps", [f"{images.host}/kube/apps/**"]),
                        cluster_policy(WARN_POLICY, [f"{images.host}/kube/warn/**"], mode="warn"),
                    ]
                )
                controller = start_controller(api, registry, pki, root / "controller")
                try:
                    _show(api, "get", "clusterimagepolicies")
                    _show(api, "run", "unsigned", f"--image={images.unsigned}")
                    _show(api, "run", "signed", f"--image={images.signed_tag}")
                    _show(api, "get", "pod", "signed", "-o", "jsonpath={.spec.containers[0].image}")
                    _show(api, "run", "warned", f"--image={images.warn_unsigned}")
                finally:
                    controller.stop()
        finally:
            registry.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
