"""``ImagePolicyException``: a namespaced, expiring break-glass that admits images the policies deny.

An exception names images by glob (as policies do), optionally only for objects whose labels match a
``selector`` (a Pod's labels, or a workload's pod-template labels), with a required ``expires`` and a
required ``reason``. While ``now < expires`` it turns a *denied* verdict of an image it covers **in
its own namespace** into an allowed one, reason ``ExceptionGranted``, with a warning that names the
exception and its expiry. It never applies:

* outside its namespace (a namespace user can only open their own namespace);
* to an image governed, in that namespace, by a ClusterImagePolicy with ``exceptions: forbidden``,
  or by a ClusterImagePolicy that does not compile (it may have said ``forbidden``: fail closed);
* once expired, or when it is invalid (an ``expires`` more than the cluster's maximum after its
  creation, a bad glob or selector): it then grants nothing.

Who created it: the ``validate-policies`` webhook refuses, on CREATE, an ``imprimatur.dev/created-by``
annotation that differs from the authenticated user (``request.userInfo.username``), and, on UPDATE,
any change of it. So the annotation, when present, is the authenticated creator. ``managedFields``'
``manager`` is only the client's field-manager name (``kubectl-create``, chosen by the client): it is
recorded as the tool, never as an identity (:func:`creator_of`).

Nothing here reads the clock: ``now`` is an argument.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Final

from controller.errors import InputError, PolicyError, Reason
from controller.model import ExceptionGrant, ImageVerdict
from controller.policy.compiled import CompiledPolicy
from controller.policy.crd import API_VERSION
from controller.policy.deadline import TimestampError, format_timestamp, parse_timestamp
from controller.policy.glob import GlobError, ImageGlob, normalize_image_name
from controller.policy.globset import GlobSet, GlobSetError, compile_glob_set, wildcards
from controller.policy.policyset import Matching, PolicySet
from controller.policy.scope import LabelSelector, ScopeError, parse_scope

EXCEPTION_KIND: Final = "ImagePolicyException"
CREATED_BY_ANNOTATION: Final = "imprimatur.dev/created-by"
DEFAULT_MAX_LIFETIME: Final = timedelta(days=7)

MAX_EXCEPTION_IMAGES: Final = 64
MAX_GLOB_LENGTH: Final = 512
MAX_REASON_LENGTH: Final = 512
MAX_NAME_LENGTH: Final = 253
MAX_CREATOR_LENGTH: Final = 256
MAX_MANAGED_FIELDS: Final = 64
# What one namespace's exceptions may cost each review (matched on the webhook's event loop): the
# first exceptions (expiring last first) within both bounds are considered, the rest grant nothing.
MAX_EXCEPTIONS_PER_NAMESPACE: Final = 32
MAX_WILDCARDS_PER_NAMESPACE: Final = 256  # as for ImagePolicies (policyset.py): ~3.6 ms a name at worst
MAX_WILDCARDS_PER_EXCEPTION: Final = 64  # wildcards (runs of *, and ?) in all its globs together

_TOP_LEVEL_FIELDS: Final = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})
_SPEC_FIELDS: Final = frozenset({"images", "selector", "expires", "reason"})
_NAME_RE: Final = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
_NAMESPACE_RE: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class CompiledException:
    """A valid ImagePolicyException, ready to match. Build it with :func:`compile_exception`."""

    name: str
    namespace: str
    images: tuple[ImageGlob, ...]
    selector: LabelSelector | None
    expires: datetime
    reason: str
    creator: str = "unknown"
    # one RE2 program for all its images (controller/policy/globset.py), compiled at its first match:
    # only the exceptions within their namespace's bounds are ever matched, so a flood costs no compile
    _matcher: list[GlobSet] = field(default_factory=list, repr=False, compare=False)

    @property
    def wildcards(self) -> int:
        """The wildcards of all its globs: what matching it costs grows with."""
        return sum(wildcards(glob) for glob in self.images)

    @property
    def label(self) -> str:
        """``ImagePolicyException namespace/name``."""
        return f"{EXCEPTION_KIND} {self.namespace}/{self.name}"

    def active(self, now: datetime) -> bool:
        """Whether it still applies at ``now`` (it stops at ``expires`` exactly)."""
        return now < self.expires

    def covers(self, normalized_image: str, labels: Mapping[str, str]) -> bool:
        """Whether a glob matches the (normalised) image and the selector, if any, the object's labels."""
        if self.selector is not None and not self.selector.matches(labels):
            return False
        if not self._matcher:
            try:
                self._matcher.append(compile_glob_set(self.images))
            except GlobSetError:
                self._matcher.append(GlobSet(()))  # too complex for RE2's budget: it matches nothing
        return self._matcher[0].matches_normalized(normalized_image)


def _fail(label: str, path: str, problem: str) -> PolicyError:
    return PolicyError(Reason.POLICY_INVALID, f"{label}: {path}: {problem}")


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _mapping(label: str, value: object, path: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise _fail(label, path, f"must be a mapping with string keys, not {_type_name(value)}")
    return value


def _string(label: str, value: object, path: str, maximum: int) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(label, path, f"must be a non-empty string, not {_type_name(value)}")
    if len(value) > maximum:
        raise _fail(label, path, f"is {len(value)} characters long; at most {maximum} are allowed")
    return value


def compile_exception(
    doc: Mapping[str, object],
    *,
    max_lifetime: timedelta = DEFAULT_MAX_LIFETIME,
    created: datetime | None = None,
) -> CompiledException:
    """Parse and compile one ImagePolicyException object, strictly.

    ``created`` is when it was created (default: ``metadata.creationTimestamp``, which the API server
    sets before validating admission); ``spec.expires`` must be after it and at most ``max_lifetime``
    later. Raises :class:`PolicyError` (``PolicyInvalid``) naming the object and the field.
    """
    label = EXCEPTION_KIND
    top = _mapping(label, doc, "(top level)")
    unknown = sorted(set(top) - _TOP_LEVEL_FIELDS)
    if unknown:
        raise _fail(label, "(top level)", f"unknown field(s) {', '.join(map(repr, unknown[:5]))}")
    if top.get("kind") != EXCEPTION_KIND:
        raise _fail(label, "kind", f"must be {EXCEPTION_KIND!r}, not {top.get('kind')!r:.80}")
    if top.get("apiVersion") != API_VERSION:
        raise _fail(label, "apiVersion", f"must be {API_VERSION!r}, not {top.get('apiVersion')!r:.80}")
    metadata = _mapping(label, top.get("metadata"), "metadata")
    name = _string(label, metadata.get("name"), "metadata.name", MAX_NAME_LENGTH)
    if not _NAME_RE.fullmatch(name):
        raise _fail(label, "metadata.name", f"{name!r:.80} is not a valid Kubernetes object name")
    namespace = _string(label, metadata.get("namespace"), "metadata.namespace", 63)
    if not _NAMESPACE_RE.fullmatch(namespace):
        raise _fail(label, "metadata.namespace", f"{namespace!r:.80} is not a valid namespace name")
    label = f"{EXCEPTION_KIND} {namespace}/{name}"

    spec = _mapping(label, top.get("spec"), "spec")
    unknown = sorted(set(spec) - _SPEC_FIELDS)
    if unknown:
        raise _fail(label, "spec", f"unknown field(s) {', '.join(map(repr, unknown[:5]))}")
    images = _compile_images(label, spec.get("images"))
    selector = None
    if spec.get("selector") is not None:
        try:
            selector = parse_scope(None, spec["selector"]).selector
        except ScopeError as e:
            path = e.path.replace("spec.namespaceSelector", "spec.selector", 1)
            raise _fail(label, path, e.problem) from e
    reason = _string(label, spec.get("reason"), "spec.reason", MAX_REASON_LENGTH)
    if _CONTROL.search(reason):
        raise _fail(label, "spec.reason", "must be one line of text (no control characters)")
    try:
        expires = parse_timestamp(spec.get("expires"))
    except TimestampError as e:
        raise _fail(label, "spec.expires", str(e)) from e
    if created is None and metadata.get("creationTimestamp") is not None:
        try:
            created = parse_timestamp(metadata["creationTimestamp"])
        except TimestampError as e:
            raise _fail(label, "metadata.creationTimestamp", str(e)) from e
    if created is not None:
        check_lifetime(label, created, expires, max_lifetime)
    return CompiledException(name, namespace, images, selector, expires, reason, creator_of(metadata))


def check_lifetime(label: str, created: datetime, expires: datetime, max_lifetime: timedelta) -> None:
    """``expires`` must be after ``created`` and at most ``max_lifetime`` later; raises PolicyError."""
    if expires <= created:
        raise _fail(label, "spec.expires", f"{format_timestamp(expires)} is not after its creation")
    if expires - created > max_lifetime:
        raise _fail(
            label,
            "spec.expires",
            f"{format_timestamp(expires)} is more than {_describe(max_lifetime)} after its creation "
            f"({format_timestamp(created)}); the cluster allows at most {_describe(max_lifetime)}",
        )


def _describe(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    if seconds % 86400 == 0:
        return f"{seconds // 86400} day(s)"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} hour(s)"
    return f"{seconds} second(s)"


def _compile_images(label: str, value: object) -> tuple[ImageGlob, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise _fail(label, "spec.images", f"must be a non-empty list, not {_type_name(value)}")
    if len(value) > MAX_EXCEPTION_IMAGES:
        raise _fail(
            label, "spec.images", f"has {len(value)} entries; at most {MAX_EXCEPTION_IMAGES} are allowed"
        )
    globs = []
    for i, entry in enumerate(value):
        path = f"spec.images[{i}]"
        item = _mapping(label, entry, path)
        if set(item) != {"glob"}:
            raise _fail(label, path, "must hold exactly one field, 'glob'")
        text = _string(label, item["glob"], f"{path}.glob", MAX_GLOB_LENGTH)
        try:
            globs.append(ImageGlob.compile(text))
        except GlobError as e:
            raise _fail(label, f"{path}.glob", str(e)) from e
    total = sum(wildcards(glob) for glob in globs)
    if total > MAX_WILDCARDS_PER_EXCEPTION:
        raise _fail(
            label,
            "spec.images",
            f"the globs hold {total} wildcards; at most {MAX_WILDCARDS_PER_EXCEPTION} are allowed in all",
        )
    return tuple(globs)


def creator_of(metadata: Mapping[str, object]) -> str:
    """Who created the object, as the decision log records it.

    ``<user>`` from the ``imprimatur.dev/created-by`` annotation (verified by the webhook against the
    authenticated user, see the module docstring), then ``(via <manager>)``, the field manager of the
    earliest ``managedFields`` entry: a client-chosen tool name, never trusted as an identity. Without
    the annotation the user is ``unverified``.
    """
    annotations = metadata.get("annotations")
    user = annotations.get(CREATED_BY_ANNOTATION) if isinstance(annotations, Mapping) else None
    who = user[:MAX_CREATOR_LENGTH] if isinstance(user, str) and user else "unverified"
    manager = _first_manager(metadata.get("managedFields"))
    return f"{who} (via {manager})" if manager else who


def _first_manager(value: object) -> str | None:
    if not isinstance(value, list):
        return None
    entries = [
        e
        for e in value[:MAX_MANAGED_FIELDS]
        if isinstance(e, Mapping) and isinstance(e.get("manager"), str) and e.get("manager")
    ]
    if not entries:
        return None
    first = min(entries, key=lambda e: str(e.get("time") or ""))
    return str(first["manager"])[:MAX_CREATOR_LENGTH]


class ExceptionSet:
    """The valid exceptions, by namespace; immutable. Invalid ones are never put here."""

    def __init__(self, exceptions: Iterable[CompiledException] = ()) -> None:
        by_namespace: dict[str, list[CompiledException]] = {}
        for exception in exceptions:
            by_namespace.setdefault(exception.namespace, []).append(exception)
        # the one expiring last first: the warning names the exception that holds longest
        self._by_namespace = {
            ns: _within_bounds(sorted(items, key=lambda e: (-e.expires.timestamp(), e.name)))
            for ns, items in by_namespace.items()
        }
        kept = {id(e) for items in self._by_namespace.values() for e in items}
        self.ignored = frozenset(
            (e.namespace, e.name) for items in by_namespace.values() for e in items if id(e) not in kept
        )
        """``(namespace, name)`` of the valid exceptions beyond their namespace's bounds: never considered."""

    def __len__(self) -> int:
        return sum(len(items) for items in self._by_namespace.values())

    def in_namespace(self, namespace: str | None) -> tuple[CompiledException, ...]:
        """The exceptions of ``namespace`` (none outside any namespace)."""
        return self._by_namespace.get(namespace, ()) if namespace is not None else ()

    def grant(
        self, image: str, namespace: str | None, labels: Mapping[str, str], now: datetime
    ) -> CompiledException | None:
        """The active exception of ``namespace`` that covers ``image`` for an object labelled ``labels``."""
        candidates = self.in_namespace(namespace)
        if not candidates:
            return None
        try:
            normalized = normalize_image_name(image)
        except InputError:
            return None  # a malformed reference stays denied
        for exception in candidates:
            if exception.active(now) and exception.covers(normalized, labels):
                return exception
        return None


def _within_bounds(ordered: Sequence[CompiledException]) -> tuple[CompiledException, ...]:
    """The first exceptions within :data:`MAX_EXCEPTIONS_PER_NAMESPACE` and
    :data:`MAX_WILDCARDS_PER_NAMESPACE`; one that would pass the wildcard budget is skipped."""
    kept: list[CompiledException] = []
    budget = MAX_WILDCARDS_PER_NAMESPACE
    for exception in ordered:
        if len(kept) == MAX_EXCEPTIONS_PER_NAMESPACE:
            break
        cost = exception.wildcards
        if cost <= budget:
            kept.append(exception)
            budget -= cost
    return tuple(kept)


EMPTY_EXCEPTIONS: Final = ExceptionSet()


def forbids_exceptions(matching: Matching) -> bool:
    """Whether a governing ClusterImagePolicy forbids exceptions (or, not compiling, might)."""
    return any(not isinstance(p, CompiledPolicy) or p.exceptions_forbidden for p in matching.cluster)


def forbidden_in(
    policies: PolicySet, namespace: str | None, namespace_labels: Mapping[str, str]
) -> Callable[[str], bool]:
    """``forbidden(image)`` for :func:`apply_exceptions`: a malformed reference is forbidden too."""

    def forbidden(image: str) -> bool:
        try:
            return forbids_exceptions(policies.scope_for(image, namespace, namespace_labels))
        except InputError:
            return True

    return forbidden


def grant_warning(exception: CompiledException, image: str) -> str:
    """``ImagePolicyException team-a/incident-42 admits <image> until <expires>: <reason>``."""
    return f"{exception.label} admits {image} until {format_timestamp(exception.expires)}: {exception.reason}"


def apply_exceptions(
    verdicts: Sequence[ImageVerdict],
    exceptions: ExceptionSet,
    *,
    namespace: str | None,
    labels: Mapping[str, str],
    now: datetime,
    forbidden: Callable[[str], bool],
) -> tuple[ImageVerdict, ...]:
    """Every denied verdict that an active exception covers becomes allowed, ``ExceptionGranted``.

    ``forbidden(image)`` says whether a governing ClusterImagePolicy forbids exceptions for it (then
    the denial stands). Allowed verdicts are returned unchanged.
    """
    out = []
    for verdict in verdicts:
        exception = None if verdict.allowed else exceptions.grant(verdict.image, namespace, labels, now)
        if exception is None or forbidden(verdict.image):
            out.append(verdict)
            continue
        until = format_timestamp(exception.expires)
        grant = ExceptionGrant(
            exception.namespace,
            exception.name,
            exception.expires,
            exception.reason,
            exception.creator,
            verdict.reason,
        )
        out.append(
            replace(
                verdict,
                allowed=True,
                reason=Reason.EXCEPTION_GRANTED,
                detail=f"admitted by {exception.label} until {until}; denied otherwise: {verdict.message()}"[
                    :2048
                ],
                warnings=(*verdict.warnings, grant_warning(exception, verdict.image)),
                transient=False,
                exception=grant,
            )
        )
    return tuple(out)
