"""ImagePolicyExceptions on the operator side: the kopf index, their status, and their review.

* **Index.** Each ImagePolicyException is compiled (:func:`controller.policy.exceptions.compile_exception`,
  with the cluster's maximum lifetime, ``IMPRIMATUR_MAX_EXCEPTION_SECONDS``) into a kopf index; every
  event rebuilds the engine's :class:`ExceptionSet` from it (invalid ones are left out: they grant
  nothing). The engine checks expiry against its clock at every review, so an exception stops at its
  ``expires`` whatever its status says.
* **Status.** ``status.state`` is ``Active``, ``Expired`` or ``Invalid``, with ``message``, ``expires``
  and ``observedGeneration``. Events write it; a kopf timer (every :data:`EXPIRY_CHECK_SECONDS`)
  writes ``Expired`` once the engine's clock passes ``expires``. Only ``/status`` is patched, and only
  when it differs.
* **Review** (``validate-policies``): the spec is compiled with the same compiler and maximum; on
  CREATE an ``imprimatur.dev/created-by`` annotation must be absent or equal the authenticated user
  (``request.userInfo.username``); on UPDATE it may not change. The creation is logged with that user
  on the decision logger, which is the authoritative record of who created it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import kopf

from controller.admission.objects import GROUP, VERSION
from controller.admission.state import PolicyState
from controller.errors import ImprimaturError, InputError, Reason
from controller.policy.deadline import TimestampError, format_timestamp, parse_timestamp
from controller.policy.exceptions import (
    CREATED_BY_ANNOTATION,
    EXCEPTION_KIND,
    MAX_EXCEPTIONS_PER_NAMESPACE,
    MAX_WILDCARDS_PER_NAMESPACE,
    CompiledException,
    ExceptionSet,
    compile_exception,
)
from controller.workload import pod_spec_path

log = logging.getLogger(__name__)
decision_log = logging.getLogger("controller.admission.decision")

EXCEPTION_PLURAL: Final = "imagepolicyexceptions"
EXCEPTION_INDEX: Final = "imprimatur_policy_exceptions"
EXPIRY_CHECK_SECONDS: Final = 5.0
REBUILD_COALESCE_SECONDS: Final = 0.05  # a burst of events rebuilds the engine's set once, not per event
MAX_STATUS_MESSAGE: Final = 1024
MAX_LABELS: Final = 256
CODE_INVALID: Final = 422
CODE_FORBIDDEN: Final = 403

ACTIVE: Final = "Active"
EXPIRED: Final = "Expired"
INVALID: Final = "Invalid"


@dataclass(frozen=True, slots=True)
class ExceptionEntry:
    """One ImagePolicyException as indexed: compiled, or the reason it is invalid."""

    namespace: str
    name: str
    exception: CompiledException | None
    detail: str = ""
    generation: int | None = None


def _metadata(body: Mapping[str, object]) -> Mapping[str, object]:
    meta = body.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def compile_entry(body: Mapping[str, object], max_lifetime: timedelta) -> ExceptionEntry:
    """The index entry of one object; never raises on bad content (the entry says why)."""
    meta = _metadata(body)
    generation = meta.get("generation")
    gen = generation if isinstance(generation, int) else None
    namespace, name = _text(meta.get("namespace")), _text(meta.get("name"))
    try:
        compiled = compile_exception(body, max_lifetime=max_lifetime)
    except ImprimaturError as e:
        return ExceptionEntry(namespace, name, None, f"{e.reason}: {e.detail}", gen)
    return ExceptionEntry(namespace, name, compiled, "", gen)


IGNORED_NOTE: Final = (
    f"; beyond its namespace's bounds ({MAX_EXCEPTIONS_PER_NAMESPACE} exceptions, "
    f"{MAX_WILDCARDS_PER_NAMESPACE} wildcards, the ones expiring last first) it is not considered"
)


def desired_status(entry: ExceptionEntry, now: datetime, *, ignored: bool = False) -> dict[str, object]:
    """``state`` (Active / Expired / Invalid), ``message``, ``expires`` and ``observedGeneration``.

    ``ignored``: valid, but beyond its namespace's bounds (:class:`ExceptionSet`), so it grants
    nothing while the namespace holds that many; the message says so."""
    exception = entry.exception
    status: dict[str, object]
    if exception is None:
        status = {"state": INVALID, "message": entry.detail[:MAX_STATUS_MESSAGE]}
    else:
        until = format_timestamp(exception.expires)
        if exception.active(now):
            note = IGNORED_NOTE if ignored else ""
            status = {"state": ACTIVE, "message": f"{exception.label} admits its images until {until}{note}"}
        else:
            status = {"state": EXPIRED, "message": f"{exception.label} expired at {until}; it admits nothing"}
        status["expires"] = until
    if entry.generation is not None:
        status["observedGeneration"] = entry.generation
    return status


def _status_differs(body: Mapping[str, object], desired: Mapping[str, object]) -> bool:
    current = body.get("status")
    return not isinstance(current, Mapping) or any(current.get(k) != v for k, v in desired.items())


def _timer_unchanged(body: Mapping[str, object], now: datetime, ignored: bool) -> bool:
    """Whether the status written for this generation still holds at ``now``, read without compiling
    the spec (the timer visits every exception every few seconds: a flood of them must cost little)."""
    status = body.get("status")
    generation = _metadata(body).get("generation")
    if (
        not isinstance(status, Mapping)
        or generation is None
        or status.get("observedGeneration") != generation
    ):
        return False
    state, message = status.get("state"), status.get("message")
    if state == INVALID:
        return True  # an unchanged spec stays invalid: only a new generation can change that
    try:
        expires = parse_timestamp(status.get("expires"))
    except TimestampError:
        return False
    if state == EXPIRED:
        return now >= expires
    return (
        state == ACTIVE
        and now < expires
        and isinstance(message, str)
        and message.endswith(IGNORED_NOTE) == ignored
    )


def object_labels(obj: Mapping[str, object] | None) -> Mapping[str, str]:
    """The labels an exception's selector is matched against: a Pod's own, a workload's pod template's.

    Anything unreadable is no labels (a selector that needs one then does not match: fail closed).
    """
    if obj is None:
        return {}
    try:
        path = pod_spec_path(obj)
    except InputError:
        return {}
    node: object = obj
    for key in (*path[:-1], "metadata"):
        node = node.get(key) if isinstance(node, Mapping) else None
    labels = node.get("labels") if isinstance(node, Mapping) else None
    if not isinstance(labels, Mapping) or len(labels) > MAX_LABELS:
        return {}
    return {k: v for k, v in labels.items() if isinstance(k, str) and isinstance(v, str)}


class Exceptions:
    """Keeps the engine's exceptions in step with kopf's index, and their status with the clock."""

    def __init__(self, state: PolicyState) -> None:
        self.state = state
        self.max_lifetime = timedelta(seconds=state.engine.settings.max_exception_seconds)
        self._pending: asyncio.TimerHandle | None = None
        self._indices: Mapping[str, Any] = {}
        self._over: frozenset[str] = frozenset()  # namespaces with exceptions beyond their bounds

    @property
    def now(self) -> Callable[[], datetime]:
        return self.state.engine.now

    # kopf handlers

    async def index(self, *, body: Mapping[str, object], **_: Any) -> dict[tuple[str, str], ExceptionEntry]:
        entry = compile_entry(body, self.max_lifetime)
        return {(entry.namespace, entry.name): entry}

    def rebuild(self, indices: Mapping[str, Any]) -> None:
        index = indices.get(EXCEPTION_INDEX)
        if index is None:
            return
        valid = [
            e.exception
            for store in index.values()
            for e in store
            if isinstance(e, ExceptionEntry) and e.exception is not None
        ]
        exceptions = ExceptionSet(valid)
        over = frozenset(namespace for namespace, _ in exceptions.ignored)
        if over - self._over:  # once when a namespace passes its bounds, not at every rebuild
            log.warning(
                "namespace(s) %s hold more ImagePolicyExceptions than are considered; %d are ignored",
                ", ".join(sorted(over - self._over)[:8]),
                len(exceptions.ignored),
            )
        self._over = over
        self.state.engine.set_exceptions(exceptions)

    def _rebuild_soon(self, indices: Mapping[str, Any]) -> None:
        """Rebuild once :data:`REBUILD_COALESCE_SECONDS` from now: a burst (thousands of creates in a
        namespace) rebuilds the set a few times, not once per event (each rebuild reads every entry)."""
        self._indices = indices
        if self._pending is None:
            self._pending = asyncio.get_running_loop().call_later(
                REBUILD_COALESCE_SECONDS, self._rebuild_pending
            )

    def _rebuild_pending(self) -> None:
        self._pending = None
        self.rebuild(self._indices)

    async def on_event(
        self, *, type: str | None, body: Mapping[str, object], patch: Any, **kwargs: Any
    ) -> None:
        self._rebuild_soon(kwargs)
        if type == "DELETED":
            return
        self._update_status(body, patch)

    async def on_loaded(self, **kwargs: Any) -> None:
        self.rebuild(kwargs)

    async def on_timer(self, *, body: Mapping[str, object], patch: Any, **_: Any) -> None:
        if not _timer_unchanged(body, self.now(), self._ignored(body)):
            self._update_status(body, patch)

    def _ignored(self, body: Mapping[str, object]) -> bool:
        meta = _metadata(body)
        return (_text(meta.get("namespace")), _text(meta.get("name"))) in self.state.engine.exceptions.ignored

    def _update_status(self, body: Mapping[str, object], patch: Any) -> None:
        entry = compile_entry(body, self.max_lifetime)
        desired = desired_status(entry, self.now(), ignored=self._ignored(body))
        if _status_differs(body, desired):
            patch["status"] = desired

    # validate-policies

    def review(
        self,
        body: Mapping[str, object],
        operation: str | None,
        old: Mapping[str, object] | None,
        username: str | None,
        warnings: list[str],
        *,
        dry_run: bool = False,
    ) -> str:
        """Admit (returning the reason) or refuse (:class:`kopf.AdmissionError`) one exception."""
        meta = _metadata(body)
        annotations = meta.get("annotations")
        claimed = annotations.get(CREATED_BY_ANNOTATION) if isinstance(annotations, Mapping) else None
        key = f"{_text(meta.get('namespace'))}/{_text(meta.get('name'))}"
        if operation == "CREATE" and claimed is not None and claimed != username:
            raise kopf.AdmissionError(
                f"{Reason.POLICY_INVALID}: {EXCEPTION_KIND} {key}: metadata.annotations"
                f"[{CREATED_BY_ANNOTATION}]: must be absent or name the requesting user",
                code=CODE_FORBIDDEN,
            )
        if operation == "UPDATE" and old is not None:
            old_annotations = _metadata(old).get("annotations")
            before = (
                old_annotations.get(CREATED_BY_ANNOTATION) if isinstance(old_annotations, Mapping) else None
            )
            if claimed != before:
                raise kopf.AdmissionError(
                    f"{Reason.POLICY_INVALID}: {EXCEPTION_KIND} {key}: metadata.annotations"
                    f"[{CREATED_BY_ANNOTATION}]: cannot be changed after creation",
                    code=CODE_FORBIDDEN,
                )
        created = None if meta.get("creationTimestamp") is not None else self.now()
        try:
            compiled = compile_exception(body, max_lifetime=self.max_lifetime, created=created)
        except ImprimaturError as e:
            unchanged = operation == "UPDATE" and old is not None and old.get("spec") == body.get("spec")
            if unchanged:
                warnings.append(f"{e.reason}: {e.detail}"[:1024])
                return str(e.reason)
            raise kopf.AdmissionError(f"{e.reason}: {e.detail}", code=CODE_INVALID) from e
        if operation == "CREATE":
            decision_log.info(
                "exception %s created by user=%s creator=%r expires=%s dry_run=%s reason=%r",
                compiled.label,
                username or "-",
                compiled.creator,
                format_timestamp(compiled.expires),
                str(dry_run).lower(),
                compiled.reason,
            )
        return "Compiled"


def _is_exception_crd(name: str | None = None, **_: Any) -> bool:
    return name == f"{EXCEPTION_PLURAL}.{GROUP}"


def register(registry: kopf.OperatorRegistry, exceptions: Exceptions) -> None:
    """The kopf index, event handler and expiry timer of ImagePolicyExceptions."""
    # kopf calls CRD handlers only once every index is populated: the exceptions present at start
    kopf.on.event(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        id="exceptions-loaded",
        when=_is_exception_crd,
        registry=registry,
    )(exceptions.on_loaded)
    kopf.index(GROUP, VERSION, EXCEPTION_PLURAL, id=EXCEPTION_INDEX, registry=registry)(exceptions.index)
    kopf.on.event(GROUP, VERSION, EXCEPTION_PLURAL, id="exception-status", registry=registry)(
        exceptions.on_event
    )
    kopf.timer(
        GROUP,
        VERSION,
        EXCEPTION_PLURAL,
        id="exception-expiry",
        interval=EXPIRY_CHECK_SECONDS,
        registry=registry,
    )(exceptions.on_timer)
