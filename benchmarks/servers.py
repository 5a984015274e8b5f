"""The servers the load benchmarks measure, each in its own process on 127.0.0.1 over real TLS.

* ``imprimatur``: ``imprimatur serve --policy FILE`` (``python -m controller.cli serve``), as the demo
  runs it, with the registry config and trust roots the benchmark wrote;
* ``bare``: the floor of any Python webhook: an aiohttp HTTPS server that parses each AdmissionReview
  and answers allowed=true with its uid (``python -m benchmarks.servers bare``);
* ``kopf``: kopf's own admission machinery with one trivial ``@kopf.on.validate`` handler per webhook
  id: ``kopf.WebhookServer`` serving ``kopf``'s ``serve_admission_request`` (the operator's webhook
  function), bound the way ``kopf.operator`` binds it, with no cluster: the registry, insights
  (the served resources), memories and indices are built here instead of discovered
  (``python -m benchmarks.servers kopf``).

Each is a :class:`ServerProcess`: its pid, so that CPU time and RSS can be read from ``/proc``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import requests

REPO: Final = Path(__file__).resolve().parents[1]
READY_TIMEOUT_SECONDS: Final = 30.0
STOP_TIMEOUT_SECONDS: Final = 10.0
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
PAGE_BYTES: Final = os.sysconf("SC_PAGE_SIZE")
WEBHOOK_IDS: Final = ("validate-pods", "validate-workloads")
MAX_LIFETIME_SECONDS: Final = 3600.0  # a floor server stops by itself after this


@dataclass
class ServerProcess:
    """A server in its own process at ``https://127.0.0.1:port``."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        """user + system CPU of the process (all its threads) so far, from ``/proc/<pid>/stat``."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15)

    def rss_bytes(self) -> int:
        fields = Path(f"/proc/{self.pid}/statm").read_text().split()
        return int(fields[1]) * PAGE_BYTES

    def log_tail(self, chars: int = 2000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _free_port() -> int:
    from tests.fixtures.registry import free_port

    return free_port()


def _spawn(name: str, command: list[str], log_path: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            command,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO), **env},
            stdout=subprocess.PIPE if name != "imprimatur" else log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )


def _wait_ready_line(server: ServerProcess) -> None:
    """Wait for the child's ``READY`` line on stdout (floor servers)."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    stdout = server.process.stdout
    assert stdout is not None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.process.returncode}: {server.log_tail()}")
        ready, _, _ = select.select([stdout], [], [], 0.2)
        if ready and stdout.readline().startswith(b"READY"):
            return
    server.stop()
    raise RuntimeError(f"{server.name} did not start: {server.log_tail()}")


def start_floor(kind: str, cert: str, key: str, workdir: Path) -> ServerProcess:
    """Start the ``bare`` aiohttp floor or the ``kopf`` trivial-handler floor."""
    port = _free_port()
    log_path = workdir / f"{kind}.log"
    command = [sys.executable, "-m", "benchmarks.servers", kind, "--port", str(port), "--cert", cert]
    process = _spawn(kind, [*command, "--key", key], log_path, {})
    server = ServerProcess(kind, port, process, log_path)
    _wait_ready_line(server)
    return server


def start_imprimatur(
    policy_file: Path,
    tls_dir: Path,
    registries_yaml: Path,
    workdir: Path,
    env: Mapping[str, str] | None = None,
) -> ServerProcess:
    """``imprimatur serve --policy FILE`` as the demo starts it; returns once its health check is 200."""
    port, health = _free_port(), _free_port()
    log_path = workdir / "imprimatur.log"
    settings = {
        "IMPRIMATUR_WEBHOOK_ADDR": "127.0.0.1",
        "IMPRIMATUR_WEBHOOK_PORT": str(port),
        "IMPRIMATUR_TLS_DIR": str(tls_dir),
        "IMPRIMATUR_LIVENESS_ENDPOINT": f"http://127.0.0.1:{health}/healthz",
        "IMPRIMATUR_METRICS_PORT": str(_free_port()),
        "IMPRIMATUR_METRICS_ADDR": "127.0.0.1",
        "IMPRIMATUR_REGISTRY_CONFIG": str(registries_yaml),
        **(env or {}),
    }
    command = [sys.executable, "-m", "controller.cli", "serve", "--policy", str(policy_file)]
    server = ServerProcess("imprimatur", port, _spawn("imprimatur", command, log_path, settings), log_path)
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"imprimatur serve exited: {server.log_tail()}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"http://127.0.0.1:{health}/healthz", timeout=1).status_code == 200:
                return server
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"imprimatur serve did not become ready: {server.log_tail()}")
        time.sleep(0.1)


@contextlib.contextmanager
def stopping(server: ServerProcess) -> Iterator[ServerProcess]:
    try:
        yield server
    finally:
        server.stop()


# --- the floor servers themselves (run in the child process)


async def _bare(port: int, cert: str, key: str) -> None:
    import ssl

    import aiohttp.web

    async def allow(request: aiohttp.web.Request) -> aiohttp.web.Response:
        review: dict[str, Any] = json.loads(await request.read())
        return aiohttp.web.json_response(
            {
                "apiVersion": review.get("apiVersion", "admission.k8s.io/v1"),
                "kind": "AdmissionReview",
                "response": {"uid": review["request"]["uid"], "allowed": True},
            }
        )

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    app = aiohttp.web.Application()
    app.add_routes([aiohttp.web.post("/{id:.*}", allow)])
    runner = aiohttp.web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    _announce()
    try:
        await asyncio.sleep(MAX_LIFETIME_SECONDS)
    finally:
        await runner.cleanup()


def _kopf_webhook_fn() -> Any:
    """kopf's ``serve_admission_request`` bound as ``kopf._core.reactor.running.spawn_tasks`` binds it,
    with a registry holding one trivial validate handler per webhook id and no API server."""
    import kopf
    from kopf._cogs.structs import ephemera, references
    from kopf._core.engines import admission, indexing
    from kopf._core.reactor import inventory

    registry = kopf.OperatorRegistry()

    @kopf.on.validate("pods", id="validate-pods", registry=registry)
    async def pods(**_: Any) -> None:
        return None

    @kopf.on.validate("apps", "v1", "deployments", id="validate-workloads", registry=registry)
    async def workloads(**_: Any) -> None:
        return None

    verbs = frozenset({"create", "delete", "get", "list", "patch", "update", "watch"})
    insights = references.Insights()
    insights.webhook_resources.update(
        {
            references.Resource("", "v1", "pods", kind="Pod", namespaced=True, preferred=True, verbs=verbs),
            references.Resource(
                "apps", "v1", "deployments", kind="Deployment", namespaced=True, preferred=True, verbs=verbs
            ),
        }
    )
    indexers = indexing.OperatorIndexers()
    indexers.ensure(registry._indexing.get_all_handlers())
    return functools.partial(
        admission.serve_admission_request,
        settings=kopf.OperatorSettings(),
        registry=registry,
        insights=insights,
        memories=inventory.ResourceMemories(),
        memobase=ephemera.AnyMemo(ephemera.Memo()),
        indices=indexers.indices,
    )


async def _kopf(port: int, cert: str, key: str) -> None:
    import kopf

    server = kopf.WebhookServer(addr="127.0.0.1", port=port, certfile=cert, pkeyfile=key)
    fn = _kopf_webhook_fn()

    async def serve() -> None:
        async for _config in server(fn):
            _announce()

    task = asyncio.create_task(serve())
    try:
        await asyncio.wait_for(asyncio.shield(task), MAX_LIFETIME_SECONDS)
    except TimeoutError:
        pass
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _announce() -> None:
    sys.stdout.write("READY\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="run one floor server (used by the benchmarks)")
    parser.add_argument("kind", choices=["bare", "kopf"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args(argv)
    run = _bare if args.kind == "bare" else _kopf

    async def guarded() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            if task is not None:
                loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await run(args.port, args.cert, args.key)

    asyncio.run(guarded())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
