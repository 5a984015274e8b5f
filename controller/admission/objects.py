"""The controller's own objects (ClusterImagePolicy, ImagePolicy, TrustRoot), compiled into entries.

The same compilers serve the operator (indexes) and the ``validate-policies`` webhook, so what
``kubectl apply`` refuses is exactly what the controller could not load. The ``status`` each entry
implies is :mod:`controller.admission.status`.

An object that does not compile is not dropped: its entry keeps the error, the error becomes the
object's ``Ready=False`` condition, and it is counted as invalid. An invalid policy stays in the
policy set as an :class:`InvalidPolicy`, which denies the images it covers with ``PolicyInvalid``
(it never allows anything, and its images never fall through to other policies or the default); an
invalid trust root is absent from the engine's roots, so every policy naming it fails
closed with ``TrustRootUnknown``.

A TrustRoot's ``configMapRef``/``secretRef`` may only name the controller's own namespace (see
:mod:`controller.admission.namespaces`); the entry remembers the reference and the digest of the data,
so :func:`refresh_trust_root_entry` can pick up edits of the ConfigMap or Secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from controller.admission.kube import CoreResource, KubeReader
from controller.errors import ImprimaturError, PolicyError, Reason
from controller.policy import CompiledPolicy, InvalidPolicy, compile_policy_lenient
from controller.policy.keys import SecretResolver, no_secrets
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
    # What the engine enforces in place of a policy that did not compile: it denies the images its
    # globs cover (every image when even those are unusable) with ``PolicyInvalid``.
    invalid: InvalidPolicy | None = None

    @property
    def enforced(self) -> CompiledPolicy | InvalidPolicy | None:
        """What goes into the policy set: the compiled policy, or its invalid stand-in."""
        return self.policy if self.policy is not None else self.invalid

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
    ref: TrustRootRef | None = None  # the ConfigMap or Secret key it was read from, if any
    data_digest: str = ""  # sha256 of the data it was loaded from
    ref_missing: bool = False  # invalid only because the referenced object does not exist (yet)

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


def compile_policy_entry(body: Mapping[str, object], resolver: SecretResolver = no_secrets) -> PolicyEntry:
    """Compile a ClusterImagePolicy or ImagePolicy object; an invalid one keeps its error and its
    :class:`InvalidPolicy`, which the policy set enforces as a denial. ``resolver`` reads the Secrets
    its key identities name (:mod:`controller.admission.policy_keys`)."""
    key = object_key(body)
    generation = generation_of(body)
    compiled = compile_policy_lenient(body, resolver)
    if isinstance(compiled, InvalidPolicy):
        return PolicyEntry(key, generation, None, Reason.POLICY_INVALID, compiled.detail, invalid=compiled)
    return PolicyEntry(key, generation, compiled)


@dataclass(frozen=True, slots=True)
class TrustRootRef:
    """Where a TrustRoot's data lives when it is not inline: a key of a ConfigMap or a Secret."""

    resource: CoreResource
    namespace: str
    name: str
    key: str

    def __str__(self) -> str:
        what = "ConfigMap" if self.resource == "configmaps" else "Secret"
        return f"{what} {self.namespace}/{self.name}[{self.key}]"


class _RefMissingError(PolicyError):
    """The referenced ConfigMap or Secret does not exist (yet)."""


def _ref(spec: Mapping[str, object], field: str, namespace: str | None) -> TrustRootRef:
    ref = spec.get(field)
    if not isinstance(ref, Mapping):
        raise _invalid_root(f"spec.{field} must be an object")
    values = []
    for part in ("namespace", "name", "key"):
        value = ref.get(part)
        if not isinstance(value, str) or not value or len(value) > 253:
            raise _invalid_root(f"spec.{field}.{part} must be a non-empty string")
        values.append(value)
    if namespace is None:
        raise _invalid_root(
            f"spec.{field}.namespace: the controller's own namespace is unknown (set IMPRIMATUR_NAMESPACE), "
            "so no reference is followed"
        )
    if values[0] != namespace:
        raise _invalid_root(
            f"spec.{field}.namespace: {values[0][:63]!r} is not allowed: a TrustRoot may only reference "
            f"the controller's namespace {namespace!r}"
        )
    resource: CoreResource = "configmaps" if field == "configMapRef" else "secrets"
    return TrustRootRef(resource, values[0], values[1], values[2])


async def read_ref(reader: KubeReader | None, ref: TrustRootRef) -> bytes:
    """The bytes under ``ref.key``; raises :class:`PolicyError` (``TrustRootInvalid``)."""
    resource, what, key = ref.resource, str(ref).split("[", 1)[0], ref.key
    if reader is None:
        raise _invalid_root(f"{what}: no Kubernetes API to read it from")
    try:
        obj = await reader.read(ref.resource, ref.namespace, ref.name)
    except ImprimaturError as e:
        raise _invalid_root(f"{what}: {e.detail}") from e
    if obj is None:
        raise _RefMissingError(Reason.TRUST_ROOT_INVALID, f"{what} does not exist")
    data = obj.get("data")
    value = data.get(key) if isinstance(data, Mapping) else None
    if resource == "configmaps" and value is None:
        binary = obj.get("binaryData")
        encoded = binary.get(key) if isinstance(binary, Mapping) else None
        if isinstance(encoded, str):
            resource, value = "secrets", encoded  # binaryData is base64, as Secret data is
    if not isinstance(value, str):
        raise _invalid_root(f"{what} has no key {key!r}")
    if resource == "configmaps":
        return value.encode("utf-8")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise _invalid_root(f"{what} key {key!r} is not base64") from e


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


def _trust_root_ref(key: ObjectKey, body: Mapping[str, object], namespace: str | None) -> TrustRootRef | str:
    """The reference a TrustRoot's spec names, or its inline data; raises ``TrustRootInvalid``."""
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
        return inline
    return _ref(spec, sources[0], namespace)


def _load_root(name: str, data: bytes) -> TrustRoot:
    if len(data) > MAX_TRUST_ROOT_BYTES:
        raise _invalid_root(f"larger than {MAX_TRUST_ROOT_BYTES} bytes")
    return TrustRoot.from_json(data, name)


def _invalid_entry(
    key: ObjectKey,
    generation: int | None,
    source: str,
    ref: TrustRootRef | None,
    error: Exception,
    *,
    data_digest: str = "",
) -> TrustRootEntry:
    if isinstance(error, ImprimaturError):
        detail = (
            error.detail if error.reason == Reason.TRUST_ROOT_INVALID else f"{error.reason}: {error.detail}"
        )
    else:  # a parser bug must still leave a visible, invalid entry
        detail = f"{type(error).__name__}: {error}"[:1024]
    return TrustRootEntry(
        key,
        generation,
        None,
        source,
        Reason.TRUST_ROOT_INVALID,
        detail,
        ref=ref,
        data_digest=data_digest,
        ref_missing=isinstance(error, _RefMissingError),
    )


async def compile_trust_root_entry(
    body: Mapping[str, object], reader: KubeReader | None, namespace: str | None = None
) -> TrustRootEntry:
    """Load a TrustRoot object: exactly one of ``inline``, ``configMapRef``, ``secretRef``.

    References are followed only into ``namespace`` (the controller's; None: none is followed). The
    built-in names (``public-good``, ``staging``) cannot be redefined. An invalid one keeps its error.
    """
    key = object_key(body)
    generation = generation_of(body)
    source = _describe_source(body)
    ref: TrustRootRef | None = None
    data = b""
    try:
        found = _trust_root_ref(key, body, namespace)
        if isinstance(found, str):
            data = found.encode("utf-8")
        else:
            ref = found
            data = await read_ref(reader, ref)
        root = _load_root(key.name, data)
    except Exception as e:  # noqa: BLE001 - every failure becomes the entry's visible error
        return _invalid_entry(key, generation, source, ref, e, data_digest=_digest(data) if data else "")
    return TrustRootEntry(key, generation, root, source, ref=ref, data_digest=_digest(data))


async def refresh_trust_root_entry(entry: TrustRootEntry, reader: KubeReader | None) -> TrustRootEntry:
    """Re-read a referenced TrustRoot's data: ``entry`` itself when unchanged, else a new entry."""
    if entry.ref is None:
        return entry
    try:
        data = await read_ref(reader, entry.ref)
    except PolicyError as e:
        fresh = _invalid_entry(entry.key, entry.generation, entry.source, entry.ref, e)
        same = (fresh.detail, fresh.ref_missing) == (entry.detail, entry.ref_missing)
        return entry if not entry.ready and same else fresh
    digest = _digest(data)
    if digest == entry.data_digest:
        return entry
    try:
        root = _load_root(entry.key.name, data)
    except Exception as e:  # noqa: BLE001 - as in compile_trust_root_entry
        return _invalid_entry(entry.key, entry.generation, entry.source, entry.ref, e, data_digest=digest)
    return TrustRootEntry(entry.key, entry.generation, root, entry.source, ref=entry.ref, data_digest=digest)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
