"""What the load benchmarks share: a real registry with kit-signed images, policies, TLS, reviews.

:func:`environment` starts Debian's ``docker-registry`` on 127.0.0.1 over TLS (the test fixture), a
test Sigstore kit, and writes the serving TLS directory. :class:`BenchEnv` pushes signed images,
writes a policy file (a TrustRoot for the kit and a ClusterImagePolicy over ``HOST/bench/**``, plus
any extra documents) and starts ``imprimatur serve`` on it. Reviews are pre-serialised once.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from benchmarks.loadgen import Target
from benchmarks.servers import ServerProcess, start_imprimatur
from tests.admission.harness import pod, review, webhook_for, workload, write_policies
from tests.fixtures.registry import RegistryServer, TestPKI, start_registry
from tests.kit.oci import push_signed_image
from tests.kit.sigstore import GOOGLE_ISSUER, Identity, SigstoreKit

SUBJECT: Final = "release@acme.example"
TRUST_ROOT: Final = "bench-kit"
UID_VARIANTS: Final = 64  # distinct uids per case, cycled


@dataclass
class BenchEnv:
    workdir: Path
    pki: TestPKI
    registry: RegistryServer
    kit: SigstoreKit
    identity: Identity = field(default_factory=lambda: Identity.email(SUBJECT, GOOGLE_ISSUER))

    @property
    def host(self) -> str:
        return self.registry.host

    def push_signed(self, repo: str, tag: str = "v1") -> str:
        """A random image at ``HOST/repo:tag``, signed by the trusted identity; its digest reference."""
        host = self.host
        digest = push_signed_image(
            self.registry,
            repo,
            tag,
            lambda d: [self.kit.sign_image(str(d), f"{host}/{repo}", identity=self.identity)],
        )
        return f"{host}/{repo}@{digest}"

    def policies(self, extra_globs: Sequence[str] = ()) -> list[dict[str, object]]:
        return [
            {
                "apiVersion": "imprimatur.dev/v1alpha1",
                "kind": "TrustRoot",
                "metadata": {"name": TRUST_ROOT},
                "spec": {"inline": self.kit.trusted_root_json().decode()},
            },
            {
                "apiVersion": "imprimatur.dev/v1alpha1",
                "kind": "ClusterImagePolicy",
                "metadata": {"name": "bench"},
                "spec": {
                    "images": [{"glob": g} for g in (f"{self.host}/bench/**", *extra_globs)],
                    "identities": [{"issuer": GOOGLE_ISSUER, "subject": SUBJECT}],
                    "trustRoot": TRUST_ROOT,
                },
            },
        ]

    def start_imprimatur(
        self,
        *,
        extra_globs: Sequence[str] = (),
        registries_yaml: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ServerProcess:
        policy_file = write_policies(self.workdir / "policies.yaml", self.policies(extra_globs))
        config = self.workdir / "registries.yaml"
        config.write_text(registries_yaml if registries_yaml is not None else self.registry.registries_yaml())
        return start_imprimatur(policy_file, self.workdir / "tls", config, self.workdir, env)

    def target(self, server: ServerProcess) -> Target:
        return Target("127.0.0.1", server.port, self.pki.ca_file)


@contextmanager
def environment() -> Iterator[BenchEnv]:
    """A registry, a kit and a TLS directory in a temporary directory; all stopped and removed after."""
    workdir = Path(tempfile.mkdtemp(prefix="imprimatur-bench-"))
    registry: RegistryServer | None = None
    try:
        pki = TestPKI.generate(workdir / "pki")
        registry = start_registry(workdir / "registry", pki)
        tls = workdir / "tls"
        tls.mkdir()
        shutil.copy(pki.server_cert, tls / "tls.crt")
        shutil.copy(pki.server_key, tls / "tls.key")
        shutil.copy(pki.ca_file, tls / "ca.crt")
        yield BenchEnv(workdir, pki, registry, SigstoreKit(now=datetime.now(UTC)))
    finally:
        if registry is not None:
            registry.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass(frozen=True)
class ReviewCase:
    """One kind of review: its webhook path and pre-serialised bodies (distinct uids)."""

    name: str
    path: str
    bodies: tuple[bytes, ...]
    images: int


def review_case(name: str, obj: Mapping[str, Any], images: int, variants: int = UID_VARIANTS) -> ReviewCase:
    bodies = tuple(json.dumps(review(obj, uid=str(uuid.uuid4()))).encode() for _ in range(variants))
    return ReviewCase(name, f"/{webhook_for(obj)}", bodies, images)


def pod_case(name: str, images: Sequence[str], variants: int = UID_VARIANTS) -> ReviewCase:
    return review_case(name, pod("bench", list(images)), len(images), variants)


def deployment_case(name: str, images: Sequence[str]) -> ReviewCase:
    return review_case(name, workload("Deployment", "bench", list(images)), len(images))
