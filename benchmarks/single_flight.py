"""Single flight (issue 10): a cold image reviewed 50 times at once fetches each registry object once.

Starts Debian's docker-registry with its access log on (the test fixture's registry, whose config
otherwise turns the log off), ``imprimatur serve`` over it, then pushes a fresh kit-signed image and
sends ``--concurrent`` reviews of it at the same instant, each on its own pre-opened TLS connection
(:mod:`benchmarks.loadgen`, open loop at an unbounded rate). It does this for the image by digest and
for another fresh image by tag, and counts the registry's requests per object (method and path) from
the access log lines written meanwhile. Goal: exactly one fetch of each object.

Run: ``python -m benchmarks.single_flight`` (about 20 seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import yaml

from benchmarks.bench_env import BenchEnv, environment, pod_case
from benchmarks.loadgen import LoadGenerator, Summary
from benchmarks.servers import ServerProcess, stopping
from tests.fixtures import registry as fixture
from tests.fixtures.registry import RegistryServer, TestPKI

BURST_RATE: Final = 1e6  # "all at once": every request is due within the first 50 us
LOG_SETTLE_SECONDS: Final = 0.5
# gorilla's combined log: 127.0.0.1 - - [date] "GET /v2/... HTTP/1.1" 200 123 "" "agent"
_ACCESS: Final = re.compile(r'"(GET|HEAD|POST|PUT|PATCH|DELETE) (/v2/\S*) HTTP/[\d.]+" (\d{3})')


def start_logged_registry(directory: Path, pki: TestPKI) -> RegistryServer:
    """The fixture's docker-registry with the access log written to its log file."""
    port = fixture.free_port()
    directory.mkdir(parents=True, exist_ok=True)
    config_path = fixture._registry_config(directory, port, pki, None, False)
    config = yaml.safe_load(config_path.read_text())
    config["log"]["accesslog"] = {"disabled": False}
    config_path.write_text(yaml.safe_dump(config))
    log_file = directory / "registry.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            fixture._die_with_parent([fixture.REGISTRY_BINARY, "serve", str(config_path)]),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    atexit.register(fixture._stop_process, process)
    server = RegistryServer(port=port, ca_file=pki.ca_file, process=process, log_file=log_file, pki=pki)
    fixture._wait_until_ready(server)
    return server


def count_requests(log_text: str) -> Counter[tuple[str, str, str]]:
    """(method, path, status) -> count, from docker-registry's access log lines."""
    return Counter((m.group(1), m.group(2), m.group(3)) for m in _ACCESS.finditer(log_text))


def _burst(env: BenchEnv, server: ServerProcess, image: str, concurrent: int) -> Summary:
    case = pod_case("cold", [image], variants=concurrent)
    gen = LoadGenerator(env.target(server), max_connections=concurrent)
    payloads = [gen.request(case.path, b) for b in case.bodies]
    return asyncio.run(gen.open_loop(payloads, BURST_RATE, concurrent))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrent", type=int, default=50, help="reviews of the cold image at once")
    args = parser.parse_args(argv)
    print("command: python -m benchmarks.single_flight " + " ".join(sys.argv[1:] if argv is None else argv))
    failures = 0
    with environment() as env:
        logged = start_logged_registry(env.workdir / "logged-registry", env.pki)
        try:
            env.registry.stop()
            env.registry = logged
            with stopping(env.start_imprimatur()) as server:
                for label, repo, by_tag in (
                    ("by digest", "bench/cold-digest", False),
                    ("by tag", "bench/cold-tag", True),
                ):
                    ref = env.push_signed(repo)
                    image = ref.split("@", 1)[0] + ":v1" if by_tag else ref
                    time.sleep(LOG_SETTLE_SECONDS)
                    offset = len(logged.log_file.read_bytes())
                    summary = _burst(env, server, image, args.concurrent)
                    time.sleep(LOG_SETTLE_SECONDS)
                    counts = count_requests(logged.log_file.read_bytes()[offset:].decode(errors="replace"))
                    failures += _report(label, image, args.concurrent, summary, counts)
        finally:
            logged.stop()
    return 0 if failures == 0 else 1


def _report(
    label: str, image: str, concurrent: int, summary: Summary, counts: Counter[tuple[str, str, str]]
) -> int:
    print(f"\na cold signed image {label}, {concurrent} reviews at once: {image}")
    print(f"  answers: {summary.allowed} allowed; {summary.line()}")
    print(f"  {'requests':>8}  registry object")
    over = 0
    for (method, path, status), n in sorted(counts.items(), key=lambda kv: kv[0][1]):
        mark = "OK" if n == 1 else "MORE THAN ONCE"
        over += n != 1
        print(f"  {n:8d}  {method:<4} {path} -> {status}  {mark}")
    total = sum(counts.values())
    print(
        f"  {total} requests for {len(counts)} objects: "
        f"{'exactly one fetch of each (goal) OK' if over == 0 and total else 'NOT single flight'}"
    )
    return 0 if over == 0 and summary.allowed == concurrent else 1


if __name__ == "__main__":
    raise SystemExit(main())
