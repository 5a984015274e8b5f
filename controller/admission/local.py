"""kopf's :class:`kopf.WebhookFn` protocol without kopf's operator: the same handlers, from files.

``imprimatur serve --policy FILE`` (development, the demo, the benchmarks) has no cluster, so kopf's
operator does not run; this calls the very ``@kopf.on.validate`` handlers the operator registers,
with kopf's keyword arguments, behind the same :class:`~controller.admission.webhook.WebhookServer`.
A denial is a :class:`kopf.AdmissionError` raised by the handler, exactly as under kopf.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, cast

import kopf

from controller.admission.review import review_response
from controller.admission.webhook import WebhookHandler
from controller.errors import Reason

server_log = logging.getLogger("controller.admission.webhook")


class LocalWebhookFn:
    """kopf's :class:`kopf.WebhookFn` protocol without kopf's operator: calls the same handlers.

    Used when policies come from files and there is no cluster. Denial is an :class:`kopf.AdmissionError`
    raised by the handler, exactly as under kopf.
    """

    def __init__(self, handlers: Mapping[str, WebhookHandler]) -> None:
        self._handlers = dict(handlers)

    async def __call__(
        self,
        request: Any,
        *,
        webhook: str | None = None,
        headers: Mapping[str, str] | None = None,
        sslpeer: Mapping[str, Any] | None = None,
    ) -> Any:
        raw = cast(Mapping[str, Any], request)
        payload = cast(Mapping[str, Any], raw["request"])
        uid = str(payload["uid"])
        handler = self._handlers.get(webhook or "")
        warnings: list[str] = []
        allowed, message, code = True, None, None
        if handler is None:
            allowed, message, code = (
                False,
                f"{Reason.INTERNAL_ERROR}: -: no handler for webhook {webhook!r}",
                500,
            )
        else:
            new, old = payload.get("object"), payload.get("oldObject")
            try:
                await handler(
                    body=new if new is not None else old,
                    new=new,
                    old=old,
                    operation=payload.get("operation"),
                    subresource=payload.get("subResource"),
                    dryrun=bool(payload.get("dryRun")),
                    warnings=warnings,
                    userinfo=payload.get("userInfo"),
                    headers=headers or {},
                    sslpeer=sslpeer or {},
                    logger=server_log,
                )
            except kopf.AdmissionError as e:
                allowed, message, code = False, str(e), e.code or 500
            except Exception as e:  # noqa: BLE001 - a handler bug denies, like kopf's PermanentError path
                server_log.exception("webhook handler %s failed", webhook)
                allowed, message, code = False, f"{Reason.INTERNAL_ERROR}: -: {type(e).__name__}", 500
        return review_response(
            api_version=str(raw.get("apiVersion")),
            uid=uid,
            allowed=allowed,
            message=message,
            code=code,
            warnings=warnings,
        )
