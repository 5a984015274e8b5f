"""The CRD form of key identities and of ``spec.attestations``: strict, typed, bounded.

Kept beside :mod:`controller.policy.crd`, which calls it: ``identities[].key`` and ``attestations[]``
are parsed here with the same reader (any object with ``fail``/``mapping``/``strict_mapping``/
``sequence``/``string``), so errors name the policy and the field the same way.

    identities:
      - key: {pem: "-----BEGIN PUBLIC KEY-----..."}          # or
      - key: {secretRef: {name: cosign-keys, key: cosign.pub}}  # in the controller's namespace
    attestations:
      - name: provenance
        predicateType: https://slsa.dev/provenance/v1
        identities: [...]                                  # defaults to the policy's identities
        conditions:
          - {expression: 'predicate.buildDefinition.buildType == "..."', message: built by GitHub Actions}
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Generic, Protocol, TypeVar

from controller.errors import PolicyError

MAX_ATTESTATIONS: Final = 16
MAX_ATTESTATION_IDENTITIES: Final = 32
MAX_CONDITIONS: Final = 16
MAX_ATTESTATION_NAME_LENGTH: Final = 63
MAX_PREDICATE_TYPE_LENGTH: Final = 512
MAX_EXPRESSION_LENGTH: Final = 1024  # the same bound as controller.policy.cel
MAX_MESSAGE_LENGTH: Final = 256
MAX_PEM_LENGTH: Final = 16 * 1024

_ATTESTATION_FIELDS: Final = frozenset({"name", "predicateType", "identities", "conditions"})
_CONDITION_FIELDS: Final = frozenset({"expression", "message"})
_KEY_FIELDS: Final = frozenset({"pem", "secretRef"})
_SECRET_REF_FIELDS: Final = frozenset({"name", "key"})
_DNS_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_CONFIG_KEY: Final = re.compile(r"[-._a-zA-Z0-9]+")
# A predicate type is a URI (in-toto: "a TypeURI"); cosign's short names (slsaprovenance, spdx, ...)
# are the CLI's business, not a policy's.
_URI: Final = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:[^\s]+")


IdentityT = TypeVar("IdentityT")


class Reader(Protocol):
    """The typed accessors of :class:`controller.policy.crd._Reader`."""

    def fail(self, path: str, problem: str) -> PolicyError: ...
    def mapping(self, value: object, path: str) -> Mapping[str, object]: ...
    def strict_mapping(self, value: object, path: str, allowed: frozenset[str]) -> Mapping[str, object]: ...
    def sequence(self, value: object, path: str, *, maximum: int) -> Sequence[object]: ...
    def string(self, value: object, path: str, *, maximum: int = ...) -> str: ...


@dataclass(frozen=True, slots=True)
class SecretKeyRef:
    """A key of a Secret in the controller's namespace."""

    name: str
    key: str


@dataclass(frozen=True, slots=True)
class KeyIdentitySpec:
    """A trusted public key: inline ``pem`` or ``secret_ref``; exactly one is set."""

    pem: str | None = None
    secret_ref: SecretKeyRef | None = None


@dataclass(frozen=True, slots=True)
class ConditionSpec:
    """A CEL expression over the statement, and the message that names it in a denial."""

    expression: str
    message: str


@dataclass(frozen=True, slots=True)
class AttestationSpec(Generic[IdentityT]):
    """One required attestation. ``identities`` is ``None`` when it defaults to the policy's."""

    name: str
    predicate_type: str
    identities: tuple[IdentityT, ...] | None
    conditions: tuple[ConditionSpec, ...]


def is_key_identity(value: object) -> bool:
    """Whether an ``identities[]`` entry is a key identity (it has a ``key`` field)."""
    return isinstance(value, Mapping) and "key" in value


def parse_key_identity(reader: Reader, value: object, path: str) -> KeyIdentitySpec:
    """``{key: {pem: ...}}`` or ``{key: {secretRef: {name, key}}}``; nothing else beside ``key``."""
    identity = reader.strict_mapping(value, path, frozenset({"key"}))
    key = reader.strict_mapping(identity.get("key"), f"{path}.key", _KEY_FIELDS)
    has_pem, has_ref = key.get("pem") is not None, key.get("secretRef") is not None
    if has_pem == has_ref:
        raise reader.fail(f"{path}.key", "exactly one of 'pem' or 'secretRef' is required")
    if has_pem:
        pem = reader.string(key["pem"], f"{path}.key.pem", maximum=MAX_PEM_LENGTH)
        return KeyIdentitySpec(pem=pem)
    ref_path = f"{path}.key.secretRef"
    ref = reader.strict_mapping(key["secretRef"], ref_path, _SECRET_REF_FIELDS)
    name = reader.string(ref.get("name"), f"{ref_path}.name", maximum=253)
    if not _DNS_SUBDOMAIN.fullmatch(name):
        raise reader.fail(f"{ref_path}.name", f"{name!r:.80} is not a Secret name")
    data_key = reader.string(ref.get("key"), f"{ref_path}.key", maximum=253)
    if not _CONFIG_KEY.fullmatch(data_key):
        raise reader.fail(f"{ref_path}.key", f"{data_key!r:.80} is not a Secret data key")
    return KeyIdentitySpec(secret_ref=SecretKeyRef(name, data_key))


def parse_attestations(
    reader: Reader,
    value: object,
    parse_identity: Callable[[object, str], IdentityT],
) -> tuple[AttestationSpec[IdentityT], ...]:
    """``spec.attestations``: absent is none; else a bounded list with unique names."""
    if value is None:
        return ()
    entries = reader.sequence(value, "spec.attestations", maximum=MAX_ATTESTATIONS)
    out: list[AttestationSpec[IdentityT]] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        path = f"spec.attestations[{i}]"
        item = reader.strict_mapping(entry, path, _ATTESTATION_FIELDS)
        name = reader.string(item.get("name"), f"{path}.name", maximum=MAX_ATTESTATION_NAME_LENGTH)
        if not _DNS_LABEL.fullmatch(name):
            raise reader.fail(f"{path}.name", f"{name!r:.80} is not a name (lowercase letters, digits, '-')")
        if name in seen:
            raise reader.fail(f"{path}.name", f"{name!r} is listed more than once")
        seen.add(name)
        predicate_type = reader.string(
            item.get("predicateType"), f"{path}.predicateType", maximum=MAX_PREDICATE_TYPE_LENGTH
        )
        if not _URI.fullmatch(predicate_type):
            raise reader.fail(f"{path}.predicateType", f"{predicate_type!r:.80} is not a URI")
        identities: tuple[IdentityT, ...] | None = None
        if item.get("identities") is not None:
            raw = reader.sequence(
                item["identities"], f"{path}.identities", maximum=MAX_ATTESTATION_IDENTITIES
            )
            identities = tuple(parse_identity(e, f"{path}.identities[{j}]") for j, e in enumerate(raw))
        conditions: list[ConditionSpec] = []
        if item.get("conditions") is not None:
            raw_conditions = reader.sequence(item["conditions"], f"{path}.conditions", maximum=MAX_CONDITIONS)
            for j, raw_condition in enumerate(raw_conditions):
                cpath = f"{path}.conditions[{j}]"
                condition = reader.strict_mapping(raw_condition, cpath, _CONDITION_FIELDS)
                expression = reader.string(
                    condition.get("expression"), f"{cpath}.expression", maximum=MAX_EXPRESSION_LENGTH
                )
                message = expression
                if condition.get("message") is not None:
                    message = reader.string(
                        condition["message"], f"{cpath}.message", maximum=MAX_MESSAGE_LENGTH
                    )
                conditions.append(ConditionSpec(expression, message))
        out.append(AttestationSpec(name, predicate_type, identities, tuple(conditions)))
    return tuple(out)
