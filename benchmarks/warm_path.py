"""The warm path (issue 6): cached reviews against ``imprimatur serve`` and two floors, in one run.

Each server runs in its own process on 127.0.0.1 over TLS (:mod:`benchmarks.servers`): the bare
aiohttp floor, the kopf trivial handler, and ``imprimatur serve --policy FILE`` in front of a real
docker-registry holding eight kit-signed images. For each server and case (the floors take the
1-image Pod, see ``--floor-cases``), after one review to warm the cache:

* CPU per review, sequential: the server process's CPU time (``/proc/<pid>/stat``) over ``--sequential``
  reviews one after another on one keep-alive connection, divided by their number;
* open-loop runs at each of ``--rates`` for ``--duration`` seconds (:mod:`benchmarks.loadgen`):
  p50/p99/max, errors, denials;
* for imprimatur, an overload run at ``--overload`` per second: the served rate, what was shed (by
  reason and HTTP status), p99/max and how many reviews waited past the decision deadline (9 s) and
  the webhook deadline (10 s);

then the RSS of the serve process after ``--rss-images`` more signed images were verified (cold) and
cached, extrapolated linearly to 10,000 cached verdicts. Goals (issue 6): CPU per review vs the kopf
trivial handler <= 1.2x (1 image), <= 1.5x (8 images), <= 1.3x (tag); p99 at 1000/s <= 2x the kopf
trivial handler's; RSS with 10,000 cached verdicts <= 150 MB.

Run: ``python -m benchmarks.warm_path`` (about 3 minutes), or ``--quick``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from benchmarks.bench_env import BenchEnv, ReviewCase, deployment_case, environment, pod_case, review_case
from benchmarks.loadgen import Summary, Target, run_open_loop, run_sequential
from benchmarks.servers import ServerProcess, start_floor, stopping
from tests.admission.harness import pod

CASES: Final = ("pod1", "pod8", "deploy8", "tag1")
CPU_GOALS: Final = {"pod1": 1.2, "pod8": 1.5, "deploy8": 1.5, "tag1": 1.3}
P99_GOAL: Final = 2.0
RSS_GOAL_MB: Final = 150.0
RSS_VERDICTS: Final = 10_000
DECISION_DEADLINE: Final = 9.0
WEBHOOK_DEADLINE: Final = 10.0
SETTLE_SECONDS: Final = 15.0  # at most, waiting for a server to go idle between runs


@dataclass
class Measured:
    server: str
    case: str
    cpu_per_review: float
    sequential: Summary
    rates: dict[float, Summary] = field(default_factory=dict)
    overload: Summary | None = None


def _cases(env: BenchEnv, images: Sequence[str]) -> dict[str, ReviewCase]:
    tag = images[0].split("@", 1)[0] + ":v1"
    return {
        "pod1": pod_case("pod1", images[:1]),
        "pod8": pod_case("pod8", images),
        "deploy8": deployment_case("deploy8", images),
        "tag1": pod_case("tag1", [tag]),
    }


def _measure(
    server: ServerProcess, target: Target, case: ReviewCase, args: argparse.Namespace, *, overload: bool
) -> Measured:
    settle(server)
    warm = run_sequential(target, case.path, case.bodies[:1], 1)
    if warm.allowed != 1:
        detail = f"{warm.errors or ''} {warm.denials or ''}"
        raise RuntimeError(
            f"{server.name} did not allow the warm-up {case.name}: {detail}\n{server.log_tail()}"
        )
    cpu0 = server.cpu_seconds()
    seq = run_sequential(target, case.path, case.bodies, args.sequential)
    measured = Measured(server.name, case.name, (server.cpu_seconds() - cpu0) / args.sequential, seq)
    print(
        f"  {server.name:<10} {case.name:<8} sequential x{args.sequential}: "
        f"server CPU {measured.cpu_per_review * 1e3:.3f} ms/review; {seq.line()}",
        flush=True,
    )
    for rate in args.rates:
        settle(server)
        summary = run_open_loop(target, case.path, case.bodies, rate, int(rate * args.duration))
        measured.rates[rate] = summary
        print(f"  {server.name:<10} {case.name:<8} {rate:6.0f}/s: {summary.line()}", flush=True)
    if overload:
        settle(server)
        rate = args.overload
        summary = run_open_loop(
            target,
            case.path,
            case.bodies,
            rate,
            int(rate * args.duration),
            max_connections=args.overload_connections,
        )
        measured.overload = summary
        print(f"  {server.name:<10} {case.name:<8} {rate:6.0f}/s overload: {summary.line()}")
        print(
            f"  {'':<10} {'':<8} past {DECISION_DEADLINE:g}s (decision deadline): "
            f"{summary.past(DECISION_DEADLINE)}, past {WEBHOOK_DEADLINE:g}s (webhook): "
            f"{summary.past(WEBHOOK_DEADLINE)}",
            flush=True,
        )
    return measured


def settle(server: ServerProcess) -> None:
    """Wait (bounded) until the server is idle, so that one run's tail does not meet the next."""
    deadline = time.monotonic() + SETTLE_SECONDS
    last = server.cpu_seconds()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = server.cpu_seconds()
        if now - last < 0.02:
            return
        last = now


def _rss(env: BenchEnv, count: int, namespaces: int) -> tuple[float, float, float, float, int, int]:
    """RSS of a FRESH serve process (no load run before it, so no connection buffers are counted):
    (warm, after the first third of ``count`` distinct signed images, after all of them, after the
    same images were also decided in ``namespaces - 1`` more namespaces, images, verdicts).

    The first images also raise the allocator's high-water marks (parsing, TLS, threads), so the
    steady cost of one more image is the slope between the first third and the end."""
    images = [env.push_signed(f"bench/rss{i}") for i in range(count)]
    with stopping(env.start_imprimatur()) as server:
        target = env.target(server)
        warm = pod_case("rss", images[:1], variants=1)
        run_sequential(target, warm.path, warm.bodies, 1)  # the first review loads everything lazy
        settle(server)
        fresh = server.rss_bytes()
        verdicts = 0
        marks: list[float] = []
        third = max(8, (count // 3) // 8 * 8)
        for ns in range(namespaces):
            for start in range(0, len(images), 8):
                if ns == 0 and start == third:
                    settle(server)
                    marks.append(server.rss_bytes())
                chunk = images[start : start + 8]
                body = review_case("rss", pod("rss", chunk, namespace=f"ns{ns}"), len(chunk), 1)
                summary = run_sequential(target, body.path, body.bodies, 1)
                verdicts += len(chunk) if summary.allowed == 1 else 0
            if ns == 0:
                settle(server)
                marks.append(server.rss_bytes())
        settle(server)
        return fresh, marks[0], marks[-1], server.rss_bytes(), count, verdicts


def _ratio(value: float, floor: float) -> float:
    return value / floor if floor > 0 else float("inf")


def _verdict(ok: bool) -> str:
    return "OK" if ok else "OVER GOAL"


def _report(results: list[Measured], rss: tuple[float, float, int] | None, args: argparse.Namespace) -> None:
    floors = {m.server: m for m in results if m.server in ("bare", "kopf")}
    kopf = floors.get("kopf")
    top = max(args.rates)
    print(f"\nsummary (each server its own process; {args.duration:g}s per rate; machine: {_load()})")
    print(
        f"{'server':<10} {'case':<8} {'CPU/review':>11} {'xkopf':>6} | "
        + " | ".join(f"{r:5.0f}/s p50/p99/max ms, err" for r in args.rates)
    )
    for m in results:
        cells = []
        for r in args.rates:
            s = m.rates.get(r)
            bad = sum(s.errors.values()) + sum(s.denials.values()) if s else 0
            cells.append(
                f"{s.p(0.5) * 1e3:5.1f}/{s.p(0.99) * 1e3:6.1f}/{s.max_latency * 1e3:6.0f}, {bad:>4}"
                if s
                else f"{'-':>26}"
            )
        ratio = _ratio(m.cpu_per_review, kopf.cpu_per_review) if kopf else float("nan")
        print(
            f"{m.server:<10} {m.case:<8} {m.cpu_per_review * 1e3:8.3f} ms {ratio:5.2f}x | "
            + " | ".join(cells)
        )
    if kopf is None:
        return
    print("\ngoals (ratios to the kopf trivial handler of this run)")
    kopf_p99 = kopf.rates[top].p(0.99) if top in kopf.rates else 0.0
    for m in results:
        if m.server != "imprimatur":
            continue
        goal = CPU_GOALS[m.case]
        cpu = _ratio(m.cpu_per_review, kopf.cpu_per_review)
        print(f"  {m.case:<8} CPU/review {cpu:5.2f}x (goal <= {goal}x) {_verdict(cpu <= goal)}", end="")
        s = m.rates.get(top)
        if s is not None and kopf_p99 > 0:
            bad = sum(s.errors.values()) + sum(s.denials.values())
            p99 = _ratio(s.p(0.99), kopf_p99)
            print(
                f"; at {top:g}/s p99 {p99:5.2f}x (goal <= {P99_GOAL}x) {_verdict(p99 <= P99_GOAL)},"
                f" errors+denials {bad} (goal 0) {_verdict(bad == 0)}",
                end="",
            )
        o = m.overload
        if o is not None and s is not None:
            shed = ", ".join(f"{k.strip()} {v}" for k, v in o.denials.items()) or "none"
            late = o.past(DECISION_DEADLINE)
            print(
                f"; at {args.overload:g}/s served {o.served_rate:.0f}/s vs {s.served_rate:.0f}/s at {top:g}/s "
                f"{_verdict(o.served_rate >= s.served_rate * 0.95)}, shed {shed}, http {dict(o.errors) or 0},"
                f" past {DECISION_DEADLINE:g}s {late} {_verdict(late == 0)}",
                end="",
            )
        print()
    if rss is not None:
        fresh, at_third, after_images, after_all, count, verdicts = rss
        third = max(8, (count // 3) // 8 * 8)
        per_image = (after_images - at_third) / max(count - third, 1)
        per_verdict = (after_all - after_images) / max(verdicts - count, 1)
        projected = (fresh + max(per_image, 0) * RSS_VERDICTS) / 1e6
        print(
            f"  RSS (a fresh serve process): {fresh / 1e6:.1f} MB warm; {at_third / 1e6:.1f} MB after {third} "
            f"distinct signed images, {after_images / 1e6:.1f} MB after {count} ({per_image / 1e3:.1f} kB per "
            f"further image: evidence + verdict); {after_all / 1e6:.1f} MB with {verdicts} verdicts in all "
            f"({per_verdict / 1e3:.2f} kB per extra namespace verdict)"
        )
        print(
            f"  projected at {RSS_VERDICTS} distinct images: {projected:.0f} MB "
            f"(goal <= {RSS_GOAL_MB:g} MB) {_verdict(projected <= RSS_GOAL_MB)}"
        )


def _load() -> str:
    return "load " + " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[200, 500, 1000])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per open-loop run")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--floor-cases", nargs="+", choices=CASES, default=["pod1"])
    parser.add_argument("--sequential", type=int, default=2000, help="reviews for CPU per review")
    parser.add_argument("--overload", type=float, default=3000.0, help="offered rate of the overload run")
    parser.add_argument(
        "--overload-connections",
        type=int,
        default=512,
        help="connection bound of the overload run (kube-apiserver opens more under load)",
    )
    parser.add_argument(
        "--rss-images", type=int, default=400, help="signed images for the RSS figure (0: skip)"
    )
    parser.add_argument(
        "--rss-namespaces", type=int, default=10, help="namespaces each RSS image is decided in (verdicts)"
    )
    parser.add_argument("--quick", action="store_true", help="short runs: 1.5s per rate, 500 sequential")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.sequential, args.rss_images = 1.5, 500, min(args.rss_images, 96)
    print("command: python -m benchmarks.warm_path " + " ".join(sys.argv[1:] if argv is None else argv))
    started = time.monotonic()
    results: list[Measured] = []
    rss = None
    with environment() as env:
        images = [env.push_signed(f"bench/app{i}") for i in range(8)]
        cases = _cases(env, images)
        for kind in ("bare", "kopf"):
            with stopping(start_floor(kind, env.pki.server_cert, env.pki.server_key, env.workdir)) as server:
                results.extend(
                    _measure(server, env.target(server), cases[name], args, overload=False)
                    for name in args.floor_cases
                )
        if args.rss_images:
            rss = _rss(env, args.rss_images, args.rss_namespaces)
        with stopping(env.start_imprimatur()) as server:
            results.extend(
                _measure(server, env.target(server), cases[name], args, overload=True) for name in args.cases
            )
    _report(results, rss, args)
    print(f"\ntotal {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
