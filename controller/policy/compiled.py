"""The compiled form of a policy: globs compiled, regular expressions compiled and anchored.

Kept apart from the CRD form (:mod:`controller.policy.crd`), as policy-controller does. Compiling
happens once, when a policy is loaded; evaluation never parses anything.

**Regular expressions are RE2, as in cosign, and anchored.** They are compiled by
:mod:`controller.policy.regex` with Go's syntax and matched in linear time. ``subjectRegExp:
".*@acme\\.com"`` must match the whole subject, so it does not match ``eve@acme.com.attacker.example``.
Cosign searches instead, so its ``gmail.*`` also matches ``gmail.attacker.com``; we do not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType
from typing import Final, Literal

from controller.config import PinningSetting  # issue 9
from controller.errors import PolicyError, Reason
from controller.model import TrustedKey, VerifiedSignature
from controller.policy.attestations import CompiledAttestation, SignerMatcher
from controller.policy.cel import CelError, compile_condition
from controller.policy.crd import (
    API_VERSION,
    DEFAULT_TRUST_ROOT,
    AnyIdentitySpec,
    IdentitySpec,
    Mode,
    PolicyDocument,
    PolicyKind,
    StringMatchSpec,
    parse_policy,
    policy_error,
    policy_label,
)
from controller.policy.evidence_spec import AttestationSpec, KeyIdentitySpec
from controller.policy.glob import GlobError, ImageGlob, normalize_image_name
from controller.policy.globset import GlobSet, compile_once
from controller.policy.keys import KeyMatcher, KeyParseError, SecretResolver, no_secrets, parse_public_key
from controller.policy.regex import Regexp, RegexpError, compile_regexp
from controller.policy.scope import EMPTY_LABELS, UNSCOPED, NamespaceScope

# A value longer than this never matches a pattern: it bounds the work a regex does on
# signer-controlled text (a GitHub ref or a workflow path is chosen by whoever signs).
MAX_MATCHED_VALUE_LENGTH: Final = 4096
FLAGS_POLICY_NAME: Final = "command-line"


@dataclass(frozen=True, slots=True)
class StringMatcher:
    """Matches a string exactly, or by an anchored (full-match) compiled regular expression."""

    value: str | None = None
    regexp: Regexp | None = None

    def matches(self, text: str | None) -> bool:
        """True when ``text`` equals ``value`` or fully matches ``regexp``; ``None`` never matches."""
        if text is None:
            return False
        if self.value is not None:
            return text == self.value
        if self.regexp is not None and len(text) <= MAX_MATCHED_VALUE_LENGTH:
            return self.regexp.fullmatch(text)
        return False

    def describe(self, name: str) -> str:
        """``name=value`` or ``name~/regexp/`` (anchored)."""
        if self.value is not None:
            return f"{name}={self.value}"
        pattern = self.regexp.pattern if self.regexp is not None else ""
        return f"{name}~/{pattern}/"


@dataclass(frozen=True, slots=True)
class IdentityMatcher:
    """One trusted signer. A signature matches when its issuer, its subject and every listed claim match."""

    issuer: StringMatcher
    subject: StringMatcher
    claims: Mapping[str, StringMatcher] = field(default_factory=lambda: MappingProxyType({}), hash=False)

    def matches(self, sig: VerifiedSignature) -> bool:
        """Whether ``sig`` was made by this identity (issuer, subject and all claims).

        A key-signed artifact (``key_id`` set) is never made by a keyless identity.
        """
        if sig.key_id:
            return False
        if not self.issuer.matches(sig.issuer) or not self.subject.matches(sig.subject):
            return False
        return all(matcher.matches(sig.claims.get(claim)) for claim, matcher in self.claims.items())

    def describe(self) -> str:
        """A human form, e.g. ``issuer=https://accounts.google.com subject~/.*@acme\\.com/``."""
        parts = [self.issuer.describe("issuer"), self.subject.describe("subject")]
        parts.extend(matcher.describe(claim) for claim, matcher in sorted(self.claims.items()))
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    """A policy ready to evaluate. Immutable; build it with :func:`compile_policy`."""

    name: str
    kind: PolicyKind
    namespace: str | None
    images: tuple[ImageGlob, ...]
    identities: tuple[IdentityMatcher | KeyMatcher, ...]
    annotations: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    tlog_required: bool = True
    mode: Mode = "enforce"
    trust_root: str = DEFAULT_TRUST_ROOT
    signature_repository: str | None = None
    scope: NamespaceScope = UNSCOPED
    attestations: tuple[CompiledAttestation, ...] = ()
    # --- issue 8 (controller/policy/deadline.py): warn until enforce_after, then ``enforced``, the
    # same policy in enforce mode (built once, so memoised results by identity keep the phases apart);
    # and whether an ImagePolicyException may admit what this ClusterImagePolicy governs.
    enforce_after: datetime | None = None
    enforced: CompiledPolicy | None = field(default=None, compare=False, repr=False)
    exceptions_forbidden: bool = False
    # --- issue 9: digest pinning as this policy asks (None: the setting decides); see
    # controller.admission.pinning.effective_mode for how policies combine
    pinning: PinningSetting | None = None
    # --- glob matching: the images' RE2 programs (controller/policy/globset.py), compiled once by
    # glob_set(), which PolicySet calls when it is built; shared with ``enforced`` through replace()
    _glob_set: list[GlobSet] = field(default_factory=list, repr=False, compare=False)

    @property
    def label(self) -> str:
        """``ClusterImagePolicy name`` or ``ImagePolicy namespace/name``."""
        return policy_label(self.kind, self.name, self.namespace)

    # --- what the engine must fetch and verify for this policy (issue 7)

    @property
    def trusted_keys(self) -> tuple[TrustedKey, ...]:
        """The public keys verify/ should try: those of every key identity, policy and attestations."""
        matchers = [*self.identities, *(i for a in self.attestations for i in a.identities)]
        keys = {m.key.key_id: m.key.trusted for m in matchers if isinstance(m, KeyMatcher)}
        return tuple(keys.values())

    @property
    def needs_attestations(self) -> bool:
        """Whether attestations must be fetched (the ``.att`` tag): only when some entry requires one."""
        return bool(self.attestations)

    @property
    def predicate_types(self) -> frozenset[str]:
        """The predicate types the ``attestations:`` entries require."""
        return frozenset(a.predicate_type for a in self.attestations)

    def matches_namespace(self, namespace: str | None, labels: Mapping[str, str] = EMPTY_LABELS) -> bool:
        """Whether this policy applies in ``namespace`` (labelled ``labels``); see :func:`applies_in`."""
        return applies_in(self.kind, self.namespace, self.scope, namespace, labels)

    def matches_image(self, name: str) -> bool:
        """Whether any of this policy's globs matches the image (a name or reference, normalised first).

        Raises :class:`~controller.errors.InputError` (``ReferenceInvalid``) for a malformed name.
        """
        return self.glob_set().matches_normalized(normalize_image_name(name))

    def glob_set(self) -> GlobSet:
        """The images' globs compiled together (once); raises :class:`~controller.policy.globset.GlobSetError`."""
        return compile_once(self.images, self._glob_set)


def applies_in(
    kind: PolicyKind,
    own_namespace: str | None,
    scope: NamespaceScope,
    namespace: str | None,
    labels: Mapping[str, str],
) -> bool:
    """An ImagePolicy applies only in its own namespace; a ClusterImagePolicy wherever its scope says.

    Outside any namespace (``namespace=None``) only unscoped ClusterImagePolicies apply.
    """
    if kind == "ImagePolicy":
        return namespace is not None and namespace == own_namespace
    return scope.matches(namespace, labels)


def compile_policy(doc: Mapping[str, object], resolver: SecretResolver = no_secrets) -> CompiledPolicy:
    """Parse and compile one policy object; raises :class:`PolicyError` (``PolicyInvalid``).

    ``resolver`` reads a key identity's ``secretRef`` (a Secret in the controller's namespace); an
    unresolved or unparseable key makes the policy invalid.
    """
    return compile_document(parse_policy(doc), resolver)


def compile_document(doc: PolicyDocument, resolver: SecretResolver = no_secrets) -> CompiledPolicy:
    """Compile an already parsed :class:`PolicyDocument`; raises :class:`PolicyError`."""
    label = doc.label
    images: list[ImageGlob] = []
    for i, spec in enumerate(doc.spec.images):
        try:
            images.append(ImageGlob.compile(spec.glob))
        except GlobError as e:
            raise policy_error(label, f"spec.images[{i}].glob", str(e)) from e
    identities = tuple(
        _compile_any_identity(label, identity, f"spec.identities[{i}]", resolver)
        for i, identity in enumerate(doc.spec.identities)
    )
    attestations = tuple(
        _compile_attestation(label, spec, f"spec.attestations[{i}]", identities, resolver)
        for i, spec in enumerate(doc.spec.attestations)
    )
    policy = CompiledPolicy(
        name=doc.name,
        kind=doc.kind,
        namespace=doc.namespace,
        images=tuple(images),
        identities=identities,
        annotations=MappingProxyType(dict(doc.spec.annotations)),
        tlog_required=doc.spec.tlog == "required",
        mode=doc.spec.mode,
        trust_root=doc.spec.trust_root,
        signature_repository=doc.spec.signature_repository,
        scope=doc.spec.scope,
        attestations=attestations,
        enforce_after=doc.spec.enforce_after,  # issue 8
        exceptions_forbidden=doc.spec.exceptions == "forbidden",  # issue 8
        pinning=doc.spec.pinning,  # issue 9
    )
    if policy.mode == "warn" and policy.enforce_after is not None:  # issue 8: its enforcing form
        policy = replace(policy, enforced=replace(policy, mode="enforce"))
    return policy


def _compile_any_identity(
    label: str, spec: AnyIdentitySpec, path: str, resolver: SecretResolver
) -> IdentityMatcher | KeyMatcher:
    if isinstance(spec, IdentitySpec):
        return _compile_identity(label, spec, path)
    return _compile_key(label, spec, path, resolver)


def _compile_key(label: str, spec: KeyIdentitySpec, path: str, resolver: SecretResolver) -> KeyMatcher:
    source = f"{label}: {path}.key"
    if spec.pem is not None:
        pem, where = spec.pem.encode("utf-8"), f"{path}.key.pem"
    elif spec.secret_ref is not None:
        where = f"{path}.key.secretRef"
        ref = spec.secret_ref
        try:
            resolved = resolver(ref.name, ref.key)
        except Exception as e:
            raise policy_error(label, where, f"Secret {ref.name}[{ref.key}] could not be read: {e}") from e
        if resolved is None:
            raise policy_error(
                label, where, f"Secret {ref.name}[{ref.key}] not found in the controller's namespace"
            )
        pem, source = resolved, f"{source} (Secret {ref.name}[{ref.key}])"
    else:  # parse_policy guarantees one of the two
        raise policy_error(label, f"{path}.key", "exactly one of 'pem' or 'secretRef' is required")
    try:
        return KeyMatcher(parse_public_key(pem, source))
    except KeyParseError as e:
        raise policy_error(label, where, str(e)) from e


def _compile_attestation(
    label: str,
    spec: AttestationSpec[AnyIdentitySpec],
    path: str,
    default_identities: tuple[IdentityMatcher | KeyMatcher, ...],
    resolver: SecretResolver,
) -> CompiledAttestation:
    identities: tuple[SignerMatcher, ...] = default_identities
    if spec.identities is not None:
        identities = tuple(
            _compile_any_identity(label, identity, f"{path}.identities[{i}]", resolver)
            for i, identity in enumerate(spec.identities)
        )
    conditions = []
    for i, condition in enumerate(spec.conditions):
        try:
            conditions.append(compile_condition(condition.expression, condition.message))
        except CelError as e:
            raise policy_error(label, f"{path}.conditions[{i}].expression", f"invalid CEL: {e}") from e
    return CompiledAttestation(spec.name, spec.predicate_type, identities, tuple(conditions))


def _compile_identity(label: str, spec: IdentitySpec, path: str) -> IdentityMatcher:
    return IdentityMatcher(
        issuer=_compile_match(label, spec.issuer, path, "issuer"),
        subject=_compile_match(label, spec.subject, path, "subject"),
        claims=MappingProxyType(
            {
                claim: _compile_match(label, matcher, f"{path}.claims.{claim}", "", regexp_field="regExp")
                for claim, matcher in spec.claims.items()
            }
        ),
    )


def _compile_match(
    label: str, spec: StringMatchSpec, path: str, name: str, *, regexp_field: str | None = None
) -> StringMatcher:
    if spec.reg_exp is None:
        return StringMatcher(value=spec.value)
    field_path = f"{path}.{regexp_field or name + 'RegExp'}"
    try:
        return StringMatcher(regexp=compile_regexp(spec.reg_exp))
    except RegexpError as e:
        raise policy_error(label, field_path, f"invalid regular expression: {e}") from e


def policy_from_flags(
    *,
    certificate_identity: str | None = None,
    certificate_identity_regexp: str | None = None,
    certificate_oidc_issuer: str | None = None,
    certificate_oidc_issuer_regexp: str | None = None,
    claims: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    tlog_required: bool = True,
    trust_root: str = DEFAULT_TRUST_ROOT,
    signature_repository: str | None = None,
    mode: Literal["enforce", "warn"] = "enforce",
    key_pem: bytes | None = None,
) -> CompiledPolicy:
    """The policy that cosign-style CLI flags describe: one identity, every image (``**``).

    As in cosign, exactly one of ``--certificate-identity`` / ``--certificate-identity-regexp`` and
    exactly one of ``--certificate-oidc-issuer`` / ``--certificate-oidc-issuer-regexp`` is required.
    Unlike cosign, the regexps are anchored. ``claims`` are exact values by camelCase claim name (what
    ``--certificate-github-workflow-repository`` and friends set). ``key_pem`` (cosign's ``--key``)
    trusts that public key instead of a keyless identity. Raises :class:`PolicyError`.
    """
    identity: dict[str, object] = {}
    keyless_flags = (
        certificate_identity,
        certificate_identity_regexp,
        certificate_oidc_issuer,
        certificate_oidc_issuer_regexp,
    )
    if key_pem is not None:
        if any(flag is not None for flag in keyless_flags) or claims:
            raise PolicyError(
                Reason.POLICY_INVALID,
                f"{FLAGS_POLICY_NAME}: --key trusts a public key; it cannot be combined with "
                "--certificate-identity or --certificate-oidc-issuer flags",
            )
        try:
            identity["key"] = {"pem": key_pem.decode("ascii")}
        except UnicodeDecodeError as e:
            raise PolicyError(Reason.POLICY_INVALID, f"{FLAGS_POLICY_NAME}: --key is not a PEM file") from e
    for exact, regexp, exact_key, regexp_key, flag in (
        (
            certificate_oidc_issuer,
            certificate_oidc_issuer_regexp,
            "issuer",
            "issuerRegExp",
            "--certificate-oidc-issuer",
        ),
        (
            certificate_identity,
            certificate_identity_regexp,
            "subject",
            "subjectRegExp",
            "--certificate-identity",
        ),
    ):
        if key_pem is not None:
            break
        if (exact is None) == (regexp is None):
            raise PolicyError(
                Reason.POLICY_INVALID,
                f"{FLAGS_POLICY_NAME}: exactly one of {flag} and {flag}-regexp is required",
            )
        if exact is not None:
            identity[exact_key] = exact
        else:
            identity[regexp_key] = regexp
    if claims:
        identity["claims"] = dict(claims)
    spec: dict[str, object] = {
        "images": [{"glob": "**"}],
        "identities": [identity],
        "tlog": "required" if tlog_required else "optional",
        "mode": mode,
        "trustRoot": trust_root,
    }
    if annotations:
        spec["annotations"] = dict(annotations)
    if signature_repository is not None:
        spec["signatureRepository"] = signature_repository
    return compile_policy(
        {
            "apiVersion": API_VERSION,
            "kind": "ClusterImagePolicy",
            "metadata": {"name": FLAGS_POLICY_NAME},
            "spec": spec,
        }
    )
