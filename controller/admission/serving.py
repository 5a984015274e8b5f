"""The webhook's own event loop, in its own thread: the fast lane, apart from kopf's loop.

Cached answers are a few hundred microseconds of work each; a review that must wait on registries
goes through kopf's admission machinery and the engine, about a millisecond each on whichever loop
runs them. On one shared loop, forty such reviews arriving together delay every cached answer behind
them by tens of milliseconds. So the HTTPS server (TLS, parsing, the fast path, the response) runs on
a loop of its own, and only reviews that need kopf are handed to kopf's loop
(:func:`asyncio.run_coroutine_threadsafe`, which carries the review's context along). Slow work can
then delay fast work by at most the interpreter's thread switch interval, which the server lowers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import ssl
import sys
import threading
from collections.abc import Awaitable
from typing import Final, TypeVar

import aiohttp.web

log = logging.getLogger(__name__)

T = TypeVar("T")

SWITCH_INTERVAL_SECONDS: Final = 0.0002
"""How long a thread may hold the GIL while another waits (Python's default is 5 ms): measured with
benchmarks.tarpit, cached reviews' p99 under attack went 14.4 -> 11.3 ms from 1 ms to 0.2 ms."""
START_TIMEOUT_SECONDS: Final = 30.0
STOP_TIMEOUT_SECONDS: Final = 10.0


class ServingLoop:
    """An aiohttp application served from a dedicated thread and event loop."""

    def __init__(
        self, app: aiohttp.web.Application, *, addr: str | None, port: int, context: ssl.SSLContext
    ) -> None:
        self._app = app
        self._addr = addr
        self._port = port
        self._context = context
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: aiohttp.web.AppRunner | None = None
        self._ready: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, name="imprimatur-webhook", daemon=True)

    async def start(self) -> int:
        """Start serving; the bound port. Raises what binding raised (a port in use, say)."""
        if sys.getswitchinterval() > SWITCH_INTERVAL_SECONDS:
            sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
        self._thread.start()
        async with asyncio.timeout(START_TIMEOUT_SECONDS):
            return await asyncio.wrap_future(self._ready)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        try:
            runner = aiohttp.web.AppRunner(self._app, handle_signals=False, access_log=None)
            await runner.setup()
            self._runner = runner
            site = aiohttp.web.TCPSite(
                runner, self._addr, self._port, ssl_context=self._context, reuse_address=True
            )
            await site.start()
        except BaseException as e:  # noqa: BLE001 - handed to the starting caller, who raises it
            self._ready.set_exception(e)
            asyncio.get_running_loop().stop()
            return
        addresses = runner.addresses
        self._ready.set_result(int(addresses[0][1]) if addresses else self._port)

    async def stop(self) -> None:
        """Stop serving and end the thread (bounded in time)."""
        loop = self._loop
        if loop is not None and not loop.is_closed() and self._thread.is_alive():

            async def cleanup() -> None:
                if self._runner is not None:
                    await self._runner.cleanup()
                asyncio.get_running_loop().stop()

            with contextlib.suppress(RuntimeError, TimeoutError, concurrent.futures.TimeoutError):
                future = asyncio.run_coroutine_threadsafe(cleanup(), loop)
                await asyncio.wait_for(asyncio.wrap_future(future), STOP_TIMEOUT_SECONDS)
        await asyncio.to_thread(self._thread.join, STOP_TIMEOUT_SECONDS)


async def on_loop(awaitable: Awaitable[T], loop: asyncio.AbstractEventLoop | None) -> T:
    """Await ``awaitable`` on ``loop`` (kopf's) when that is another loop than the running one."""
    if loop is None or loop is asyncio.get_running_loop():
        return await awaitable

    async def run() -> T:
        return await awaitable

    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run(), loop))
