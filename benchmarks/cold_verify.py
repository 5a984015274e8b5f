"""A cold `verify` of one image against the bare registry round trips of the same run.

Starts the real Debian docker-registry on 127.0.0.1 with TLS, pushes a kit-signed image by tag, then
times, alternately and each with a fresh connection (new TLS handshake, no cache):

* the floor: the same HTTP exchanges verification needs, made with a bare ``requests.Session``
  (HEAD the tag, GET the ``.sig`` manifest, GET the payload blob, GET the referrers API, GET the
  referrers tag fallback), plus the raw-crypto floor of ``benchmarks.crypto_verify`` (4 verifies);
* the measured: ``Engine.decide`` of a long-lived engine (as in the controller) with its caches
  emptied and a fresh ``RegistryClient``: parse, policy match, resolve, fetch, verify, evaluate.

It also checks that the engine made exactly the floor's requests. Target: ratio <= 1.3x.
Run: ``python -m benchmarks.cold_verify``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import requests

from benchmarks.crypto_verify import _floor_inputs
from controller.config import Settings
from controller.engine import Engine, builtin_trust_roots
from controller.policy import PolicySet, load_policies
from controller.registry import RegistryClient, RegistryConfig
from controller.verify import TrustRoot
from tests.fixtures.registry import RegistryServer, TestPKI, start_registry
from tests.kit.oci import push_signed_image
from tests.kit.sigstore import GOOGLE_ISSUER, Identity, SigstoreKit

TARGET_RATIO = 1.3
ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
POLICY = """
apiVersion: imprimatur.dev/v1alpha1
kind: ClusterImagePolicy
metadata: {name: bench}
spec:
  images: [{glob: "HOST/bench/**"}]
  identities: [{issuer: "https://accounts.google.com", subject: "release@acme.example"}]
  trustRoot: kit
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60, help="cold verifications per side")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pki = TestPKI.generate(work / "pki")
        server = start_registry(work / "registry", pki)
        try:
            return _run(server, args.rounds)
        finally:
            server.stop()


def _run(server: RegistryServer, rounds: int) -> int:
    now = datetime.now(UTC)
    kit = SigstoreKit(now)
    identity = Identity.email("release@acme.example", GOOGLE_ISSUER)
    layers = {}

    def sign(digest: object) -> list[object]:
        layer = kit.sign_image(str(digest), f"{server.host}/bench/app", identity=identity)
        layers["layer"] = layer
        return [layer]

    digest = push_signed_image(server, "bench/app", "v1", sign)  # type: ignore[arg-type]
    image = f"{server.host}/bench/app:v1"
    sig = layers["layer"].to_signature("bench")  # type: ignore[attr-defined]
    crypto_floor = _floor_inputs(kit, sig)

    config = RegistryConfig.from_yaml(server.registries_yaml())
    roots = builtin_trust_roots() | {"kit": TrustRoot.from_json(kit.trusted_root_json(), "kit")}
    policies = PolicySet(load_policies(POLICY.replace("HOST", server.host)))
    settings = Settings(cache_ttl_seconds=0)
    base = f"{server.url}/v2/bench/app"
    floor_requests = [
        ("HEAD", f"{base}/manifests/v1", {"Accept": ACCEPT}),
        ("GET", f"{base}/manifests/sha256-{digest.hex}.sig", {"Accept": ACCEPT}),
        ("GET", f"{base}/blobs/{sig.layer_digest}", {}),
        ("GET", f"{base}/referrers/{digest}", {"Accept": "application/vnd.oci.image.index.v1+json"}),
        ("GET", f"{base}/manifests/sha256-{digest.hex}", {"Accept": ACCEPT}),
    ]

    def floor_once() -> float:
        session = requests.Session()
        start = time.perf_counter()
        for method, url, headers in floor_requests:
            response = session.request(method, url, headers=headers, verify=server.ca_file, timeout=10)
            response.content  # noqa: B018 - read the body, as the client must
        crypto_floor()
        elapsed = time.perf_counter() - start
        session.close()
        return elapsed

    counted: list[int] = []
    # The controller's cold path: a long-lived engine (its event loop, workers and lanes warm) meets
    # an image it has never seen, over a fresh connection: caches emptied, a new registry client.
    loop = asyncio.new_event_loop()
    engine = Engine(
        registry=RegistryClient(config=config, session=requests.Session()),
        policies=policies,
        trust_roots=roots,
        settings=settings,
    )

    def measured_once() -> float:
        session = requests.Session()
        calls = [0]
        session.hooks["response"].append(lambda r, *a, **k: calls.__setitem__(0, calls[0] + 1))
        engine.registry = RegistryClient(config=config, session=session)
        engine.forget()
        start = time.perf_counter()
        decision = loop.run_until_complete(engine.decide([image]))
        elapsed = time.perf_counter() - start
        assert decision.allowed, decision.message()
        counted.append(calls[0])
        session.close()
        return elapsed

    floor_once()
    measured_once()  # warm imports outside the timing
    floor_t: list[float] = []
    measured_t: list[float] = []
    for _ in range(rounds):
        floor_t.append(floor_once())
        measured_t.append(measured_once())
    _report(rounds, len(floor_requests), floor_t, measured_t, counted)
    engine.close()
    loop.close()
    return 0


def _report(
    rounds: int, requests_made: int, floor_t: list[float], measured_t: list[float], counted: list[int]
) -> None:
    floor_s = statistics.median(floor_t)
    measured_s = statistics.median(measured_t)
    ratio = measured_s / floor_s
    print(f"cold verify of one tagged image, fresh TLS connection each time (median of {rounds})")
    print(f"  floor: {requests_made} bare round trips + 4 raw verifies: {floor_s * 1e3:7.2f} ms")
    print(
        f"  imprimatur Engine.decide, cold ({statistics.median(counted):.0f} requests):  {measured_s * 1e3:7.2f} ms"
    )
    verdict = "OK" if ratio <= TARGET_RATIO else "OVER TARGET"
    print(f"  ratio: {ratio:.2f}x  (target <= {TARGET_RATIO}x)  {verdict}")


if __name__ == "__main__":
    raise SystemExit(main())
