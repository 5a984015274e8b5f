"""kopf's :class:`kopf.WebhookFn` protocol without kopf's operator: the same handlers, from files.

``imprimatur serve --policy FILE`` (development, the demo, the benchmarks) has no cluster, so kopf's
operator does not run; this calls the very ``@kopf.on.validate`` handlers the operator registers,
with kopf's keyword arguments, behind the same :class:`~controller.admission.webhook.WebhookServer`.
A denial is a :class:`kopf.AdmissionError` raised by the handler, exactly as under kopf.

What kopf's index of ImagePolicyExceptions gives the engine in a cluster, :func:`load_exceptions`
gives it from the same files: each one compiled as ``validate-policies`` compiles it at creation (the
server's start is its creation, unless it carries ``metadata.creationTimestamp``), with the cluster's
maximum lifetime. One that does not compile, or has already expired, stops the server from starting,
as an invalid policy does; one that expires while it runs stops granting at its ``expires``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final, cast

import kopf
import yaml

from controller.admission.review import review_response
from controller.admission.webhook import WebhookHandler
from controller.config import read_bounded_file
from controller.errors import ImprimaturError, PolicyError, Reason
from controller.policy.deadline import format_timestamp
from controller.policy.exceptions import EXCEPTION_KIND, CompiledException, ExceptionSet, compile_exception

server_log = logging.getLogger("controller.admission.webhook")

# the bounds of ``serve --policy`` files (controller/admission/server.py reads the same files)
MAX_FILE_BYTES: Final = 8 * 1024 * 1024
MAX_DOCUMENTS: Final = 1024


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


def read_policy_documents(path: str) -> list[Any]:
    """The YAML documents of the ``serve --policy`` file ``path``, within the bounds above.

    Shared by :func:`load_exceptions` and ``server.load_files`` (the same files, read the same way).
    Raises :class:`PolicyError`: ``ConfigInvalid`` for an unreadable file, ``PolicyInvalid`` for text
    that is not YAML or holds more than ``MAX_DOCUMENTS`` documents.
    """
    text = read_bounded_file(Path(path), MAX_FILE_BYTES, "policy file").decode("utf-8", errors="strict")
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as e:
        raise PolicyError(Reason.POLICY_INVALID, f"{path}: not YAML: {e}") from e
    if len(documents) > MAX_DOCUMENTS:
        raise PolicyError(Reason.POLICY_INVALID, f"{path}: more than {MAX_DOCUMENTS} documents")
    return documents


# --- ImagePolicyExceptions from files (in a cluster: kopf's index, controller/admission/exceptions.py)


def load_exceptions(paths: Sequence[str], *, max_lifetime: timedelta, now: datetime) -> ExceptionSet:
    """Every ImagePolicyException in the YAML files ``paths``, compiled; other documents are skipped.

    ``now`` is the creation time of those without ``metadata.creationTimestamp`` (the engine's clock
    at load). Raises :class:`PolicyError`: ``ConfigInvalid`` for an unreadable file, ``PolicyInvalid``
    listing every exception that does not compile or has expired (``expires`` not after its creation).
    """
    compiled: list[CompiledException] = []
    problems: list[str] = []
    for path in paths:
        for i, doc in enumerate(read_policy_documents(path)):
            if not isinstance(doc, Mapping) or doc.get("kind") != EXCEPTION_KIND:
                continue
            metadata = doc.get("metadata")
            stamped = isinstance(metadata, Mapping) and metadata.get("creationTimestamp") is not None
            try:
                exception = compile_exception(
                    doc, max_lifetime=max_lifetime, created=None if stamped else now
                )
            except ImprimaturError as e:
                problems.append(f"{path}[{i}]: {e.detail}")
                continue
            if not exception.active(now):
                problems.append(
                    f"{path}[{i}]: {exception.label}: spec.expires: expired at {format_timestamp(exception.expires)}"
                )
                continue
            compiled.append(exception)
    if problems:
        raise PolicyError(Reason.POLICY_INVALID, "; ".join(problems))
    exceptions = ExceptionSet(compiled)
    if exceptions.ignored:
        server_log.warning(
            "%d ImagePolicyException(s) beyond their namespace's bounds are ignored", len(exceptions.ignored)
        )
    return exceptions
