"""Cached reviews while 40 reviews hang on a tarpit registry (issue 10), in one run.

``imprimatur serve`` runs with a policy over the real docker-registry (one kit-signed image) and over
a tarpit registry on 127.0.0.1: a server that accepts TCP connections and never answers (so a TLS
handshake never completes). After one review to cache the signed image's verdict:

* phase 1: cached reviews of the signed image, open loop at ``--rate`` for ``--duration`` seconds;
* phase 2: the same, while ``--hung`` reviews of tarpit images (each a fresh digest) are kept in flight
  by another process (the attacker's traffic must not slow the measuring client itself)
  at all times, each replaced as soon as it is answered.

It prints the cached reviews' p99 in both phases and their ratio (goal <= 2x), the denials among
cached reviews (goal 0), and how the tarpit reviews ended (reason, time taken: they should be denied,
``LimitExceeded``, near the 9 s decision deadline, never hang past the 10 s webhook deadline).

Run: ``python -m benchmarks.tarpit`` (about a minute), or ``--quick``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from benchmarks.bench_env import environment, pod_case
from benchmarks.loadgen import LoadGenerator, Summary, Target, _Connection, _exchange, _open, parse_answer
from benchmarks.servers import stopping
from tests.fixtures.hostile import Tarpit

P99_GOAL: Final = 2.0
TARPIT_CLIENT_DEADLINE: Final = 30.0  # longer than any server deadline: we want to see the answer


_CACHED_LINE = re.compile(r"object=default/bench .*?reason=Verified .*?duration_ms=([0-9.]+)")


async def _hang_one(
    conn: _Connection | None, target: Target, payload: bytes
) -> tuple[_Connection | None, str, float]:
    """One tarpit review on the keeper's keep-alive connection: (connection, outcome, seconds)."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(TARPIT_CLIENT_DEADLINE):
            if conn is None:
                conn = await _open(target, target.context())
            status, answer = await _exchange(conn, payload)
        result = parse_answer(status, answer)
        outcome = "allowed" if result.allowed else (result.reason or result.error or f"http {status}")
    except TimeoutError:
        outcome = f"no answer within {TARPIT_CLIENT_DEADLINE:g}s"
        _closed(conn)
        conn = None
    except (OSError, asyncio.IncompleteReadError, ValueError) as e:
        outcome = f"connection error {type(e).__name__}"
        _closed(conn)
        conn = None
    return conn, outcome, time.perf_counter() - started


def _closed(conn: _Connection | None) -> None:
    if conn is not None:
        conn.close()


async def _keepers(
    target: Target, tarpit_host: str, args: argparse.Namespace, run_for: float
) -> list[tuple[str, float]]:
    """Keep ``args.hung`` tarpit reviews in flight for ``run_for`` seconds; how each one ended."""
    outcomes: list[tuple[str, float]] = []
    stop = asyncio.Event()

    def tarpit_body() -> tuple[str, bytes]:
        case = pod_case("tarpit", [f"{tarpit_host}/tarpit/app@sha256:{os.urandom(32).hex()}"], variants=1)
        return case.path, case.bodies[0]

    async def keeper() -> None:
        conn: _Connection | None = None
        gen = LoadGenerator(target)
        try:
            while not stop.is_set():
                path, body = tarpit_body()
                conn, outcome, seconds = await _hang_one(conn, target, gen.request(path, body))
                outcomes.append((outcome, seconds))
                if seconds < args.retry_after:  # shed or refused fast: retry as a client would, later
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), args.retry_after - seconds)
        finally:
            _closed(conn)

    keepers = [asyncio.create_task(keeper()) for _ in range(args.hung)]
    await asyncio.sleep(run_for)
    stop.set()
    await asyncio.gather(*keepers, return_exceptions=True)  # each ends within its client deadline
    return outcomes


def _keepers_process(
    target: Target, tarpit_host: str, args: argparse.Namespace, run_for: float, results: Any
) -> None:
    results.put(asyncio.run(_keepers(target, tarpit_host, args, run_for)))


def _phase2(
    target: Target, cached: Sequence[bytes], cached_path: str, tarpit_host: str, args: argparse.Namespace
) -> tuple[Summary, list[tuple[str, float]]]:
    """The attack runs from a process of its own, as it would from other clients: the client that
    measures the cached reviews must not be slowed by the attack traffic it would itself generate."""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    attacker = context.Process(
        target=_keepers_process,
        args=(target, tarpit_host, args, args.lead_in + args.duration, results),
        daemon=True,
    )
    attacker.start()
    try:
        time.sleep(args.lead_in)  # let the hung reviews fill the server first
        gen = LoadGenerator(target)
        payloads = [gen.request(cached_path, b) for b in cached]
        summary = asyncio.run(gen.open_loop(payloads, args.rate, int(args.rate * args.duration)))
        outcomes: list[tuple[str, float]] = results.get(timeout=args.lead_in + args.duration + 60)
    finally:
        attacker.join(timeout=5)
        if attacker.is_alive():
            attacker.kill()
    return summary, outcomes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="cached reviews per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    parser.add_argument("--hung", type=int, default=40, help="tarpit reviews kept in flight")
    parser.add_argument("--lead-in", type=float, default=1.0, help="seconds the hung reviews get first")
    parser.add_argument(
        "--retry-after", type=float, default=1.0, help="a keeper answered faster waits this long to resend"
    )
    parser.add_argument("--quick", action="store_true", help="5 s phases")
    parser.add_argument(
        "--pin", action="store_true", help="the controller on a CPU of its own; the clients on the others"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.duration = 5.0
    print("command: python -m benchmarks.tarpit " + " ".join(sys.argv[1:] if argv is None else argv))
    with environment() as env, Tarpit().running() as tarpit:
        tarpit_host = f"127.0.0.1:{tarpit.port}"
        signed = env.push_signed("bench/app")
        case = pod_case("bench", [signed])
        with stopping(env.start_imprimatur(extra_globs=[f"{tarpit_host}/**"])) as server:
            if args.pin:
                _pin(server.pid)
            target = env.target(server)
            gen = LoadGenerator(target)
            warm = asyncio.run(gen.sequential([gen.request(case.path, case.bodies[0])], 1))
            if warm.allowed != 1:
                raise RuntimeError(f"the signed image was not allowed: {warm.denials} {warm.errors}")
            payloads = [gen.request(case.path, b) for b in case.bodies]
            cpu0 = server.cpu_seconds()
            phase1 = asyncio.run(gen.open_loop(payloads, args.rate, int(args.rate * args.duration)))
            cpu1 = server.cpu_seconds()
            mark = len(server.log_path.read_text(errors="replace"))
            phase2, outcomes = _phase2(target, case.bodies, case.path, tarpit_host, args)
            cpu2 = server.cpu_seconds()
            log = server.log_path.read_text(errors="replace")
            log_tail = log[-600:]
            inside = (_handler_ms(log[:mark]), _handler_ms(log[mark:]))
        accepted = tarpit.accepted
    _report(args, phase1=phase1, phase2=phase2, outcomes=outcomes, accepted=accepted, log_tail=log_tail)
    print(
        f"  controller CPU: phase 1 {cpu1 - cpu0:.2f} s, phase 2 {cpu2 - cpu1:.2f} s "
        f"({(cpu2 - cpu1 - (cpu1 - cpu0)) / max(len(outcomes), 1) * 1000:.1f} ms more per tarpit review)"
    )
    for name, durations in zip(("phase 1", "phase 2"), inside, strict=True):
        if durations:
            print(
                f"  inside the server, {name} (the decision log's duration_ms of the cached reviews): "
                f"p50 {durations[len(durations) // 2]:.2f} ms  p99 {durations[int(len(durations) * 0.99)]:.2f} ms  "
                f"max {durations[-1]:.2f} ms"
            )
    return 0


def _pin(server_pid: int) -> None:
    """The controller on the last CPU, everything else (this client, the attacker, the registry) on
    the others: as on a cluster, where the API server and the attackers do not share the
    controller's CPU. Threads already started are pinned too."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return
    for task in Path(f"/proc/{server_pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), {cpus[-1]})
    os.sched_setaffinity(0, set(cpus[:-1]))


def _handler_ms(log: str) -> list[float]:
    """The cached reviews' own time in the server, from its decision log lines, sorted."""
    return sorted(float(m) for m in _CACHED_LINE.findall(log))


def _report(
    args: argparse.Namespace,
    *,
    phase1: Summary,
    phase2: Summary,
    outcomes: list[tuple[str, float]],
    accepted: int,
    log_tail: str,
) -> None:
    print(f"\ncached reviews at {args.rate:g}/s for {args.duration:g}s (1 signed image by digest)")
    print(f"  phase 1, alone:                       {phase1.line()}")
    print(f"  phase 2, {args.hung} tarpit reviews in flight: {phase2.line()}")
    ratio = phase2.p(0.99) / phase1.p(0.99) if phase1.p(0.99) > 0 else float("inf")
    denied = sum(phase2.denials.values()) + sum(phase2.errors.values())
    print(
        f"  p99 ratio phase 2 / phase 1: {ratio:.2f}x (goal <= {P99_GOAL}x) "
        f"{'OK' if ratio <= P99_GOAL else 'OVER GOAL'}"
    )
    print(
        f"  denials or errors among cached reviews in phase 2: {denied} (goal 0) {'OK' if denied == 0 else 'FAIL'}"
    )
    print(f"\ntarpit reviews: {len(outcomes)} answered, {accepted} connections accepted by the tarpit")
    by_outcome: dict[str, list[float]] = {}
    for outcome, seconds in outcomes:
        by_outcome.setdefault(outcome, []).append(seconds)
    for outcome, times in Counter({k: len(v) for k, v in by_outcome.items()}).most_common():
        t = sorted(by_outcome[outcome])
        print(
            f"  {times:4d} x {outcome:<28} took min {t[0]:.2f}s, median {statistics.median(t):.2f}s, "
            f"max {t[-1]:.2f}s"
        )
    late = sum(1 for _, s in outcomes if s > 10.0)
    print(f"  answered after the 10 s webhook deadline: {late} (goal 0) {'OK' if late == 0 else 'FAIL'}")
    if denied or late:
        print(f"\nserver log tail:\n{log_tail}")


if __name__ == "__main__":
    raise SystemExit(main())
