"""The policy CRD (``imprimatur.dev/v1alpha1``): strict, typed wire models and their parser.

This is the *written* form of a policy, as it arrives from a YAML file or a Kubernetes object. It is
checked for shape only: every field known, every type right, every required field present, every
"exactly one of" respected. Regular expressions and globs are compiled later, by
:mod:`controller.policy.compiled`, which keeps the compiled form apart from this one.

Every problem is a :class:`PolicyError` with reason ``PolicyInvalid`` whose detail names the policy and
the field (``ClusterImagePolicy acme: spec.identities[1]: ...``). A policy that cannot be parsed is
never an allow.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Final, Literal

from controller.config import PinningSetting  # issue 9: digest pinning
from controller.errors import PolicyError, Reason
from controller.model import FULCIO_CLAIM_NAMES
from controller.policy.deadline import TimestampError, parse_timestamp  # issue 8
from controller.policy.evidence_spec import (
    AttestationSpec,
    KeyIdentitySpec,
    is_key_identity,
    parse_attestations,
    parse_key_identity,
)
from controller.policy.scope import UNSCOPED, NamespaceScope, ScopeError, parse_scope

API_VERSION: Final = "imprimatur.dev/v1alpha1"

PolicyKind = Literal["ClusterImagePolicy", "ImagePolicy"]
Mode = Literal["enforce", "warn"]
TlogMode = Literal["required", "optional"]
ExceptionsSetting = Literal["allowed", "forbidden"]  # issue 8: may an ImagePolicyException apply?

POLICY_KINDS: Final[tuple[PolicyKind, ...]] = ("ClusterImagePolicy", "ImagePolicy")
DEFAULT_TRUST_ROOT: Final = "public-good"

# Fulcio certificate extensions, by the camelCase name the verifier gives them in
# VerifiedSignature.claims (one list, in controller.model, shared with verify/).
KNOWN_CLAIMS: Final = frozenset(FULCIO_CLAIM_NAMES)

# --- bounds on what one policy may hold
MAX_IMAGES: Final = 256
MAX_IDENTITIES: Final = 256
MAX_ANNOTATIONS: Final = 64
MAX_NAME_LENGTH: Final = 253  # a Kubernetes object name (DNS subdomain)
MAX_STRING_LENGTH: Final = 1024  # issuer, subject, claim and annotation values
MAX_REGEXP_LENGTH: Final = 1024
MAX_GLOB_LENGTH: Final = 512
MAX_REPOSITORY_LENGTH: Final = 255

_TOP_LEVEL_FIELDS: Final = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})
_SPEC_FIELDS: Final = frozenset(
    {
        "images",
        "identities",
        "annotations",
        "tlog",
        "mode",
        "trustRoot",
        "signatureRepository",
        "namespaces",
        "namespaceSelector",
    }
)
# --- issue 7: signatures vs attestations (controller/policy/evidence_spec.py)
_EVIDENCE_SPEC_FIELDS: Final = frozenset({"attestations"})
# --- issue 8: warn with a deadline, and exceptions (controller/policy/deadline.py, exceptions.py)
_DEADLINE_SPEC_FIELDS: Final = frozenset({"enforceAfter", "exceptions"})
# --- issue 9: digest pinning (controller/admission/pinning.py decides with it)
_PINNING_SPEC_FIELDS: Final = frozenset({"pinning"})
_SCOPE_FIELDS: Final = ("namespaces", "namespaceSelector")
_IDENTITY_FIELDS: Final = frozenset({"issuer", "issuerRegExp", "subject", "subjectRegExp", "claims"})
_NAME_RE: Final = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
# registry[:port]/path, lowercase, no tag or digest: cosign's COSIGN_REPOSITORY.
_REPOSITORY_RE: Final = re.compile(
    r"(?:[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::[0-9]{1,5})?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)


@dataclass(frozen=True, slots=True)
class ImageGlobSpec:
    """``{glob: "ghcr.io/acme/**"}``: one image pattern."""

    glob: str


@dataclass(frozen=True, slots=True)
class StringMatchSpec:
    """A value matched exactly (``value``) or by an anchored regular expression (``reg_exp``).

    Exactly one of the two is set; :func:`parse_policy` guarantees it.
    """

    value: str | None = None
    reg_exp: str | None = None


@dataclass(frozen=True, slots=True)
class IdentitySpec:
    """One trusted signer: an issuer, a subject, and optional Fulcio claims, all of which must match."""

    issuer: StringMatchSpec
    subject: StringMatchSpec
    claims: Mapping[str, StringMatchSpec] = field(default_factory=lambda: MappingProxyType({}), hash=False)


AnyIdentitySpec = IdentitySpec | KeyIdentitySpec
"""An ``identities[]`` entry: keyless (issuer/subject) or a public key."""


@dataclass(frozen=True, slots=True)
class PolicySpec:
    """``spec`` of a ClusterImagePolicy or ImagePolicy. ``scope`` is always unscoped for an ImagePolicy."""

    images: tuple[ImageGlobSpec, ...]
    identities: tuple[AnyIdentitySpec, ...]
    annotations: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    tlog: TlogMode = "required"
    mode: Mode = "enforce"
    trust_root: str = DEFAULT_TRUST_ROOT
    signature_repository: str | None = None
    scope: NamespaceScope = UNSCOPED
    attestations: tuple[AttestationSpec[AnyIdentitySpec], ...] = ()  # issue 7
    enforce_after: datetime | None = None  # issue 8: mode warn only; enforced from this instant
    exceptions: ExceptionsSetting = "allowed"  # issue 8: ClusterImagePolicy only
    pinning: PinningSetting | None = None  # issue 9: None leaves it to the setting


@dataclass(frozen=True, slots=True)
class PolicyDocument:
    """A parsed policy object: its kind, name, namespace (ImagePolicy only) and spec."""

    kind: PolicyKind
    name: str
    namespace: str | None
    spec: PolicySpec

    @property
    def label(self) -> str:
        """How errors and results name this policy: ``ImagePolicy team-a/app`` or ``ClusterImagePolicy x``."""
        return policy_label(self.kind, self.name, self.namespace)


def policy_label(kind: str, name: str, namespace: str | None) -> str:
    """``Kind [namespace/]name``: the name used in errors."""
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def policy_error(label: str, path: str, problem: str) -> PolicyError:
    """A ``PolicyInvalid`` error naming the policy and the field."""
    return PolicyError(Reason.POLICY_INVALID, f"{label}: {path}: {problem}")


class _Reader:
    """Typed accessors over untyped decoded YAML/JSON, raising errors that name the policy and field."""

    def __init__(self, label: str) -> None:
        self.label = label

    def fail(self, path: str, problem: str) -> PolicyError:
        return policy_error(self.label, path, problem)

    def mapping(self, value: object, path: str) -> Mapping[str, object]:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"must be a mapping, not {_type_name(value)}")
        for key in value:
            if not isinstance(key, str):
                raise self.fail(path, f"keys must be strings, not {_type_name(key)}")
        return value

    def strict_mapping(self, value: object, path: str, allowed: frozenset[str]) -> Mapping[str, object]:
        mapping = self.mapping(value, path)
        unknown = sorted(set(mapping) - allowed)
        if unknown:
            raise self.fail(path, f"unknown field(s) {', '.join(map(repr, unknown[:5]))}")
        return mapping

    def sequence(self, value: object, path: str, *, maximum: int) -> Sequence[object]:
        if not isinstance(value, list | tuple):
            raise self.fail(path, f"must be a list, not {_type_name(value)}")
        if not value:
            raise self.fail(path, "must not be empty")
        if len(value) > maximum:
            raise self.fail(path, f"has {len(value)} entries; at most {maximum} are allowed")
        return value

    def string(self, value: object, path: str, *, maximum: int = MAX_STRING_LENGTH) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"must be a string, not {_type_name(value)}")
        if not value:
            raise self.fail(path, "must not be empty")
        if len(value) > maximum:
            raise self.fail(path, f"is {len(value)} characters long; at most {maximum} are allowed")
        return value

    def one_of(self, mapping: Mapping[str, object], path: str, exact: str, regexp: str) -> StringMatchSpec:
        has_exact = mapping.get(exact) is not None
        has_regexp = mapping.get(regexp) is not None
        if has_exact and has_regexp:
            raise self.fail(path, f"set only one of {exact!r} and {regexp!r}, not both")
        if has_exact:
            return StringMatchSpec(value=self.string(mapping[exact], f"{path}.{exact}"))
        if has_regexp:
            pattern = self.string(mapping[regexp], f"{path}.{regexp}", maximum=MAX_REGEXP_LENGTH)
            return StringMatchSpec(reg_exp=pattern)
        raise self.fail(path, f"one of {exact!r} or {regexp!r} is required")


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def parse_policy(doc: Mapping[str, object]) -> PolicyDocument:
    """Parse one ClusterImagePolicy or ImagePolicy object, strictly.

    Raises :class:`PolicyError` (``PolicyInvalid``) on any unknown field, wrong type, missing required
    field, empty list, or when both or neither of a ``x``/``xRegExp`` pair is set.
    Only ``metadata.name`` and ``metadata.namespace`` are read; the rest of ``metadata`` (labels, uid,
    managedFields ...) and ``status`` are ignored, so Kubernetes objects parse as they come.
    """
    reader = _Reader("policy document")
    top = reader.strict_mapping(doc, "(top level)", _TOP_LEVEL_FIELDS)

    kind = top.get("kind")
    if kind not in POLICY_KINDS:
        raise reader.fail("kind", f"must be one of {', '.join(POLICY_KINDS)}, not {kind!r:.80}")
    api_version = top.get("apiVersion")
    if api_version != API_VERSION:
        raise reader.fail("apiVersion", f"must be {API_VERSION!r}, not {api_version!r:.80}")
    policy_kind: PolicyKind = "ClusterImagePolicy" if kind == "ClusterImagePolicy" else "ImagePolicy"

    metadata = reader.mapping(top.get("metadata"), "metadata")
    name = reader.string(metadata.get("name"), "metadata.name", maximum=MAX_NAME_LENGTH)
    if not _NAME_RE.fullmatch(name):
        raise reader.fail("metadata.name", f"{name!r:.80} is not a valid Kubernetes object name")
    namespace_value = metadata.get("namespace")
    namespace: str | None = None
    if policy_kind == "ImagePolicy":
        namespace = reader.string(namespace_value, "metadata.namespace", maximum=63)
        if not _NAME_RE.fullmatch(namespace) or "." in namespace:
            raise reader.fail("metadata.namespace", f"{namespace!r:.80} is not a valid namespace name")
    elif namespace_value is not None:
        raise reader.fail("metadata.namespace", "a ClusterImagePolicy is cluster-scoped and has no namespace")

    reader = _Reader(policy_label(policy_kind, name, namespace))
    spec = _parse_spec(reader, top.get("spec"), policy_kind)
    return PolicyDocument(kind=policy_kind, name=name, namespace=namespace, spec=spec)


def _parse_spec(reader: _Reader, value: object, kind: PolicyKind) -> PolicySpec:
    known = _SPEC_FIELDS | _EVIDENCE_SPEC_FIELDS | _DEADLINE_SPEC_FIELDS | _PINNING_SPEC_FIELDS
    spec = reader.strict_mapping(value, "spec", known)
    scope = parse_namespace_scope(reader.label, kind, spec)

    images: list[ImageGlobSpec] = []
    for i, entry in enumerate(reader.sequence(spec.get("images"), "spec.images", maximum=MAX_IMAGES)):
        path = f"spec.images[{i}]"
        item = reader.strict_mapping(entry, path, frozenset({"glob"}))
        images.append(ImageGlobSpec(reader.string(item.get("glob"), f"{path}.glob", maximum=MAX_GLOB_LENGTH)))

    identities = [
        _parse_identity(reader, entry, f"spec.identities[{i}]")
        for i, entry in enumerate(
            reader.sequence(spec.get("identities"), "spec.identities", maximum=MAX_IDENTITIES)
        )
    ]

    annotations: dict[str, str] = {}
    raw_annotations = spec.get("annotations")
    if raw_annotations is not None:
        mapping = reader.mapping(raw_annotations, "spec.annotations")
        if len(mapping) > MAX_ANNOTATIONS:
            raise reader.fail("spec.annotations", f"at most {MAX_ANNOTATIONS} annotations are allowed")
        for key, annotation in mapping.items():
            reader.string(key, "spec.annotations", maximum=MAX_NAME_LENGTH)
            annotations[key] = reader.string(annotation, f"spec.annotations.{key}")

    tlog_value = "required" if spec.get("tlog") is None else spec["tlog"]
    if tlog_value not in ("required", "optional"):
        raise reader.fail("spec.tlog", f"must be 'required' or 'optional', not {tlog_value!r:.80}")
    mode_value = "enforce" if spec.get("mode") is None else spec["mode"]
    if mode_value not in ("enforce", "warn"):
        raise reader.fail("spec.mode", f"must be 'enforce' or 'warn', not {mode_value!r:.80}")

    trust_root = DEFAULT_TRUST_ROOT
    if spec.get("trustRoot") is not None:
        trust_root = reader.string(spec["trustRoot"], "spec.trustRoot", maximum=MAX_NAME_LENGTH)
        if not _NAME_RE.fullmatch(trust_root):
            raise reader.fail("spec.trustRoot", f"{trust_root!r:.80} is not a valid trust root name")

    signature_repository: str | None = None
    if spec.get("signatureRepository") is not None:
        signature_repository = reader.string(
            spec["signatureRepository"], "spec.signatureRepository", maximum=MAX_REPOSITORY_LENGTH
        )
        if not _REPOSITORY_RE.fullmatch(signature_repository):
            raise reader.fail(
                "spec.signatureRepository",
                f"{signature_repository!r:.80} is not a repository name (registry/path, no tag or digest)",
            )

    return PolicySpec(
        images=tuple(images),
        identities=tuple(identities),
        annotations=MappingProxyType(annotations),
        tlog="required" if tlog_value == "required" else "optional",
        mode="enforce" if mode_value == "enforce" else "warn",
        trust_root=trust_root,
        signature_repository=signature_repository,
        scope=scope,
        attestations=parse_attestations(
            reader, spec.get("attestations"), lambda entry, path: _parse_identity(reader, entry, path)
        ),
        enforce_after=_parse_enforce_after(reader, spec, mode_value),
        exceptions=_parse_exceptions_setting(reader, spec, kind),
        pinning=_parse_pinning(reader, spec.get("pinning")),  # issue 9
    )


# --- issue 8: spec.enforceAfter (warn mode only) and spec.exceptions (ClusterImagePolicy only)


def _parse_enforce_after(reader: _Reader, spec: Mapping[str, object], mode: object) -> datetime | None:
    raw = spec.get("enforceAfter")
    if raw is None:
        return None
    if mode != "warn":
        raise reader.fail("spec.enforceAfter", "only a warn-mode policy has a deadline (mode: warn)")
    try:
        return parse_timestamp(raw)
    except TimestampError as e:
        raise reader.fail("spec.enforceAfter", str(e)) from e


def _parse_exceptions_setting(
    reader: _Reader, spec: Mapping[str, object], kind: PolicyKind
) -> ExceptionsSetting:
    raw = spec.get("exceptions")
    if raw is None:
        return "allowed"
    if kind == "ImagePolicy":
        raise reader.fail("spec.exceptions", "only a ClusterImagePolicy may forbid exceptions")
    if raw not in ("allowed", "forbidden"):
        raise reader.fail("spec.exceptions", f"must be 'allowed' or 'forbidden', not {raw!r:.80}")
    return "forbidden" if raw == "forbidden" else "allowed"


# --- issue 9: spec.pinning (both kinds; how a ClusterImagePolicy's and an ImagePolicy's combine is
# controller.admission.pinning.effective_mode's business)


def _parse_pinning(reader: _Reader, raw: object) -> PinningSetting | None:
    if raw is None:
        return None
    if raw not in ("off", "pods", "workloads") or not isinstance(raw, str):
        hint = " (YAML reads a bare off as false: quote it)" if isinstance(raw, bool) else ""
        raise reader.fail("spec.pinning", f"must be 'off', 'pods' or 'workloads', not {raw!r:.80}{hint}")
    return "off" if raw == "off" else ("workloads" if raw == "workloads" else "pods")


def parse_namespace_scope(label: str, kind: PolicyKind, spec: Mapping[str, object]) -> NamespaceScope:
    """``spec.namespaces``/``spec.namespaceSelector``: ClusterImagePolicy only; raises :class:`PolicyError`."""
    if kind == "ImagePolicy":
        for name in _SCOPE_FIELDS:
            if spec.get(name) is not None:
                raise policy_error(
                    label,
                    f"spec.{name}",
                    "only a ClusterImagePolicy is scoped; an ImagePolicy applies in its own namespace",
                )
        return UNSCOPED
    try:
        return parse_scope(spec.get("namespaces"), spec.get("namespaceSelector"))
    except ScopeError as e:
        raise policy_error(label, e.path, e.problem) from e


def _parse_identity(reader: _Reader, value: object, path: str) -> AnyIdentitySpec:
    if is_key_identity(value):
        return parse_key_identity(reader, value, path)
    identity = reader.strict_mapping(value, path, _IDENTITY_FIELDS)
    issuer = reader.one_of(identity, path, "issuer", "issuerRegExp")
    subject = reader.one_of(identity, path, "subject", "subjectRegExp")
    claims: dict[str, StringMatchSpec] = {}
    raw_claims = identity.get("claims")
    if raw_claims is not None:
        mapping = reader.mapping(raw_claims, f"{path}.claims")
        for claim, expected in mapping.items():
            claim_path = f"{path}.claims.{claim:.80}"
            if claim not in KNOWN_CLAIMS:
                raise reader.fail(claim_path, "unknown claim; see the Fulcio extensions for the known names")
            if isinstance(expected, str):
                claims[claim] = StringMatchSpec(value=reader.string(expected, claim_path))
            elif not isinstance(expected, Mapping):
                raise reader.fail(
                    claim_path, f"must be a string or {{regExp: ...}}, not {_type_name(expected)}"
                )
            else:
                matcher = reader.strict_mapping(expected, claim_path, frozenset({"regExp"}))
                pattern = reader.string(
                    matcher.get("regExp"), f"{claim_path}.regExp", maximum=MAX_REGEXP_LENGTH
                )
                claims[claim] = StringMatchSpec(reg_exp=pattern)
    return IdentitySpec(issuer=issuer, subject=subject, claims=MappingProxyType(claims))
