"""Which namespaces a ClusterImagePolicy applies in: ``spec.namespaces`` and ``spec.namespaceSelector``.

``namespaces`` lists namespace names; ``namespaceSelector`` is a Kubernetes ``metav1.LabelSelector``
over the namespace's labels, with exactly Kubernetes' meaning:

- ``matchLabels: {k: v}`` requires label ``k`` with value ``v`` (it is ``k In (v)``);
- ``In``: the label is present and its value is listed; ``NotIn``: the label is absent, or its value
  is not listed; ``Exists``: present; ``DoesNotExist``: absent. ``In``/``NotIn`` need at least one
  value; ``Exists``/``DoesNotExist`` take none;
- every requirement must hold; the empty selector ``{}`` selects every namespace.

When both are set a namespace must satisfy both. A policy with neither is *unscoped* and applies
everywhere, including to a check made outside any namespace (``namespace=None``, a CLI check of a
cluster-scoped object), which a scoped policy never matches.

The parser is strict (unknown fields, wrong types, duplicates and Kubernetes-invalid names, keys and
values are refused) and bounded; it raises :class:`ScopeError`, which the CRD parser turns into
``PolicyInvalid`` naming the policy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

MAX_NAMESPACES: Final = 256
MAX_MATCH_LABELS: Final = 64
MAX_MATCH_EXPRESSIONS: Final = 32
MAX_SELECTOR_VALUES: Final = 64

MAX_NAMESPACE_LENGTH: Final = 63  # a DNS label
MAX_LABEL_NAME_LENGTH: Final = 63
MAX_LABEL_PREFIX_LENGTH: Final = 253  # a DNS subdomain
MAX_LABEL_VALUE_LENGTH: Final = 63

Operator = Literal["In", "NotIn", "Exists", "DoesNotExist"]
OPERATORS: Final[tuple[Operator, ...]] = ("In", "NotIn", "Exists", "DoesNotExist")

EMPTY_LABELS: Final[Mapping[str, str]] = MappingProxyType({})

_DNS_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME: Final = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_SELECTOR_FIELDS: Final = frozenset({"matchLabels", "matchExpressions"})
_REQUIREMENT_FIELDS: Final = frozenset({"key", "operator", "values"})


class ScopeError(ValueError):
    """A malformed ``namespaces`` or ``namespaceSelector``: ``path`` names the field, ``problem`` says why."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True, slots=True)
class SelectorRequirement:
    """One label requirement: ``key operator (values)``."""

    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Kubernetes' meaning of the operator over a namespace's labels."""
        value = labels.get(self.key)
        if self.operator == "In":
            return value is not None and value in self.values
        if self.operator == "NotIn":
            return value is None or value not in self.values
        if self.operator == "Exists":
            return value is not None
        return value is None


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A ``metav1.LabelSelector``; ``matchLabels`` entries are kept as ``In`` requirements."""

    requirements: tuple[SelectorRequirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether every requirement holds (always, for the empty selector)."""
        return all(requirement.matches(labels) for requirement in self.requirements)


@dataclass(frozen=True, slots=True)
class NamespaceScope:
    """Where a ClusterImagePolicy applies: by name, by labels, both, or (neither) everywhere."""

    names: frozenset[str] | None = None
    selector: LabelSelector | None = None

    @property
    def unscoped(self) -> bool:
        """True when the policy applies in every namespace and outside any namespace."""
        return self.names is None and self.selector is None

    def matches(self, namespace: str | None, labels: Mapping[str, str] = EMPTY_LABELS) -> bool:
        """Whether the policy applies in ``namespace`` (whose labels are ``labels``).

        ``namespace=None`` (outside any namespace) is matched only by an unscoped policy.
        """
        if self.unscoped:
            return True
        if namespace is None:
            return False
        if self.names is not None and namespace not in self.names:
            return False
        return self.selector is None or self.selector.matches(labels)


UNSCOPED: Final = NamespaceScope()


def parse_scope(namespaces: object, selector: object) -> NamespaceScope:
    """Parse ``spec.namespaces`` and ``spec.namespaceSelector`` (``None`` for an absent field).

    Raises :class:`ScopeError` for anything Kubernetes would not accept, or past the bounds.
    """
    names = None if namespaces is None else _parse_names(namespaces)
    parsed_selector = None if selector is None else _parse_selector(selector, "spec.namespaceSelector")
    return NamespaceScope(names=names, selector=parsed_selector)


def _parse_names(value: object) -> frozenset[str]:
    path = "spec.namespaces"
    items = _list(value, path, maximum=MAX_NAMESPACES)
    if not items:
        raise ScopeError(path, "must not be empty; leave it out to apply in every namespace")
    names: set[str] = set()
    for i, item in enumerate(items):
        name = _string(item, f"{path}[{i}]")
        if len(name) > MAX_NAMESPACE_LENGTH or not _DNS_LABEL.fullmatch(name):
            raise ScopeError(f"{path}[{i}]", f"{name!r:.80} is not a valid namespace name")
        if name in names:
            raise ScopeError(f"{path}[{i}]", f"{name!r} is listed twice")
        names.add(name)
    return frozenset(names)


def _parse_selector(value: object, path: str) -> LabelSelector:
    selector = _mapping(value, path)
    unknown = sorted(set(selector) - _SELECTOR_FIELDS)
    if unknown:
        raise ScopeError(path, f"unknown field(s) {', '.join(map(repr, unknown[:5]))}")
    requirements: list[SelectorRequirement] = []
    raw_labels = selector.get("matchLabels")
    if raw_labels is not None:
        labels_path = f"{path}.matchLabels"
        labels = _mapping(raw_labels, labels_path)
        if len(labels) > MAX_MATCH_LABELS:
            raise ScopeError(
                labels_path, f"has {len(labels)} entries; at most {MAX_MATCH_LABELS} are allowed"
            )
        for key, label_value in labels.items():
            entry_path = f"{labels_path}.{key:.80}"
            _check_label_key(key, entry_path)
            requirements.append(
                SelectorRequirement(key, "In", frozenset({_label_value(label_value, entry_path)}))
            )
    raw_expressions = selector.get("matchExpressions")
    if raw_expressions is not None:
        expressions_path = f"{path}.matchExpressions"
        for i, item in enumerate(_list(raw_expressions, expressions_path, maximum=MAX_MATCH_EXPRESSIONS)):
            requirements.append(_parse_requirement(item, f"{expressions_path}[{i}]"))
    return LabelSelector(tuple(requirements))


def _parse_requirement(value: object, path: str) -> SelectorRequirement:
    requirement = _mapping(value, path)
    unknown = sorted(set(requirement) - _REQUIREMENT_FIELDS)
    if unknown:
        raise ScopeError(path, f"unknown field(s) {', '.join(map(repr, unknown[:5]))}")
    key = _string(requirement.get("key"), f"{path}.key")
    _check_label_key(key, f"{path}.key")
    operator = requirement.get("operator")
    if operator not in OPERATORS:
        raise ScopeError(f"{path}.operator", f"must be one of {', '.join(OPERATORS)}, not {operator!r:.80}")
    raw_values = requirement.get("values")
    values_path = f"{path}.values"
    items = () if raw_values is None else _list(raw_values, values_path, maximum=MAX_SELECTOR_VALUES)
    values = frozenset(_label_value(item, f"{values_path}[{i}]") for i, item in enumerate(items))
    if operator in ("In", "NotIn"):
        if not values:
            raise ScopeError(values_path, f"must be non-empty when operator is {operator}")
        return SelectorRequirement(key, "In" if operator == "In" else "NotIn", values)
    if values:
        raise ScopeError(values_path, f"must be empty when operator is {operator}")
    return SelectorRequirement(key, "Exists" if operator == "Exists" else "DoesNotExist")


def _check_label_key(key: str, path: str) -> None:
    """A label key as Kubernetes validates it: ``[prefix/]name``, prefix a DNS subdomain."""
    prefix, slash, name = key.rpartition("/")
    if slash and (
        not prefix or len(prefix) > MAX_LABEL_PREFIX_LENGTH or not _DNS_SUBDOMAIN.fullmatch(prefix)
    ):
        raise ScopeError(path, f"{key!r:.80}: the prefix must be a DNS subdomain")
    if not name or len(name) > MAX_LABEL_NAME_LENGTH or not _QUALIFIED_NAME.fullmatch(name):
        raise ScopeError(path, f"{key!r:.80} is not a valid label key")


def _label_value(value: object, path: str) -> str:
    """A label value as Kubernetes validates it: empty, or up to 63 alphanumerics with ``-_.`` inside."""
    if not isinstance(value, str):
        raise ScopeError(path, f"must be a string, not {_type_name(value)}")
    if value and (len(value) > MAX_LABEL_VALUE_LENGTH or not _QUALIFIED_NAME.fullmatch(value)):
        raise ScopeError(path, f"{value!r:.80} is not a valid label value")
    return value


def _mapping(value: object, path: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise ScopeError(path, f"must be a mapping, not {_type_name(value)}")
    for key in value:
        if not isinstance(key, str):
            raise ScopeError(path, f"keys must be strings, not {_type_name(key)}")
    return value


def _list(value: object, path: str, *, maximum: int) -> Sequence[object]:
    if not isinstance(value, list | tuple):
        raise ScopeError(path, f"must be a list, not {_type_name(value)}")
    if len(value) > maximum:
        raise ScopeError(path, f"has {len(value)} entries; at most {maximum} are allowed")
    return value


def _string(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise ScopeError(path, f"must be a string, not {_type_name(value)}")
    if not value:
        raise ScopeError(path, "must not be empty")
    return value


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__
