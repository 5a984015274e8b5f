"""The HTTPS webhook server: reads AdmissionReviews strictly, answers them, logs and counts every one.

It implements kopf's webhook-server protocol (``server(fn) -> AsyncIterator[WebhookClientConfig]``),
so in a cluster kopf hands it its own admission function and the ``@kopf.on.validate`` handlers
run inside kopf. Without a cluster (policy files) the same handlers are called by
:class:`LocalWebhookFn`. Either way this server does the parts that must hold for every review:

* only POST ``/<webhook id>`` for the known ids; any other path is 404, never an allow;
* a bounded body (413), JSON (400), a well-formed AdmissionReview (``ReviewInvalid``);
* the resource must be one the webhook id serves (a Deployment sent to ``/validate-pods`` is denied:
  kopf would find no handler for it and allow);
* a review that no handler looked at is denied (``InternalError``), whatever the framework says;
* one structured log line and the metrics for every answer.

TLS comes from a live :class:`ssl.SSLContext` that is reloaded in place when the certificate files
change (see :mod:`controller.admission.tls`): the socket never closes for a rotation.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import json
import logging
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, cast

import aiohttp.web
import kopf

from controller.admission.observe import ReviewObserver
from controller.admission.review import (
    MAX_REVIEW_BYTES,
    AdmissionRequest,
    GroupVersionResource,
    bound_message,
    parse_review,
    review_api_version,
    review_response,
    review_uid,
)
from controller.admission.serving import ServingLoop, on_loop
from controller.errors import InputError, Reason
from controller.model import Decision

server_log = logging.getLogger(__name__)

WEBHOOK_PODS: Final = "validate-pods"
WEBHOOK_WORKLOADS: Final = "validate-workloads"

POD_RESOURCES: Final = frozenset({GroupVersionResource("", "v1", "pods")})
WORKLOAD_RESOURCES: Final = frozenset(
    {
        GroupVersionResource("apps", "v1", "deployments"),
        GroupVersionResource("apps", "v1", "replicasets"),
        GroupVersionResource("apps", "v1", "statefulsets"),
        GroupVersionResource("apps", "v1", "daemonsets"),
        GroupVersionResource("batch", "v1", "jobs"),
        GroupVersionResource("batch", "v1", "cronjobs"),
        GroupVersionResource("", "v1", "replicationcontrollers"),
    }
)
# --- validate-policies (operator side, controller/admission/policy_review.py): our own CRDs
WEBHOOK_POLICIES: Final = "validate-policies"
POLICY_CRD_RESOURCES: Final = frozenset(
    {
        GroupVersionResource("imprimatur.dev", "v1alpha1", "clusterimagepolicies"),
        GroupVersionResource("imprimatur.dev", "v1alpha1", "imagepolicies"),
        GroupVersionResource("imprimatur.dev", "v1alpha1", "trustroots"),
        GroupVersionResource("imprimatur.dev", "v1alpha1", "imagepolicyexceptions"),  # issue 8
    }
)
# --- end validate-policies
# --- pinning (controller/admission/mutation.py): the mutating webhooks, answered with a JSON patch
WEBHOOK_PIN_PODS: Final = "mutate-pods"
WEBHOOK_PIN_WORKLOADS: Final = "mutate-workloads"
MUTATING_WEBHOOKS: Final = frozenset({WEBHOOK_PIN_PODS, WEBHOOK_PIN_WORKLOADS})
# --- end pinning
WEBHOOK_RESOURCES: Final[Mapping[str, frozenset[GroupVersionResource]]] = {
    WEBHOOK_PODS: POD_RESOURCES,
    WEBHOOK_WORKLOADS: WORKLOAD_RESOURCES,
    WEBHOOK_POLICIES: POLICY_CRD_RESOURCES,
    WEBHOOK_PIN_PODS: POD_RESOURCES,
    WEBHOOK_PIN_WORKLOADS: WORKLOAD_RESOURCES,
}
# Which subresources each webhook reviews (None: the resource itself).
WEBHOOK_SUBRESOURCES: Final[Mapping[str, frozenset[str | None]]] = {
    WEBHOOK_PODS: frozenset({None, "ephemeralcontainers"}),
    WEBHOOK_WORKLOADS: frozenset({None}),
    WEBHOOK_POLICIES: frozenset({None}),
    WEBHOOK_PIN_PODS: frozenset({None, "ephemeralcontainers"}),
    WEBHOOK_PIN_WORKLOADS: frozenset({None}),
}

NO_IMAGES_REASON: Final = "NoNewImages"  # an UPDATE that adds no image: nothing to verify
NOT_HANDLED_REASON: Final = "NotHandled"  # a kind no webhook of ours reviews (a broad rule sent it)
REVIEWED_RESOURCES: Final = frozenset(r for resources in WEBHOOK_RESOURCES.values() for r in resources)


@dataclass(frozen=True, slots=True)
class Answer:
    """How a review is answered: allowed or not, the denial message and code, the reason, warnings."""

    allowed: bool
    message: str | None
    code: int | None
    reason: str
    warnings: tuple[str, ...] = ()
    patch: tuple[Mapping[str, object], ...] = ()  # a JSON patch (mutating webhooks, when allowed)


FastPath = Callable[["ReviewContext"], Answer | None]
"""Answers a review on the event loop when no waiting is needed (cached verdicts, shedding); else None."""


@dataclass(slots=True)
class ReviewContext:
    """One review in flight: what the handler decided, for the log line and the metrics."""

    request: AdmissionRequest
    webhook: str
    started: float
    handled: bool = False
    images: tuple[str, ...] = ()
    decision: Decision | None = None
    reason: str = ""
    warnings: list[str] = field(default_factory=list)
    patch: tuple[Mapping[str, object], ...] = ()  # what a mutating handler answers with


_CURRENT: contextvars.ContextVar[ReviewContext | None] = contextvars.ContextVar(
    "imprimatur_review", default=None
)


def current_review() -> ReviewContext:
    """The review being answered. Raises :class:`InputError` outside of one (never an allow)."""
    ctx = _CURRENT.get()
    if ctx is None:
        raise InputError(Reason.REVIEW_INVALID, "no admission review in progress")
    return ctx


WebhookHandler = Callable[..., Awaitable[None]]
"""A ``@kopf.on.validate`` handler as this module calls it: keyword arguments, kopf's names."""


def _json_error(status: int, reason: Reason, detail: str) -> aiohttp.web.Response:
    body = {"kind": "Status", "code": status, "reason": str(reason), "message": f"{reason}: -: {detail}"}
    return aiohttp.web.json_response(body, status=status)


def _response_parts(response: object) -> tuple[bool, str | None, int | None, list[str]] | None:
    """(allowed, message, code, warnings) of an AdmissionReview response, or None if it is not one."""
    if not isinstance(response, Mapping):
        return None
    payload = response.get("response")
    if not isinstance(payload, Mapping) or not isinstance(payload.get("allowed"), bool):
        return None
    status = payload.get("status")
    message = status.get("message") if isinstance(status, Mapping) else None
    code = status.get("code") if isinstance(status, Mapping) else None
    raw_warnings = payload.get("warnings")
    warnings = [str(w) for w in raw_warnings] if isinstance(raw_warnings, list) else []
    return (
        bool(payload["allowed"]),
        str(message) if message is not None else None,
        code if isinstance(code, int) else None,
        warnings,
    )


def _answer_response(api_version: str, uid: str, answer: Answer) -> dict[str, object]:
    response = review_response(
        api_version=api_version,
        uid=uid,
        allowed=answer.allowed,
        message=bound_message(answer.message.split("\n")) if answer.message else None,
        code=answer.code,
        warnings=answer.warnings,
    )
    if answer.allowed and answer.patch:
        body = cast(dict[str, object], response["response"])
        encoded = json.dumps(list(answer.patch), separators=(",", ":")).encode()
        body["patchType"] = "JSONPatch"
        body["patch"] = base64.b64encode(encoded).decode("ascii")
    return response


def check_route(parsed: AdmissionRequest, webhook: str) -> None:
    """The resource and subresource of a parsed review must be ones ``webhook`` reviews."""
    if parsed.resource not in WEBHOOK_RESOURCES[webhook]:
        raise InputError(Reason.REVIEW_INVALID, f"/{webhook} does not review {parsed.resource}")
    if parsed.sub_resource not in WEBHOOK_SUBRESOURCES[webhook]:
        raise InputError(
            Reason.REVIEW_INVALID, f"/{webhook} does not review the {parsed.sub_resource} subresource"
        )


class ServingTLS(Protocol):
    """A live server context and the CA bundle clients should trust; ``check`` reloads on change."""

    context: ssl.SSLContext
    cadata: bytes | None

    def check(self) -> bool: ...


class WebhookServer:
    """An HTTPS admission endpoint at ``https://addr:port/<webhook id>`` (a kopf webhook server)."""

    def __init__(
        self,
        *,
        tls: ServingTLS,
        observer: ReviewObserver,
        addr: str = "0.0.0.0",  # noqa: S104 - kube-apiserver calls in through the Service
        port: int = 8443,
        host: str | None = None,
        reload_interval: float = 10.0,
        fast: FastPath | None = None,
    ) -> None:
        self.fast = fast
        self.tls = tls
        self.observer = observer
        self.addr = addr
        self.port = port
        self.host = host
        self.reload_interval = reload_interval
        self.started = threading.Event()
        self._host_loop: asyncio.AbstractEventLoop | None = None
        self.bound_port: int | None = None

    @property
    def url(self) -> str:
        """The base URL once started (``https://host:port``)."""
        host = self.host or ("127.0.0.1" if self.addr in ("0.0.0.0", "", "::") else self.addr)  # noqa: S104
        return f"https://{host}:{self.bound_port or self.port}"

    def _client_config(self) -> kopf.WebhookClientConfig:
        config = kopf.WebhookClientConfig(url=self.url)
        if self.tls.cadata is not None:
            config["caBundle"] = base64.b64encode(self.tls.cadata).decode("ascii")
        return config

    def app(self, fn: kopf.WebhookFn) -> aiohttp.web.Application:
        """The aiohttp application serving ``fn`` (public for tests that serve it without TLS)."""

        async def serve(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
            return await self._serve(fn, request)

        app = aiohttp.web.Application(client_max_size=MAX_REVIEW_BYTES)
        app.add_routes([aiohttp.web.post("/{id:.*}", serve)])
        return app

    async def __call__(self, fn: kopf.WebhookFn) -> AsyncIterator[kopf.WebhookClientConfig]:
        # The server runs on its own loop and thread (see serving.py); kopf's handlers stay on
        # kopf's loop, this one, where reviews that need them are sent.
        self._host_loop = asyncio.get_running_loop()
        serving = ServingLoop(self.app(fn), addr=self.addr or None, port=self.port, context=self.tls.context)
        try:
            self.bound_port = await serving.start()
            server_log.info("serving admission webhooks at %s", self.url)
            self.started.set()
            cadata = self.tls.cadata
            yield self._client_config()
            while True:
                await asyncio.sleep(self.reload_interval)
                if self.tls.check() and self.tls.cadata != cadata:
                    cadata = self.tls.cadata
                    yield self._client_config()
        finally:
            self.started.clear()
            await serving.stop()
            self._host_loop = None

    def _answer_fast(self, ctx: ReviewContext, api_version: str) -> aiohttp.web.Response | None:
        """The response, when the fast path can answer without waiting; else None (go through kopf)."""
        assert self.fast is not None  # noqa: S101 - only called when set
        try:
            answer = self.fast(ctx)
        except Exception:  # noqa: BLE001 - the slow path decides instead, and fails closed itself
            server_log.exception("fast path failed for uid=%s; deciding through kopf", ctx.request.uid)
            return None
        if answer is None:
            return None
        ctx.handled = True
        ctx.reason = answer.reason
        path = (
            "shed"
            if answer.reason == Reason.OVERLOADED
            else ("cached" if ctx.decision is not None else "direct")
        )
        self.observer.metrics.fast_answers.inc_values((path,))
        return self._respond(ctx, api_version, answer)

    def _respond(self, ctx: ReviewContext, api_version: str, answer: Answer) -> aiohttp.web.Response:
        """The AdmissionReview answer, logged and counted: the one way both doors answer."""
        response = _answer_response(api_version, ctx.request.uid, answer)
        self.observer.record(
            kind=ctx.request.kind,
            allowed=answer.allowed,
            reason=answer.reason,
            duration=time.monotonic() - ctx.started,
            ctx=ctx,
        )
        return aiohttp.web.json_response(response)

    async def _read_json(self, request: aiohttp.web.Request, started: float) -> object:
        """The request body as JSON, or the error response that refuses it (413, 400)."""
        try:
            body = await request.read()
        except aiohttp.web.HTTPRequestEntityTooLarge:
            self.observer.record(
                kind="-",
                allowed=False,
                reason=str(Reason.LIMIT_EXCEEDED),
                duration=time.monotonic() - started,
            )
            return _json_error(413, Reason.LIMIT_EXCEEDED, f"a review is at most {MAX_REVIEW_BYTES} bytes")
        try:
            data: object = json.loads(body)
        except (ValueError, RecursionError) as e:
            self.observer.record(
                kind="-",
                allowed=False,
                reason=str(Reason.REVIEW_INVALID),
                duration=time.monotonic() - started,
            )
            return _json_error(400, Reason.REVIEW_INVALID, f"the body is not JSON: {type(e).__name__}")

        return data

    async def _serve(self, fn: kopf.WebhookFn, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        started = time.monotonic()
        webhook = request.match_info.get("id", "")
        resources = WEBHOOK_RESOURCES.get(webhook)
        if resources is None:
            self.observer.record(
                kind="-", allowed=False, reason="NotFound", duration=time.monotonic() - started
            )
            return _json_error(404, Reason.REVIEW_INVALID, f"no webhook at /{webhook[:80]}")
        data = await self._read_json(request, started)
        if isinstance(data, aiohttp.web.Response):
            return data
        api_version, uid = review_api_version(data), review_uid(data)
        try:
            parsed = parse_review(data)
            if parsed.resource not in REVIEWED_RESOURCES:
                # Not an image-bearing kind nor one of ours (a Role, say, sent by a broad rule):
                # nothing here could deny it, so it is allowed, and logged like every answer.
                self.observer.record(
                    kind=parsed.kind,
                    allowed=True,
                    reason=NOT_HANDLED_REASON,
                    duration=time.monotonic() - started,
                    uid=parsed.uid,
                )
                return aiohttp.web.json_response(
                    review_response(api_version=api_version, uid=parsed.uid, allowed=True)
                )
            check_route(parsed, webhook)
        except InputError as e:
            self.observer.record(
                kind="-", allowed=False, reason=str(e.reason), duration=time.monotonic() - started, uid=uid
            )
            if uid is None:
                return _json_error(400, e.reason, e.detail)
            denial = review_response(
                api_version=api_version, uid=uid, allowed=False, message=e.message(), code=400
            )
            return aiohttp.web.json_response(denial)

        ctx = ReviewContext(request=parsed, webhook=webhook, started=started)
        if self.fast is not None:
            answered = self._answer_fast(ctx, api_version)
            if answered is not None:
                return answered
        token = _CURRENT.set(ctx)
        try:
            headers = dict(request.headers)
            sslpeer = request.transport.get_extra_info("peercert") if request.transport else None
            raw_response: object = await on_loop(
                fn(cast(Any, data), webhook=webhook, headers=headers, sslpeer=sslpeer), self._host_loop
            )
        except Exception as e:  # noqa: BLE001 - the framework failed: deny, and say it was us
            server_log.exception("admission framework error for uid=%s", parsed.uid)
            raw_response = review_response(
                api_version=api_version,
                uid=parsed.uid,
                allowed=False,
                message=f"{Reason.INTERNAL_ERROR}: -: {type(e).__name__}",
                code=500,
            )
        finally:
            _CURRENT.reset(token)

        parts = _response_parts(raw_response)
        allowed: bool
        message: str | None
        code: int | None
        warnings: list[str]
        if parts is None:
            allowed, message, code, warnings = (
                False,
                f"{Reason.INTERNAL_ERROR}: -: malformed response",
                500,
                [],
            )
        else:
            allowed, message, code, warnings = parts
        if allowed and not ctx.handled:
            # kopf allows a review for which no handler matched: never let that through.
            allowed, message, code = (
                False,
                f"{Reason.INTERNAL_ERROR}: -: no handler reviewed this object",
                500,
            )
        reason = ctx.reason or (message.split(":", 1)[0] if message else "Allowed")
        patch = ctx.patch if allowed and webhook in MUTATING_WEBHOOKS else ()
        answer = Answer(allowed, message, code, reason, tuple(warnings), patch)
        return self._respond(ctx, api_version, answer)
