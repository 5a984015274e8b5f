"""``imprimatur serve``: the admission controller process.

In a cluster, kopf runs the operator (indexes, status, readiness probe at the liveness endpoint) and
serves the ``@kopf.on.validate`` handlers through :class:`WebhookServer`. With policy files
(``imprimatur serve --policy FILE``, for development and the demo) there is no cluster: the policies
and trust roots come from the files, and the same handlers are called by :class:`LocalWebhookFn`
behind the same server, with the health endpoint served here. Metrics are served at
``:9090/metrics`` in both modes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

import aiohttp.web
import kopf

from controller.admission.background import BackgroundScan, build_background
from controller.admission.credentials import CredentialResolver
from controller.admission.handlers import Admission
from controller.admission.kube import KubeReader, KubernetesReader
from controller.admission.local import LocalWebhookFn, load_exceptions, read_policy_documents
from controller.admission.metrics import CONTENT_TYPE, AdmissionMetrics
from controller.admission.mutation import Pinning
from controller.admission.objects import (
    POLICY_KINDS,
    TRUST_ROOT_KIND,
    PolicyEntry,
    TrustRootEntry,
    compile_policy_entry,
    compile_trust_root_entry,
)
from controller.admission.observe import ReviewObserver
from controller.admission.operator import Loader, LoginFn, build_registry, configure_settings
from controller.admission.options import ServerOptions
from controller.admission.state import PolicyState
from controller.admission.tls import ReloadingTLS, SelfSignedTLS
from controller.admission.webhook import (
    MUTATING_WEBHOOKS,
    WEBHOOK_POLICIES,
    Answer,
    ReviewContext,
    ServingTLS,
    WebhookServer,
)
from controller.config import BackgroundSettings, Settings, read_bounded_file
from controller.engine import Engine, builtin_trust_roots
from controller.errors import ImprimaturError, PolicyError, Reason
from controller.policy import PolicySet
from controller.policy.exceptions import EXCEPTION_KIND
from controller.registry import Keychain, RegistryClient, RegistryConfig

log = logging.getLogger(__name__)

EXIT_OK: Final = 0
EXIT_CONFIG: Final = 2
MAX_FILE_BYTES: Final = 8 * 1024 * 1024


def _read(path: Path, what: str) -> bytes:
    return read_bounded_file(path, MAX_FILE_BYTES, what)


@dataclass(slots=True)
class Controller:
    """Everything one controller process runs, wired together (also what tests and the demo start)."""

    options: ServerOptions
    metrics: AdmissionMetrics
    state: PolicyState
    admission: Admission
    loader: Loader
    server: WebhookServer
    pinning: Pinning | None = None  # the mutating webhooks (digest pinning)
    background: BackgroundScan | None = None  # background re-verification and reports (issue 8)

    def close(self) -> None:
        self.state.engine.close()


def build_controller(
    options: ServerOptions,
    settings: Settings,
    *,
    reader: KubeReader | None,
    tls: ServingTLS | None = None,
    engine: Engine | None = None,
) -> Controller:
    """Wire a controller. Raises :class:`PolicyError` (``ConfigInvalid``) for unreadable configuration."""
    metrics = AdmissionMetrics()
    builtin = builtin_trust_roots()
    if engine is None:
        registry_config = None
        if options.registry_config is not None:
            text = _read(options.registry_config, "registry config").decode("utf-8", errors="strict")
            registry_config = RegistryConfig.from_yaml(text)
        engine = Engine(
            registry=RegistryClient(config=registry_config, keychain=None),
            policies=PolicySet([]),
            trust_roots=builtin,
            settings=settings,
        )
    controller_keychain = (
        Keychain.from_docker_config(_read(options.docker_config, "docker config"))
        if options.docker_config is not None
        else None
    )
    credentials = CredentialResolver(
        reader,
        controller_keychain=controller_keychain,
        controller_secret=options.docker_config_secret,
        ttl_seconds=options.credentials_ttl_seconds,
    )
    state = PolicyState(engine, builtin, metrics)
    admission = Admission(
        state=state,
        credentials=credentials,
        decision_timeout=options.decision_timeout_seconds,
        max_concurrent=options.max_concurrent_reviews,
    )
    if tls is None:
        files = options.tls_files
        if files is not None:
            reloading = ReloadingTLS(files[0], files[1], files[2])
            reloading.load()
            tls = reloading
        else:
            host = options.webhook_host or "localhost"
            log.warning("no certificate in %s: serving a self-signed one (development only)", options.tls_dir)
            tls = SelfSignedTLS([host, "localhost", "127.0.0.1"])
    pinning = Pinning(admission)

    def answer_now(ctx: ReviewContext) -> Answer | None:
        if ctx.webhook in MUTATING_WEBHOOKS:
            return pinning.answer_now(ctx)
        return admission.answer_now(ctx)

    server = WebhookServer(
        tls=tls,
        observer=ReviewObserver(metrics),
        addr=options.webhook_addr,
        port=options.webhook_port,
        host=options.webhook_host,
        reload_interval=options.tls_reload_seconds,
        fast=answer_now,
    )
    loader = Loader(state, reader, namespace=options.namespace, overload=admission.overload)
    return Controller(options, metrics, state, admission, loader, server, pinning)


# --- policy files


async def load_files(paths: Sequence[str]) -> tuple[list[PolicyEntry], list[TrustRootEntry]]:
    """Every ClusterImagePolicy, ImagePolicy and TrustRoot in the YAML files, compiled the cluster's way.

    Raises :class:`PolicyError` (``PolicyInvalid``) listing every document that is not one of those kinds
    or does not compile: a development server does not start on half its policies.
    """
    policies: list[PolicyEntry] = []
    roots: list[TrustRootEntry] = []
    problems: list[str] = []
    for path in paths:
        for i, doc in enumerate(read_policy_documents(path)):
            if doc is None:
                continue
            kind = doc.get("kind") if isinstance(doc, Mapping) else None
            if kind == EXCEPTION_KIND:
                continue  # compiled by local.load_exceptions (issue 8: exceptions in files mode)
            if not isinstance(doc, Mapping) or kind not in (*POLICY_KINDS, TRUST_ROOT_KIND):
                problems.append(f"{path}[{i}]: not a ClusterImagePolicy, ImagePolicy or TrustRoot")
                continue
            if kind == TRUST_ROOT_KIND:
                root = await compile_trust_root_entry(doc, None)
                roots.append(root)
                if not root.ready:
                    problems.append(f"{path}[{i}]: {root.key}: {root.reason}: {root.detail}")
            else:
                entry = compile_policy_entry(doc)
                policies.append(entry)
                if not entry.ready:
                    problems.append(f"{path}[{i}]: {entry.key}: {entry.reason}: {entry.detail}")
    if problems:
        raise PolicyError(Reason.POLICY_INVALID, "; ".join(problems))
    return policies, roots


def freeze_heap() -> None:
    """Move everything loaded so far (modules, kopf, policies) out of the cyclic collector's sight.

    A full collection walks every tracked object; with the libraries' ~300,000 of them that took tens
    of milliseconds, stalling every review behind it. Frozen objects are never collected (they are
    the process's lifetime state anyway), so later collections only walk what reviews allocate.
    """
    gc.collect()
    gc.freeze()


async def _freeze_when_loaded(state: PolicyState, poll: float = 0.5) -> None:
    while not state.loaded:
        await asyncio.sleep(poll)
    freeze_heap()


# --- side servers: metrics, and health (files mode)


def _health_payload(controller: Controller) -> tuple[bool, dict[str, object]]:
    summary = controller.state.summary()
    overload = controller.admission.overload()
    return summary.loaded and overload is None, {
        "loaded": summary.loaded,
        "overloaded": overload,
        "lanes": controller.state.engine.lanes.in_use(),
        "policies": {"ready": summary.policies_ready, "invalid": summary.policies_invalid},
        "trustRoots": {"ready": summary.trust_roots_ready, "invalid": summary.trust_roots_invalid},
        "problems": list(summary.problems[:20]),
    }


@contextlib.asynccontextmanager
async def side_servers(
    controller: Controller, *, health: bool
) -> AsyncIterator[aiohttp.web.AppRunner | None]:
    """Serve ``/metrics`` (and, in files mode, the health endpoint) while the block runs."""
    options = controller.options
    runners: list[aiohttp.web.AppRunner] = []

    async def metrics(_: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(
            body=controller.metrics.render().encode(), headers={"Content-Type": CONTENT_TYPE}
        )

    async def healthz(_: aiohttp.web.Request) -> aiohttp.web.Response:
        ok, payload = _health_payload(controller)
        return aiohttp.web.json_response(payload, status=200 if ok else 503)

    try:
        if options.metrics_port:
            app = aiohttp.web.Application()
            app.add_routes([aiohttp.web.get("/metrics", metrics)])
            runner = aiohttp.web.AppRunner(app, handle_signals=False, access_log=None)
            await runner.setup()
            runners.append(runner)
            await aiohttp.web.TCPSite(
                runner, options.metrics_addr, options.metrics_port, reuse_address=True
            ).start()
        if health:
            host, port, path = options.health
            app = aiohttp.web.Application()
            app.add_routes([aiohttp.web.get(path, healthz)])
            runner = aiohttp.web.AppRunner(app, handle_signals=False, access_log=None)
            await runner.setup()
            runners.append(runner)
            await aiohttp.web.TCPSite(runner, host, port, reuse_address=True).start()
        yield runners[0] if runners else None
    finally:
        for runner in runners:
            await runner.cleanup()


# --- the two modes


async def serve_files(controller: Controller, policy_files: Sequence[str]) -> None:
    """Serve the webhook for the policies in ``policy_files``, until cancelled."""
    policies, roots = await load_files(policy_files)
    controller.state.apply(policies, roots)
    engine = controller.state.engine  # issue 8: ImagePolicyExceptions in the files (local.py)
    max_lifetime = timedelta(seconds=engine.settings.max_exception_seconds)
    engine.set_exceptions(load_exceptions(policy_files, max_lifetime=max_lifetime, now=engine.now()))
    controller.state.mark_loaded()
    freeze_heap()
    pins = controller.pinning.handlers if controller.pinning is not None else {}
    fn = LocalWebhookFn(
        {
            **controller.admission.handlers,
            **pins,
            WEBHOOK_POLICIES: controller.loader.policy_review.validate,
        }
    )
    watcher = asyncio.create_task(controller.admission.watch_loop())
    try:
        async with side_servers(controller, health=True):
            async for _config in controller.server(fn):
                pass  # a new CA bundle after a rotation: nothing to publish without a cluster
    finally:
        watcher.cancel()


async def serve_cluster(
    controller: Controller,
    *,
    login: LoginFn | None = None,
    stop_flag: Any = None,
    ready_flag: Any = None,
) -> None:
    """Run the kopf operator (indexes, status, probes) with our webhook server, until stopped."""
    registry = build_registry(
        controller.admission,
        controller.loader,
        login=login,
        pinning=controller.pinning,
        background=controller.background,
    )
    settings = kopf.OperatorSettings()
    configure_settings(settings, controller.server, standalone=controller.options.standalone)
    watcher = asyncio.create_task(controller.admission.watch_loop())
    freezer = asyncio.create_task(_freeze_when_loaded(controller.state))
    try:
        async with side_servers(controller, health=False):
            await kopf.operator(
                registry=registry,
                settings=settings,
                standalone=controller.options.standalone,
                clusterwide=True,
                liveness_endpoint=controller.options.liveness_endpoint,
                stop_flag=stop_flag,
                ready_flag=ready_flag,
            )
    finally:
        watcher.cancel()
        freezer.cancel()


def _configure_logging(level: str) -> None:
    numeric = getattr(logging, level.upper())
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("controller").setLevel(numeric)
    # kopf narrates every handler call at INFO; keep its warnings and errors.
    logging.getLogger("kopf").setLevel(max(numeric, logging.WARNING))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


async def _main(controller: Controller, policy_files: Sequence[str]) -> None:
    if policy_files:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            if task is not None:
                loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await serve_files(controller, policy_files)
    else:
        await serve_cluster(controller)  # kopf handles SIGINT/SIGTERM itself


def run(policy_files: list[str]) -> int:
    """Run the controller until SIGTERM. 0 on a clean stop, 2 on a configuration error."""
    try:
        options = ServerOptions.from_env(os.environ)
        _configure_logging(options.log_level)
        settings = Settings.from_env(os.environ)
        reader = None if policy_files else KubernetesReader.from_environment()
        controller = build_controller(options, settings, reader=reader)
        if not policy_files:  # background re-verification needs a cluster (issue 8)
            controller.background = build_background(
                controller.state,
                controller.metrics,
                BackgroundSettings.from_env(os.environ),
                loader_namespace=controller.loader.namespace,
                namespace_labels=lambda: controller.loader.namespaces.current,
            )
    except ImprimaturError as e:
        sys.stderr.write(f"imprimatur serve: {e.reason}: {e.detail}\n")
        return EXIT_CONFIG
    try:
        asyncio.run(_main(controller, policy_files))
    except PolicyError as e:
        sys.stderr.write(f"imprimatur serve: {e.reason}: {e.detail}\n")
        return EXIT_CONFIG
    finally:
        controller.close()
    return EXIT_OK
