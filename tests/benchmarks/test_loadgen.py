"""The load generator's own logic: its schedule, percentiles, answer parsing, and an open-loop run
against a real local TLS server (one that answers, one that never does)."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp.web
import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.loadgen import (
    ERROR_TIMEOUT,
    LoadGenerator,
    Result,
    Summary,
    Target,
    parse_answer,
    percentile,
    schedule,
)
from tests.fixtures.registry import TestPKI


def test_schedule_is_evenly_spaced_at_the_rate() -> None:
    offsets = schedule(1000.0, 5)
    assert offsets == pytest.approx([0.0, 0.001, 0.002, 0.003, 0.004])
    assert schedule(3.0, 0) == []
    with pytest.raises(ValueError, match="rate"):
        schedule(0.0, 3)


@given(st.lists(st.floats(min_value=0, max_value=1e3), min_size=1, max_size=200), st.floats(0.0, 1.0))
def test_percentile_is_a_nearest_rank_member(values: list[float], fraction: float) -> None:
    ordered = sorted(values)
    p = percentile(ordered, fraction)
    assert p in ordered
    # nearest rank: at least `fraction` of the values are <= p, and fewer are < p
    assert sum(1 for v in ordered if v <= p) >= fraction * len(ordered) - 1e-9
    assert sum(1 for v in ordered if v < p) < max(1.0, fraction * len(ordered) + 1e-9)


def test_percentile_of_known_values() -> None:
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([], 0.5) == 0.0


def test_parse_answer_reads_allowed_and_denials() -> None:
    allowed = json.dumps({"response": {"uid": "u", "allowed": True}}).encode()
    assert parse_answer(200, allowed).allowed is True
    denial = {
        "response": {"uid": "u", "allowed": False, "status": {"code": 429, "message": "Overloaded: -: busy"}}
    }
    result = parse_answer(200, json.dumps(denial).encode())
    assert (result.allowed, result.code, result.reason) == (False, 429, "Overloaded")
    assert parse_answer(429, b"").error == "http 429"
    assert parse_answer(200, b"not json").error == "not a review"


def test_summary_counts_errors_denials_and_late_answers() -> None:
    results = [
        Result(0.001, 200, allowed=True),
        Result(9.5, 200, allowed=False, code=403, reason="SignatureNotFound"),
        Result(10.0, error=ERROR_TIMEOUT),
    ]
    summary = Summary(100.0, 3, results, 1.0, 0.01, 1, 10.0)
    assert summary.answered == 2
    assert summary.errors == {ERROR_TIMEOUT: 1}
    assert summary.denials == {"403 SignatureNotFound": 1}
    assert summary.past(9.0) == 2  # one answered late, one never answered


@asynccontextmanager
async def _server(pki: TestPKI, *, answer: bool) -> AsyncIterator[int]:
    async def allow(request: aiohttp.web.Request) -> aiohttp.web.Response:
        review = json.loads(await request.read())
        if not answer:
            await asyncio.sleep(1.0)  # past the 0.3 s client deadline, short for the cleanup
        return aiohttp.web.json_response({"response": {"uid": review["request"]["uid"], "allowed": True}})

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    app = aiohttp.web.Application()
    app.add_routes([aiohttp.web.post("/{id:.*}", allow)])
    runner = aiohttp.web.AppRunner(app, access_log=None)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return TestPKI.generate(tmp_path_factory.mktemp("pki"))


BODY = json.dumps({"apiVersion": "admission.k8s.io/v1", "request": {"uid": "u1"}}).encode()


async def test_open_loop_sends_every_request_on_schedule(pki: TestPKI) -> None:
    async with _server(pki, answer=True) as port:
        gen = LoadGenerator(Target("127.0.0.1", port, pki.ca_file))
        started = time.perf_counter()
        summary = await gen.open_loop([gen.request("/validate-pods", BODY)], 200.0, 60)
        elapsed = time.perf_counter() - started
    assert summary.allowed == 60, (summary.errors, summary.denials)
    assert 0.29 <= summary.wall_seconds < 5.0  # 60 at 200/s: the last is due at 0.295 s
    assert elapsed < 10.0
    assert 1 <= summary.connections_opened <= 60


async def test_open_loop_fails_what_passes_the_client_deadline(pki: TestPKI) -> None:
    async with _server(pki, answer=False) as port:
        gen = LoadGenerator(Target("127.0.0.1", port, pki.ca_file), client_deadline=0.3, max_connections=4)
        started = time.perf_counter()
        summary = await gen.open_loop([gen.request("/validate-pods", BODY)], 100.0, 10)
        elapsed = time.perf_counter() - started
    assert summary.errors == {ERROR_TIMEOUT: 10}
    assert summary.answered == 0
    assert elapsed < 3.0  # bounded: 0.1 s of schedule + the 0.3 s deadline + the checker's period


async def test_sequential_uses_one_connection(pki: TestPKI) -> None:
    async with _server(pki, answer=True) as port:
        gen = LoadGenerator(Target("127.0.0.1", port, pki.ca_file))
        summary = await gen.sequential([gen.request("/validate-pods", BODY)], 20)
    assert summary.allowed == 20
    assert summary.connections_opened == 1
