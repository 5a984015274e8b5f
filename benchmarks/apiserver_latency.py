"""Webhook latency on the real API server: what our webhooks add to a pod's creation, in one run.

It starts etcd, the real kube-apiserver (tests/fixtures/apiserver.py), a docker-registry with
kit-signed images, and the controller (kopf and its webhook server, in a thread, as the e2e tests run
it) behind the chart's own webhook configurations (tests/apiserver/webhooks.py). Then it creates pods
in four cases, interleaved round by round so that drift in the machine's load hits each alike:

* ``absent``: in a namespace labelled ``imprimatur.dev/exclude=true``: the API server calls no webhook;
* ``digest``: the same signed image by digest every time (its verdict is cached after the first). The
  pinning webhook's ``matchConditions`` skip it: one webhook call, the validating one;
* ``tag``: the same image by its tag (cached): the pinning webhook rewrites it to ``tag@digest``, then
  the validating webhook checks that digest: two webhook calls;
* ``cold``: a fresh signed image (new digest) every time: a full verification per pod;
* ``floor-digest`` and ``floor-tag``: the same pods in a namespace whose webhooks (copies of the chart's,
  the same rules and ``matchConditions``) call the bare aiohttp floor (:mod:`benchmarks.servers`, its own
  process), which allows everything at once: what the API server's webhook round trips cost by
  themselves on this machine, one for a digest, two for a tag. Our webhooks' own share is the
  difference.

Two clocks. **API**: a pod POSTed with the admin client certificate over one persistent HTTPS session
(time from request to response, no process start-up). **kubectl**: ``kubectl run -v=6``, whose
``POST ... 201 Created in N milliseconds`` line is kubectl's own timing of the request.

It prints the median and p99 of each case and each median over absent, and how many reviews each of
our webhooks answered in the run (so that the skipping is seen, not assumed). Goal: a warm image (by
digest, and by tag) adds <= 3 ms at the median (API clock).

Run: ``python -m benchmarks.apiserver_latency`` (about a minute), or ``--quick``.
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from benchmarks.bench_env import BenchEnv, environment
from benchmarks.servers import start_floor, stopping
from tests.admission.harness import pod
from tests.apiserver.harness import start_controller
from tests.apiserver.webhooks import (
    EXCLUDE_LABEL,
    by_url,
    chart_webhook_configurations,
    for_lane,
    lane_labels,
    register,
)
from tests.fixtures.apiserver import ApiServer, run_apiserver

WARM_GOAL_MS: Final = 3.0
CASES: Final = ("absent", "digest", "tag", "cold", "floor-digest", "floor-tag")
FLOOR_LANE: Final = "floor"
WARM_CASES: Final = ("digest", "tag")
KUBECTL_POST = re.compile(r"POST https://\S+/pods\S* (\d{3}) [A-Za-z ]+ in (\d+) milliseconds")
MAX_REQUESTS: Final = 5000
# the reasons our webhooks answer an admitted Pod with: validating (Verified), mutating (the others)
REASONS: Final = ("Verified", "Pinned", "NothingToPin")


@dataclass(frozen=True)
class Figures:
    case: str
    samples: tuple[float, ...]  # milliseconds

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p99(self) -> float:
        ordered = sorted(self.samples)
        return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


class Run:
    """The cluster side of the benchmark: namespaces, images, and one pod creation per call."""

    def __init__(self, api: ApiServer, env: BenchEnv, cold_images: int) -> None:
        self.api = api
        self.absent_ns = api.create_namespace("bench-absent", {EXCLUDE_LABEL: "true"})
        self.floor_ns = api.create_namespace("bench-floor", lane_labels(FLOOR_LANE))
        self.reviewed_ns = api.create_namespace("bench-reviewed")
        self.warm_image = env.push_signed("bench/warm")
        self.warm_tag = self.warm_image.split("@", 1)[0] + ":v1"  # push_signed tags it v1
        started = time.monotonic()
        self.cold = [env.push_signed(f"bench/cold{i}") for i in range(cold_images)]
        print(f"pushed {cold_images} fresh signed images in {time.monotonic() - started:.1f}s", flush=True)
        self.counter = 0

    def _name(self, case: str) -> str:
        self.counter += 1
        return f"{case}-{self.counter}"

    def _target(self, case: str) -> tuple[str, str]:
        if case == "absent":
            return self.absent_ns, self.warm_image
        if case == "floor-digest":
            return self.floor_ns, self.warm_image
        if case == "floor-tag":
            return self.floor_ns, self.warm_tag
        if case == "digest":
            return self.reviewed_ns, self.warm_image
        if case == "tag":
            return self.reviewed_ns, self.warm_tag
        return self.reviewed_ns, self.cold.pop()

    def by_api(self, case: str) -> float:
        namespace, image = self._target(case)
        body = pod(self._name(case), [image], namespace=namespace)
        started = time.perf_counter()
        response = self.api.request("POST", f"/api/v1/namespaces/{namespace}/pods", body)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 201:
            raise RuntimeError(f"{case}: HTTP {response.status_code}: {response.text[:500]}")
        return elapsed

    def by_kubectl(self, case: str) -> float:
        namespace, image = self._target(case)
        result = self.api.kubectl("run", self._name(case), "-n", namespace, f"--image={image}", "-v=6")
        if result.returncode != 0:
            raise RuntimeError(f"{case}: kubectl failed: {result.stderr[-1000:]}")
        posts = KUBECTL_POST.findall(result.stderr)
        if len(posts) != 1 or posts[0][0] != "201":
            raise RuntimeError(f"{case}: expected one POST ... 201 line in kubectl -v=6, found {posts}")
        return float(posts[0][1])


def measure(rounds: int, cases: Sequence[str], one: Callable[[str], float]) -> list[Figures]:
    samples: dict[str, list[float]] = {case: [] for case in cases}
    for _ in range(rounds):
        for case in cases:
            samples[case].append(one(case))
    return [Figures(case, tuple(values)) for case, values in samples.items()]


def report(title: str, figures: Sequence[Figures]) -> dict[str, float]:
    """Print the table; return each case's median minus absent's."""
    print(f"\n{title}")
    print(f"  {'case':<13} {'n':>5} {'median ms':>10} {'p99 ms':>10}")
    for f in figures:
        print(f"  {f.case:<13} {len(f.samples):>5} {f.median:>10.2f} {f.p99:>10.2f}")
    by_case = {f.case: f for f in figures}
    absent = by_case["absent"].median
    deltas = {case: f.median - absent for case, f in by_case.items() if case != "absent"}
    for case, delta in deltas.items():
        print(f"  {case} - absent (median): {delta:+.2f} ms")
    return deltas


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=200, help="pods per case, API clock")
    parser.add_argument("--kubectl-rounds", type=int, default=20, help="pods per case, kubectl -v=6")
    parser.add_argument("--quick", action="store_true", help="40 and 5 rounds")
    args = parser.parse_args(argv)
    rounds, kubectl_rounds = (40, 5) if args.quick else (args.rounds, args.kubectl_rounds)
    if not 1 <= (rounds + kubectl_rounds) * len(CASES) <= MAX_REQUESTS:
        parser.error(f"at most {MAX_REQUESTS} requests in all")

    with environment() as env, tempfile.TemporaryDirectory(prefix="imprimatur-apiserver-") as tmp:
        started = time.monotonic()
        with run_apiserver(Path(tmp) / "apiserver") as api:
            api.apply(env.policies())
            controller = start_controller(api, env.registry, env.pki, Path(tmp) / "controller")
            try:
                with stopping(
                    start_floor("bare", env.pki.server_cert, env.pki.server_key, Path(tmp))
                ) as floor:
                    floor_url = f"https://127.0.0.1:{floor.port}"
                    configurations = by_url(chart_webhook_configurations(), floor_url, env.pki.ca_file)
                    register(api, for_lane(configurations, FLOOR_LANE))
                    print(
                        f"control plane, controller and floor up in {time.monotonic() - started:.1f}s",
                        flush=True,
                    )
                    run = Run(api, env, rounds + kubectl_rounds + 1)
                    run.by_api("tag")  # caches the warm image's verdicts, by tag and by digest
                    run.by_api("floor-tag")  # the floor's connections open
                    decisions = controller.controller.metrics.decisions
                    before = {r: decisions.value(kind="Pod", allowed="true", reason=r) for r in REASONS}
                    api_figures = measure(rounds, CASES, run.by_api)
                    kubectl_figures = measure(kubectl_rounds, CASES, run.by_kubectl)
                    answered = {
                        r: decisions.value(kind="Pod", allowed="true", reason=r) - before[r] for r in REASONS
                    }
            finally:
                controller.stop()
    deltas = report("API clock (admin certificate, one persistent HTTPS session)", api_figures)
    report("kubectl clock (kubectl run -v=6: POST ... in N milliseconds)", kubectl_figures)
    pods = rounds + kubectl_rounds
    print(
        f"\nreviews answered during the run ({pods} pods per case): "
        + ", ".join(f"{reason} {count:.0f}" for reason, count in answered.items())
        + f" (the mutating webhook answers Pinned for each tag pod, and is never sent a digest pod: "
        f"NothingToPin {answered['NothingToPin']:.0f})"
    )
    for case in WARM_CASES:
        verdict = "met" if deltas[case] <= WARM_GOAL_MS else "NOT met"
        ours = deltas[case] - deltas[f"floor-{case}"]
        print(
            f"goal: warm by {case} adds <= {WARM_GOAL_MS:.0f} ms at the median over absent (API clock): "
            f"{deltas[case]:+.2f} ms, {verdict}; the floor's round trips {deltas[f'floor-{case}']:+.2f} ms, "
            f"ours over the floor {ours:+.2f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
