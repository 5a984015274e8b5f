"""The controller's own objects (ClusterImagePolicy, ImagePolicy, TrustRoot): compiled into entries,
and the ``status`` each should carry.

An object that does not compile is not dropped: its entry keeps the error, the error becomes the
object's ``Ready=False`` condition, and it is counted as invalid. An invalid policy never allows
anything (it is simply not in the policy set); an invalid trust root is absent from the engine's
roots, so every policy naming it fails closed with ``TrustRootUnknown``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from controller.admission.kube import CoreResource, KubeReader
from controller.errors import ImprimaturError, PolicyError, Reason
from controller.policy import CompiledPolicy, compile_policy
from controller.verify import TrustRoot

GROUP: Final = "imprimatur.dev"
VERSION: Final = "v1alpha1"
POLICY_KINDS: Final = ("ClusterImagePolicy", "ImagePolicy")
TRUST_ROOT_KIND: Final = "TrustRoot"
BUILTIN_TRUST_ROOT_NAMES: Final = frozenset({"public-good", "staging"})

MAX_TRUST_ROOT_BYTES: Final = 1024 * 1024
MAX_CONDITION_MESSAGE: Final = 32 * 1024  # the CRD's maxLength
READY_REASON: Final = "Compiled"
TRUST_ROOT_READY_REASON: Final = "Loaded"


@dataclass(frozen=True, slots=True)
class ObjectKey:
    """Which object an entry is about: kind, namespace (ImagePolicy only) and name."""

    kind: str
    namespace: str | None
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"


@dataclass(frozen=True, slots=True)
class PolicyEntry:
    """A policy object as loaded: compiled, or the error that kept it from compiling."""

    key: ObjectKey
    generation: int | None
    policy: CompiledPolicy | None
    reason: Reason | None = None
    detail: str = ""

    @property
    def ready(self) -> bool:
        return self.policy is not None


@dataclass(frozen=True, slots=True)
class TrustRootEntry:
    """A TrustRoot object as loaded: parsed, or the error that kept it from loading."""

    key: ObjectKey
    generation: int | None
    root: TrustRoot | None
    source: str
    reason: Reason | None = None
    detail: str = ""

    @property
    def ready(self) -> bool:
        return self.root is not None


def _metadata(body: Mapping[str, object]) -> Mapping[str, object]:
    meta = body.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def object_key(body: Mapping[str, object]) -> ObjectKey:
    """The key of a Kubernetes object body (kind, namespace, name; empty strings when missing)."""
    meta = _metadata(body)
    kind, namespace, name = body.get("kind"), meta.get("namespace"), meta.get("name")
    return ObjectKey(
        kind if isinstance(kind, str) else "",
        namespace if isinstance(namespace, str) and namespace else None,
        name if isinstance(name, str) else "",
    )


def generation_of(body: Mapping[str, object]) -> int | None:
    generation = _metadata(body).get("generation")
    return generation if isinstance(generation, int) and not isinstance(generation, bool) else None


def compile_policy_entry(body: Mapping[str, object]) -> PolicyEntry:
    """Compile a ClusterImagePolicy or ImagePolicy object; an invalid one keeps its error."""
    key = object_key(body)
    generation = generation_of(body)
    try:
        policy = compile_policy(body)
    except ImprimaturError as e:
        return PolicyEntry(key, generation, None, e.reason, e.detail)
    except Exception as e:  # noqa: BLE001 - a compiler bug must still leave a visible, invalid entry
        return PolicyEntry(key, generation, None, Reason.POLICY_INVALID, f"{type(e).__name__}: {e}"[:1024])
    return PolicyEntry(key, generation, policy)


def _ref(spec: Mapping[str, object], field: str) -> tuple[str, str, str]:
    ref = spec.get(field)
    if not isinstance(ref, Mapping):
        raise PolicyError(Reason.TRUST_ROOT_INVALID, f"spec.{field} must be an object")
    values = []
    for part in ("namespace", "name", "key"):
        value = ref.get(part)
        if not isinstance(value, str) or not value or len(value) > 253:
            raise PolicyError(Reason.TRUST_ROOT_INVALID, f"spec.{field}.{part} must be a non-empty string")
        values.append(value)
    return values[0], values[1], values[2]


async def _read_ref(
    reader: KubeReader | None, resource: CoreResource, namespace: str, name: str, key: str
) -> bytes:
    what = f"{'ConfigMap' if resource == 'configmaps' else 'Secret'} {namespace}/{name}"
    if reader is None:
        raise PolicyError(Reason.TRUST_ROOT_INVALID, f"{what}: no Kubernetes API to read it from")
    try:
        obj = await reader.read(resource, namespace, name)
    except ImprimaturError as e:
        raise PolicyError(Reason.TRUST_ROOT_INVALID, f"{what}: {e.detail}") from e
    if obj is None:
        raise PolicyError(Reason.TRUST_ROOT_INVALID, f"{what} does not exist")
    data = obj.get("data")
    value = data.get(key) if isinstance(data, Mapping) else None
    if resource == "configmaps" and value is None:
        binary = obj.get("binaryData")
        encoded = binary.get(key) if isinstance(binary, Mapping) else None
        if isinstance(encoded, str):
            resource, value = "secrets", encoded  # binaryData is base64, as Secret data is
    if not isinstance(value, str):
        raise PolicyError(Reason.TRUST_ROOT_INVALID, f"{what} has no key {key!r}")
    if resource == "configmaps":
        return value.encode("utf-8")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise PolicyError(Reason.TRUST_ROOT_INVALID, f"{what} key {key!r} is not base64") from e


_SOURCES: Final = ("inline", "configMapRef", "secretRef")


def _invalid_root(detail: str) -> PolicyError:
    return PolicyError(Reason.TRUST_ROOT_INVALID, detail)


def _describe_source(body: Mapping[str, object]) -> str:
    """Where a TrustRoot says its data is (for ``status.source``), without reading it."""
    spec = body.get("spec")
    if not isinstance(spec, Mapping):
        return "-"
    if isinstance(spec.get("inline"), str):
        return "inline"
    for field, what in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
        ref = spec.get(field)
        if isinstance(ref, Mapping):
            return f"{what} {ref.get('namespace')}/{ref.get('name')}[{ref.get('key')}]"[:512]
    return "-"


async def _trust_root_data(key: ObjectKey, body: Mapping[str, object], reader: KubeReader | None) -> bytes:
    if key.name in BUILTIN_TRUST_ROOT_NAMES:
        raise _invalid_root(f"the name {key.name!r} is reserved for a built-in root")
    if not key.name:
        raise _invalid_root("metadata.name is missing")
    spec = body.get("spec")
    if not isinstance(spec, Mapping):
        raise _invalid_root("spec must be an object")
    unknown = sorted(set(spec) - set(_SOURCES))
    if unknown:
        raise _invalid_root(f"unknown spec fields: {', '.join(unknown)[:200]}")
    sources = [f for f in _SOURCES if spec.get(f) is not None]
    if len(sources) != 1:
        raise _invalid_root("spec must set exactly one of inline, configMapRef, secretRef")
    if sources[0] == "inline":
        inline = spec["inline"]
        if not isinstance(inline, str):
            raise _invalid_root("spec.inline must be a string")
        data = inline.encode("utf-8")
    else:
        resource: CoreResource = "configmaps" if sources[0] == "configMapRef" else "secrets"
        namespace, name, data_key = _ref(spec, sources[0])
        data = await _read_ref(reader, resource, namespace, name, data_key)
    if len(data) > MAX_TRUST_ROOT_BYTES:
        raise _invalid_root(f"larger than {MAX_TRUST_ROOT_BYTES} bytes")
    return data


async def compile_trust_root_entry(body: Mapping[str, object], reader: KubeReader | None) -> TrustRootEntry:
    """Load a TrustRoot object: exactly one of ``inline``, ``configMapRef``, ``secretRef``.

    The built-in names (``public-good``, ``staging``) cannot be redefined. An invalid one keeps its error.
    """
    key = object_key(body)
    generation = generation_of(body)
    source = _describe_source(body)
    try:
        root = TrustRoot.from_json(await _trust_root_data(key, body, reader), key.name)
    except ImprimaturError as e:
        detail = e.detail if e.reason == Reason.TRUST_ROOT_INVALID else f"{e.reason}: {e.detail}"
        return TrustRootEntry(key, generation, None, source, Reason.TRUST_ROOT_INVALID, detail)
    except Exception as e:  # noqa: BLE001 - a parser bug must still leave a visible, invalid entry
        detail = f"{type(e).__name__}: {e}"[:1024]
        return TrustRootEntry(key, generation, None, source, Reason.TRUST_ROOT_INVALID, detail)
    return TrustRootEntry(key, generation, root, source)


# --- status


def _condition(
    ready: bool,
    *,
    reason: str,
    message: str,
    generation: int | None,
    previous: Mapping[str, object] | None,
    now: datetime,
) -> dict[str, object]:
    status = "True" if ready else "False"
    since = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    if (
        previous is not None
        and previous.get("status") == status
        and isinstance(previous.get("lastTransitionTime"), str)
    ):
        since = str(previous["lastTransitionTime"])
    condition: dict[str, object] = {
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": message[:MAX_CONDITION_MESSAGE],
        "lastTransitionTime": since,
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition


def _previous_ready(body: Mapping[str, object]) -> Mapping[str, object] | None:
    status = body.get("status")
    conditions = status.get("conditions") if isinstance(status, Mapping) else None
    if not isinstance(conditions, list):
        return None
    for condition in conditions:
        if isinstance(condition, Mapping) and condition.get("type") == "Ready":
            return condition
    return None


def desired_status(
    body: Mapping[str, object], entry: PolicyEntry | TrustRootEntry, now: datetime | None = None
) -> dict[str, object]:
    """The ``status`` an object should carry: ``conditions`` (Ready) and ``observedGeneration``.

    ``lastTransitionTime`` is kept from the current Ready condition unless its status flips.
    """
    when = now or datetime.now(UTC)
    if entry.ready:
        ready_reason = TRUST_ROOT_READY_REASON if isinstance(entry, TrustRootEntry) else READY_REASON
        message = f"{ready_reason}: {entry.key}"
        condition = _condition(
            True,
            reason=ready_reason,
            message=message,
            generation=entry.generation,
            previous=_previous_ready(body),
            now=when,
        )
    else:
        reason = str(entry.reason or Reason.INTERNAL_ERROR)
        condition = _condition(
            False,
            reason=reason,
            message=f"{reason}: {entry.detail}",
            generation=entry.generation,
            previous=_previous_ready(body),
            now=when,
        )
    status: dict[str, object] = {"conditions": [condition]}
    if entry.generation is not None:
        status["observedGeneration"] = entry.generation
    if isinstance(entry, TrustRootEntry):
        status["source"] = entry.source[:512]
    return status


def status_differs(body: Mapping[str, object], desired: Mapping[str, object]) -> bool:
    """Whether ``body.status`` lacks or differs from any field of ``desired`` (so a patch is needed)."""
    current = body.get("status")
    if not isinstance(current, Mapping):
        return True
    return any(current.get(k) != v for k, v in desired.items())
