"""AdmissionReview v1: parsing a request strictly, and building the response kube-apiserver expects.

https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#request

A review that cannot be read is never an allow. When its ``uid`` can be read, it is answered as an
AdmissionReview denial (``ReviewInvalid``, code 400) so the user sees why; when it cannot, the webhook
answers HTTP 400 and kube-apiserver applies the webhook's ``failurePolicy`` (``Fail``: deny).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from controller.errors import InputError, Reason

API_VERSIONS: Final = frozenset({"admission.k8s.io/v1", "admission.k8s.io/v1beta1"})

MAX_REVIEW_BYTES: Final = 4 * 1024 * 1024
"""An object and its old version (etcd caps each at 1.5 MiB) plus the envelope."""

MAX_UID_LENGTH: Final = 128
MAX_NAME_LENGTH: Final = 253
MAX_WARNINGS: Final = 32
MAX_WARNING_CHARS: Final = 256  # kube-apiserver truncates longer warnings anyway
MAX_MESSAGE_CHARS: Final = 32 * 1024
MAX_MESSAGE_LINE_CHARS: Final = 2048

Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
_OPERATIONS: Final[Mapping[str, Operation]] = {
    "CREATE": "CREATE",
    "UPDATE": "UPDATE",
    "DELETE": "DELETE",
    "CONNECT": "CONNECT",
}
# metav1.StatusReason for the codes a denial carries.
_STATUS_REASONS: Final[Mapping[int, str]] = {
    400: "BadRequest",
    403: "Forbidden",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


@dataclass(frozen=True, slots=True)
class GroupVersionResource:
    """``request.resource``: which API resource the object is, e.g. ``apps/v1 deployments``."""

    group: str
    version: str
    resource: str

    def __str__(self) -> str:
        return (
            f"{self.group}/{self.version}/{self.resource}"
            if self.group
            else f"{self.version}/{self.resource}"
        )


@dataclass(frozen=True, slots=True)
class AdmissionRequest:
    """The parts of ``AdmissionReview.request`` the controller uses, checked for type."""

    api_version: str
    uid: str
    kind: str  # request.kind.kind, e.g. "Pod"
    resource: GroupVersionResource
    sub_resource: str | None
    operation: Operation
    namespace: str | None
    name: str | None
    new_object: Mapping[str, object] | None
    old_object: Mapping[str, object] | None
    dry_run: bool
    username: str | None


def _invalid(detail: str) -> InputError:
    return InputError(Reason.REVIEW_INVALID, detail)


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _required_str(
    container: Mapping[str, object], key: str, where: str, *, maximum: int = MAX_NAME_LENGTH
) -> str:
    value = container.get(key)
    if not isinstance(value, str):
        raise _invalid(f"{where}.{key} must be a string, not {_type_name(value)}")
    if len(value) > maximum:
        raise _invalid(f"{where}.{key} is longer than {maximum} characters")
    return value


def _optional_str(container: Mapping[str, object], key: str, where: str) -> str | None:
    value = container.get(key)
    if value is None or value == "":
        return None
    return _required_str(container, key, where)


def _optional_object(container: Mapping[str, object], key: str, where: str) -> Mapping[str, object] | None:
    value = container.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _invalid(f"{where}.{key} must be an object, not {_type_name(value)}")
    return value


def _gvr(container: Mapping[str, object], key: str) -> GroupVersionResource:
    value = container.get(key)
    if not isinstance(value, dict):
        raise _invalid(f"request.{key} must be an object, not {_type_name(value)}")
    where = f"request.{key}"
    return GroupVersionResource(
        group=_required_str(value, "group", where),
        version=_required_str(value, "version", where),
        resource=_required_str(value, "resource", where),
    )


def _typed(obj: Mapping[str, object] | None, kind: Mapping[str, object]) -> Mapping[str, object] | None:
    """The object, typed from ``request.kind`` when it carries no ``apiVersion``/``kind`` of its own
    (API servers before 1.15 sent objects so). A kind the object does state is never overridden."""
    if obj is None or (isinstance(obj.get("apiVersion"), str) and isinstance(obj.get("kind"), str)):
        return obj
    group, version, name = kind.get("group"), kind.get("version"), kind.get("kind")
    if not all(isinstance(part, str) for part in (group, version, name)) or not version or not name:
        return obj
    typed = dict(obj)
    typed.setdefault("apiVersion", f"{group}/{version}" if group else version)
    typed.setdefault("kind", name)
    return typed


def review_uid(data: object) -> str | None:
    """The request's ``uid`` if it can be read at all, so even a malformed review gets an answer."""
    if not isinstance(data, dict):
        return None
    request = data.get("request")
    if not isinstance(request, dict):
        return None
    uid = request.get("uid")
    if isinstance(uid, str) and 0 < len(uid) <= MAX_UID_LENGTH:
        return uid
    return None


def review_api_version(data: object) -> str:
    """The review's ``apiVersion`` when it is one we speak, else v1 (for answering malformed reviews)."""
    if isinstance(data, dict):
        version = data.get("apiVersion")
        if isinstance(version, str) and version in API_VERSIONS:
            return version
    return "admission.k8s.io/v1"


def parse_review(data: object) -> AdmissionRequest:
    """Check an AdmissionReview's shape and read its request.

    Raises :class:`InputError` (``ReviewInvalid``) for anything kube-apiserver would not send: not an
    object, another apiVersion or kind, no request, no uid, no userInfo, a resource or operation of
    the wrong type, an object that is not a JSON object, or no object at all for CREATE/UPDATE.
    """
    if not isinstance(data, dict):
        raise _invalid(f"the review must be a JSON object, not {_type_name(data)}")
    api_version = data.get("apiVersion")
    if not isinstance(api_version, str) or api_version not in API_VERSIONS:
        raise _invalid(f"apiVersion must be admission.k8s.io/v1, not {str(api_version)[:80]!r}")
    if data.get("kind") != "AdmissionReview":
        raise _invalid(f"kind must be AdmissionReview, not {str(data.get('kind'))[:80]!r}")
    request = data.get("request")
    if not isinstance(request, dict):
        raise _invalid(f"request must be an object, not {_type_name(request)}")

    uid = _required_str(request, "uid", "request", maximum=MAX_UID_LENGTH)
    if not uid:
        raise _invalid("request.uid must not be empty")
    kind = request.get("kind")
    if not isinstance(kind, dict):
        raise _invalid(f"request.kind must be an object, not {_type_name(kind)}")
    kind_name = _required_str(kind, "kind", "request.kind")
    resource = _gvr(request, "resource")
    raw_operation = request.get("operation")
    operation = _OPERATIONS.get(raw_operation) if isinstance(raw_operation, str) else None
    if operation is None:
        raise _invalid(
            f"request.operation must be one of {sorted(_OPERATIONS)}, not {str(raw_operation)[:40]!r}"
        )
    user_info = request.get("userInfo")
    if not isinstance(user_info, dict):
        raise _invalid(f"request.userInfo must be an object, not {_type_name(user_info)}")
    dry_run = request.get("dryRun", False)
    if dry_run is None:
        dry_run = False
    if not isinstance(dry_run, bool):
        raise _invalid(f"request.dryRun must be a boolean, not {_type_name(dry_run)}")

    obj = _typed(_optional_object(request, "object", "request"), kind)
    old = _typed(_optional_object(request, "oldObject", "request"), kind)
    if operation in ("CREATE", "UPDATE") and obj is None:
        raise _invalid(f"request.object is missing for {operation}")
    if operation == "UPDATE" and old is None:
        raise _invalid("request.oldObject is missing for UPDATE")

    return AdmissionRequest(
        api_version=api_version,
        uid=uid,
        kind=kind_name,
        resource=resource,
        sub_resource=_optional_str(request, "subResource", "request"),
        operation=operation,
        namespace=_optional_str(request, "namespace", "request"),
        name=_optional_str(request, "name", "request"),
        new_object=obj,
        old_object=old,
        dry_run=dry_run,
        username=_optional_str(user_info, "username", "request.userInfo"),
    )


def bound_warnings(warnings: Sequence[str]) -> list[str]:
    """At most :data:`MAX_WARNINGS` unique warnings of at most :data:`MAX_WARNING_CHARS` each."""
    out: list[str] = []
    for warning in dict.fromkeys(warnings):
        if len(out) == MAX_WARNINGS:
            out.append(f"{len(set(warnings)) - MAX_WARNINGS} more warnings not shown")
            break
        text = " ".join(warning.split())  # warnings are one line of printable text
        out.append(text if len(text) <= MAX_WARNING_CHARS else text[: MAX_WARNING_CHARS - 3] + "...")
    return out


def bound_message(lines: Sequence[str]) -> str:
    """Join denial lines (``Reason: image: detail``), each and all bounded, saying how many were cut."""
    out: list[str] = []
    size = 0
    for i, line in enumerate(lines):
        text = line if len(line) <= MAX_MESSAGE_LINE_CHARS else line[: MAX_MESSAGE_LINE_CHARS - 3] + "..."
        if size + len(text) + 1 > MAX_MESSAGE_CHARS:
            out.append(f"({len(lines) - i} more failing images not shown)")
            break
        out.append(text)
        size += len(text) + 1
    return "\n".join(out)


def review_response(
    *,
    api_version: str,
    uid: str,
    allowed: bool,
    message: str | None = None,
    code: int | None = None,
    warnings: Sequence[str] = (),
) -> dict[str, object]:
    """An AdmissionReview response echoing ``uid``; a denial carries ``status.code`` and ``.message``."""
    response: dict[str, object] = {"uid": uid, "allowed": allowed}
    if not allowed:
        status_code = code or 403
        response["status"] = {
            "code": status_code,
            "message": message or "denied",
            "reason": _STATUS_REASONS.get(status_code, "Forbidden"),
        }
    bounded = bound_warnings(warnings)
    if bounded:
        response["warnings"] = bounded
    return {"apiVersion": api_version, "kind": "AdmissionReview", "response": response}
