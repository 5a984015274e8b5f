"""An open-loop HTTPS load generator for AdmissionReviews: cheap enough not to be the bottleneck.

Requests are scheduled at fixed times (``i / rate`` after the start) whatever the server does, so a
slow answer delays no later request (no coordinated omission: latency counts from the scheduled time,
queueing in the client included). They go over a pool of keep-alive TLS connections (asyncio streams),
as hand-written HTTP/1.1 with pre-serialised bytes; answers are read by ``Content-Length`` and only a
denial is parsed as JSON. A request waits for an idle connection; a new one is opened only when all
are busy, up to ``max_connections``. Every run is bounded in count and time, and every request in
time (``client_deadline``: kube-apiserver's webhook timeout).

Per request it records the latency, the HTTP status and, for an AdmissionReview answer, allowed or
denied with ``status.code`` and the reason prefix of the message (``Reason: image: detail``). The
generator's own CPU (``time.process_time``) per request is part of the result.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import ssl
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

DEFAULT_CLIENT_DEADLINE: Final = 10.0  # the chart's webhook timeoutSeconds
DEFAULT_MAX_CONNECTIONS: Final = 64  # more only adds handshakes to a saturated server
MAX_HEADER_BYTES: Final = 16 * 1024
MAX_BODY_BYTES: Final = 1024 * 1024
DRAIN_GRACE_SECONDS: Final = 2.0
WARM_POOL_SECONDS: Final = 0.01  # connections opened up front: rate x this
CHECK_SECONDS: Final = 0.05  # how often requests past the client deadline are failed
SLEEP_THRESHOLD_SECONDS: Final = 0.0005  # a due time closer than this is sent at once
_ALLOWED: Final = (b'"allowed": true', b'"allowed":true')

ERROR_CONNECT: Final = "connect"
ERROR_CONNECTION: Final = "connection"
ERROR_TIMEOUT: Final = "timeout"
ERROR_UNSENT: Final = "unsent"  # still queued in the client when the run's time bound ended


@dataclass(frozen=True, slots=True)
class Target:
    """Where to send: ``https://host:port`` trusted through ``ca_file``."""

    host: str
    port: int
    ca_file: str

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        context.check_hostname = False  # the test certificates name 127.0.0.1 as an IP SAN
        return context


def http_request(host: str, path: str, body: bytes) -> bytes:
    """One keep-alive HTTP/1.1 POST of a JSON ``body``, serialised once."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Accept: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


@dataclass(slots=True)
class Result:
    """One request's outcome. ``status`` is 0 when no HTTP answer came (see ``error``)."""

    latency: float
    status: int = 0
    allowed: bool | None = None
    code: int | None = None
    reason: str = ""
    error: str = ""


def parse_answer(status: int, body: bytes) -> Result:
    """The admission outcome of an HTTP answer (latency filled in by the caller)."""
    if status != 200:
        return Result(0.0, status, error=f"http {status}")
    if any(marker in body for marker in _ALLOWED):
        return Result(0.0, status, allowed=True)
    try:
        response = json.loads(body)["response"]
        allowed = bool(response["allowed"])
    except (ValueError, KeyError, TypeError):
        return Result(0.0, status, error="not a review")
    status_obj = response.get("status") or {}
    code = status_obj.get("code")
    message = str(status_obj.get("message") or "")
    return Result(
        0.0,
        status,
        allowed=allowed,
        code=code if isinstance(code, int) else None,
        reason=message.split(":", 1)[0][:40] if not allowed else "",
    )


def schedule(rate: float, count: int) -> list[float]:
    """Offsets (seconds from the start) at which the ``count`` requests of an open-loop run are due."""
    if rate <= 0 or count < 0:
        raise ValueError("rate must be positive and count non-negative")
    return [i / rate for i in range(count)]


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of already sorted values (0.0 for none)."""
    if not sorted_values:
        return 0.0
    if not 0.0 <= fraction <= 1.0:
        raise ValueError("fraction must be within [0, 1]")
    rank = max(1, -(-int(fraction * 1_000_000) * len(sorted_values) // 1_000_000))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class Summary:
    """A run's figures."""

    offered_rate: float
    sent: int
    results: list[Result] = field(repr=False)
    wall_seconds: float
    client_cpu_seconds: float
    connections_opened: int
    deadline: float
    errors: Counter[str] = field(default_factory=Counter)
    denials: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        for r in self.results:
            if r.error:
                self.errors[r.error] += 1
            elif r.allowed is False:
                self.denials[f"{r.code} {r.reason}"] += 1
        self.latencies = sorted(r.latency for r in self.results if not r.error)

    @property
    def answered(self) -> int:
        return len(self.latencies)

    @property
    def served_rate(self) -> float:
        """Answers (of any kind) per second over the wall time of the run."""
        return self.answered / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def allowed(self) -> int:
        return sum(1 for r in self.results if r.allowed)

    def p(self, fraction: float) -> float:
        return percentile(self.latencies, fraction)

    @property
    def max_latency(self) -> float:
        return self.latencies[-1] if self.latencies else 0.0

    @property
    def cpu_per_request_us(self) -> float:
        return self.client_cpu_seconds / max(1, len(self.results)) * 1e6

    def past(self, seconds: float) -> int:
        """Requests answered after ``seconds``, or never answered within the client deadline."""
        return sum(1 for x in self.latencies if x > seconds) + self.errors[ERROR_TIMEOUT]

    def line(self) -> str:
        errors = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items())) or "0"
        denials = ", ".join(f"{k.strip()} {v}" for k, v in self.denials.most_common(3)) or "0"
        return (
            f"p50 {self.p(0.5) * 1e3:8.1f} ms  p99 {self.p(0.99) * 1e3:8.1f} ms  "
            f"max {self.max_latency * 1e3:8.1f} ms  served {self.served_rate:7.0f}/s  "
            f"errors {errors}  denied {denials}  client {self.cpu_per_request_us:.0f} us/req"
        )


class _Connection:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


async def _open(target: Target, context: ssl.SSLContext) -> _Connection:
    reader, writer = await asyncio.open_connection(
        target.host, target.port, ssl=context, limit=MAX_HEADER_BYTES * 4
    )
    return _Connection(reader, writer)


async def _exchange(conn: _Connection, payload: bytes) -> tuple[int, bytes]:
    conn.writer.write(payload)
    head = await conn.reader.readuntil(b"\r\n\r\n")
    if len(head) > MAX_HEADER_BYTES:
        raise ConnectionError("oversize response header")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = -1
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
            break
    if not 0 <= length <= MAX_BODY_BYTES:
        raise ConnectionError("no usable Content-Length")
    return status, await conn.reader.readexactly(length)


class LoadGenerator:
    """Sends pre-serialised requests to one target. Use within a running event loop."""

    def __init__(
        self,
        target: Target,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        client_deadline: float = DEFAULT_CLIENT_DEADLINE,
    ) -> None:
        self.target = target
        self.max_connections = max_connections
        self.client_deadline = client_deadline
        self.context = target.context()

    def request(self, path: str, body: bytes) -> bytes:
        return http_request(f"{self.target.host}:{self.target.port}", path, body)

    async def sequential(self, payloads: Sequence[bytes], count: int) -> Summary:
        """``count`` requests one after another on one keep-alive connection (closed loop)."""
        cpu0, wall0 = time.process_time(), time.perf_counter()
        results: list[Result] = []
        conn: _Connection | None = None
        try:
            for i in range(count):
                start = time.perf_counter()
                try:
                    if conn is None:
                        conn = await asyncio.wait_for(_open(self.target, self.context), self.client_deadline)
                    status, body = await asyncio.wait_for(
                        _exchange(conn, payloads[i % len(payloads)]), self.client_deadline
                    )
                    result = parse_answer(status, body)
                except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as e:
                    result = Result(
                        0.0, error=ERROR_TIMEOUT if isinstance(e, TimeoutError) else ERROR_CONNECTION
                    )
                    if conn is not None:
                        conn.close()
                    conn = None
                result.latency = time.perf_counter() - start
                results.append(result)
        finally:
            if conn is not None:
                conn.close()
        return Summary(0.0, count, results, time.perf_counter() - wall0, time.process_time() - cpu0, 1, 0.0)

    async def open_loop(self, payloads: Sequence[bytes], rate: float, count: int) -> Summary:
        """``count`` requests at ``rate``/s, cycling through ``payloads``; bounded by
        ``count / rate + client_deadline + 2`` seconds of wall time."""
        run = _OpenLoopRun(self, payloads, count)
        return await run.run(rate)


class _Wire(asyncio.Protocol):
    """One keep-alive TLS connection of an open-loop run: answers are parsed in ``data_received``."""

    def __init__(self, run: _OpenLoopRun) -> None:
        self.run = run
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.current: tuple[int, float] | None = None  # (index, due) of the request in flight

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, index: int, due: float, payload: bytes) -> None:
        self.current = (index, due)
        assert self.transport is not None
        self.transport.write(payload)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEADER_BYTES:
                self.run.failed(self, ERROR_CONNECTION)
            return
        try:
            status, length = _head(bytes(self.buffer[:end]))
        except (ValueError, IndexError):
            self.run.failed(self, ERROR_CONNECTION)
            return
        total = end + 4 + length
        if len(self.buffer) < total:
            return
        body = bytes(self.buffer[end + 4 : total])
        del self.buffer[:total]
        self.run.answered(self, status, body)

    def connection_lost(self, exc: Exception | None) -> None:
        self.run.lost(self)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def _head(head: bytes) -> tuple[int, int]:
    """(status, Content-Length) of a response head; ValueError when it has no usable length."""
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
            if 0 <= length <= MAX_BODY_BYTES:
                return status, length
    raise ValueError("no usable Content-Length")


class _OpenLoopRun:
    """The state of one open-loop run: callbacks only, no task per request or per connection.

    A due request goes to an idle connection, else waits in ``pending`` (its latency still counts
    from its due time) while a new connection is opened if every open or opening one is busy. A
    checker every ``CHECK_SECONDS`` fails requests past the client deadline and aborts their
    connections.
    """

    def __init__(self, gen: LoadGenerator, payloads: Sequence[bytes], count: int) -> None:
        self.gen = gen
        self.payloads = payloads
        self.count = count
        self.results: list[Result | None] = [None] * count
        self.remaining = count
        self.idle: list[_Wire] = []
        self.wires: set[_Wire] = set()
        self.pending: deque[tuple[int, float]] = deque()
        self.connecting = 0
        self.opened = 0
        self.finished = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        if count == 0:
            self.finished.set()

    def record(self, index: int, result: Result) -> None:
        if self.results[index] is None:
            self.results[index] = result
            self.remaining -= 1
            if self.remaining == 0:
                self.finished.set()

    def dispatch(self, index: int, due: float) -> None:
        if self.idle:
            wire = self.idle.pop()
            wire.send(index, due, self.payloads[index % len(self.payloads)])
            return
        self.pending.append((index, due))
        if (
            len(self.pending) > self.connecting
            and len(self.wires) + self.connecting < self.gen.max_connections
        ):
            self.connect()

    def connect(self) -> None:
        self.connecting += 1
        self.opened += 1
        task = asyncio.get_running_loop().create_task(self._connect())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, wire = await loop.create_connection(
                lambda: _Wire(self), self.gen.target.host, self.gen.target.port, ssl=self.gen.context
            )
        except OSError:
            self.connecting -= 1
            if self.pending:
                index, due = self.pending.popleft()
                self.record(index, Result(time.perf_counter() - due, error=ERROR_CONNECT))
            return
        self.connecting -= 1
        self.wires.add(wire)
        self.ready(wire)

    def ready(self, wire: _Wire) -> None:
        if self.pending:
            index, due = self.pending.popleft()
            wire.send(index, due, self.payloads[index % len(self.payloads)])
        else:
            self.idle.append(wire)

    def answered(self, wire: _Wire, status: int, body: bytes) -> None:
        if wire.current is None:
            return
        index, due = wire.current
        wire.current = None
        result = parse_answer(status, body)
        result.latency = time.perf_counter() - due
        self.record(index, result)
        self.ready(wire)

    def failed(self, wire: _Wire, error: str) -> None:
        if wire.current is not None:
            index, due = wire.current
            wire.current = None
            self.record(index, Result(time.perf_counter() - due, error=error))
        wire.abort()

    def lost(self, wire: _Wire) -> None:
        self.wires.discard(wire)
        if wire in self.idle:
            self.idle.remove(wire)
        if wire.current is not None:
            self.failed(wire, ERROR_CONNECTION)

    def expire(self) -> None:
        """Fail what is past the client deadline: in flight (and abort that connection) or queued."""
        limit = time.perf_counter() - self.gen.client_deadline
        for wire in [w for w in self.wires if w.current is not None and w.current[1] < limit]:
            self.failed(wire, ERROR_TIMEOUT)
        while self.pending and self.pending[0][1] < limit:
            index, due = self.pending.popleft()
            self.record(index, Result(time.perf_counter() - due, error=ERROR_TIMEOUT))

    async def _checker(self) -> None:
        while not self.finished.is_set():
            await asyncio.sleep(CHECK_SECONDS)
            self.expire()

    async def run(self, rate: float) -> Summary:
        offsets = schedule(rate, self.count)
        # Open the pool's first connections before the clock starts: enough for a 10 ms latency.
        warm = max(1, min(self.gen.max_connections, math.ceil(rate * WARM_POOL_SECONDS), self.count))
        for _ in range(warm):
            self.connect()
        async with asyncio.timeout(self.gen.client_deadline):
            while self.connecting:
                await asyncio.sleep(0.005)
        checker = asyncio.create_task(self._checker())
        cpu0 = time.process_time()
        start = time.perf_counter() + 0.005
        try:
            async with asyncio.timeout(self.count / rate + self.gen.client_deadline + DRAIN_GRACE_SECONDS):
                for index, offset in enumerate(offsets):
                    due = start + offset
                    delay = due - time.perf_counter()
                    if delay > SLEEP_THRESHOLD_SECONDS:
                        await asyncio.sleep(delay)
                    self.dispatch(index, due)
                await self.finished.wait()
        except TimeoutError:
            pass
        finally:
            wall = time.perf_counter() - start
            cpu = time.process_time() - cpu0
            checker.cancel()
            for task in list(self.tasks):
                task.cancel()
            for wire in list(self.wires):
                wire.abort()
            await asyncio.gather(checker, *self.tasks, return_exceptions=True)
        final = [r if r is not None else Result(0.0, error=ERROR_UNSENT) for r in self.results]
        return Summary(rate, self.count, final, wall, cpu, self.opened, self.gen.client_deadline)


def run_open_loop(
    target: Target, path: str, bodies: Sequence[bytes], rate: float, count: int, **options: float
) -> Summary:
    """Synchronous wrapper: ``count`` POSTs of ``bodies`` (cycled) to ``path`` at ``rate``/s."""
    gen = LoadGenerator(target, **options)  # type: ignore[arg-type]
    payloads = [gen.request(path, b) for b in bodies]
    return asyncio.run(gen.open_loop(payloads, rate, count))


def run_sequential(target: Target, path: str, bodies: Sequence[bytes], count: int) -> Summary:
    """Synchronous wrapper: ``count`` POSTs one after another on one connection."""
    gen = LoadGenerator(target)
    payloads = [gen.request(path, b) for b in bodies]
    return asyncio.run(gen.sequential(payloads, count))
