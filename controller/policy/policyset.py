"""A set of policies, loading them from YAML, and choosing the ones that govern an image.

Every ClusterImagePolicy whose globs match an image and whose namespace scope includes the namespace
applies to it, and so does every ImagePolicy of that namespace whose globs match
(:meth:`PolicySet.scope_for`). The set holds compiled policies and :class:`InvalidPolicy` ones alike:
an invalid policy is matched like any other and denies (see :mod:`controller.policy.tenancy`, which
also says how cluster and namespaced results combine: a namespaced policy only ever *adds*
requirements).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import yaml

from controller.errors import ImprimaturError, PolicyError, Reason
from controller.model import TrustedKey
from controller.policy.compiled import CompiledPolicy, compile_policy
from controller.policy.invalid import InvalidPolicy
from controller.policy.keys import SecretResolver, no_secrets
from controller.policy.scope import EMPTY_LABELS

MAX_POLICY_YAML_BYTES: Final = 1024 * 1024
MAX_POLICY_DOCUMENTS: Final = 512

AnyPolicy = CompiledPolicy | InvalidPolicy


@dataclass(frozen=True, slots=True)
class Matching:
    """The policies that govern one image in one namespace (:meth:`PolicySet.scope_for`).

    ``cluster``: the ClusterImagePolicies whose globs and scope match, by name. ``namespaced``: the
    namespace's own ImagePolicies whose globs match, by name. Either may hold invalid policies.
    """

    cluster: tuple[AnyPolicy, ...] = ()
    namespaced: tuple[AnyPolicy, ...] = ()

    @property
    def compiled(self) -> tuple[CompiledPolicy, ...]:
        """The governing policies that compiled (invalid ones need no evidence: they deny)."""
        return tuple(p for p in (*self.cluster, *self.namespaced) if isinstance(p, CompiledPolicy))

    @property
    def trusted_keys(self) -> tuple[TrustedKey, ...]:
        """Every public key some governing policy trusts, once each (what verify/ should try)."""
        keys: dict[bytes, TrustedKey] = {}
        for policy in self.compiled:
            for key in policy.trusted_keys:
                keys.setdefault(key.pem, key)
        return tuple(keys.values())

    @property
    def needs_attestations(self) -> bool:
        """Whether some governing policy requires an attestation (only then fetch ``.att``)."""
        return any(p.needs_attestations for p in self.compiled)

    @property
    def predicate_types(self) -> frozenset[str]:
        """The predicate types the governing policies require."""
        return frozenset(t for p in self.compiled for t in p.predicate_types)


class PolicySet:
    """An immutable collection of policies (compiled or invalid), unique by (kind, namespace, name)."""

    def __init__(self, policies: Sequence[AnyPolicy]) -> None:
        """Raises :class:`PolicyError` (``PolicyInvalid``) if two policies share kind, namespace and name."""
        seen: set[tuple[str, str | None, str]] = set()
        for policy in policies:
            key = (policy.kind, policy.namespace, policy.name)
            if key in seen:
                raise PolicyError(Reason.POLICY_INVALID, f"{policy.label}: defined more than once")
            seen.add(key)
        self._cluster = tuple(
            sorted((p for p in policies if p.kind == "ClusterImagePolicy"), key=lambda p: p.name)
        )
        self._namespaced: dict[str, tuple[AnyPolicy, ...]] = {}
        for policy in sorted((p for p in policies if p.kind == "ImagePolicy"), key=lambda p: p.name):
            if policy.namespace is None:
                raise PolicyError(Reason.POLICY_INVALID, f"{policy.label}: an ImagePolicy needs a namespace")
            self._namespaced[policy.namespace] = (*self._namespaced.get(policy.namespace, ()), policy)

    @property
    def policies(self) -> tuple[AnyPolicy, ...]:
        """Every policy: cluster policies by name, then namespaced ones by namespace and name."""
        namespaced = (p for ns in sorted(self._namespaced) for p in self._namespaced[ns])
        return (*self._cluster, *namespaced)

    def __len__(self) -> int:
        return len(self._cluster) + sum(len(group) for group in self._namespaced.values())

    def __iter__(self) -> Iterator[AnyPolicy]:
        return iter(self.policies)

    @property
    def invalid(self) -> tuple[InvalidPolicy, ...]:
        """The policies that did not compile, in the order of :attr:`policies`."""
        return tuple(p for p in self.policies if isinstance(p, InvalidPolicy))

    def scope_for(
        self, image_name: str, namespace: str | None, labels: Mapping[str, str] = EMPTY_LABELS
    ) -> Matching:
        """The policies that govern ``image_name`` in ``namespace``, whose labels are ``labels``.

        Cluster policies count when their globs match and their scope includes the namespace;
        outside any namespace (``namespace=None``) only unscoped ones do, and there are no namespaced
        ones. ``labels`` must come from the Namespace object, never from the reviewed object.
        Raises :class:`~controller.errors.InputError` (``ReferenceInvalid``) for a malformed name.
        """
        cluster = tuple(
            p for p in self._cluster if p.matches_namespace(namespace, labels) and p.matches_image(image_name)
        )
        if namespace is None:
            return Matching(cluster, ())
        namespaced = tuple(p for p in self._namespaced.get(namespace, ()) if p.matches_image(image_name))
        return Matching(cluster, namespaced)


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate mapping keys (``subject:`` twice must not mean 'the last')."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Hashable, object]:
    loader.flatten_mapping(node)
    mapping: dict[Hashable, object] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable):
            raise yaml.constructor.ConstructorError(None, None, "unhashable mapping key", key_node.start_mark)
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r:.80}", key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
    return mapping


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_policies(text: str, resolver: SecretResolver = no_secrets) -> list[CompiledPolicy]:
    """Compile every policy in a multi-document YAML text; empty documents are skipped.

    Raises :class:`PolicyError` (``PolicyInvalid``) naming the document index (0-based) for YAML that
    does not parse, a document that is not a ClusterImagePolicy or ImagePolicy, or any invalid
    policy; and for a text over :data:`MAX_POLICY_YAML_BYTES` or :data:`MAX_POLICY_DOCUMENTS`.
    Duplicate names are reported when the list becomes a :class:`PolicySet`.
    """
    if len(text) > MAX_POLICY_YAML_BYTES or len(text.encode("utf-8", "replace")) > MAX_POLICY_YAML_BYTES:
        raise PolicyError(Reason.POLICY_INVALID, f"policy YAML is larger than {MAX_POLICY_YAML_BYTES} bytes")
    policies: list[CompiledPolicy] = []
    index = 0  # the document being read, for error messages
    documents = yaml.load_all(text, Loader=_StrictLoader)  # a SafeLoader subclass
    try:
        while True:
            try:
                doc = next(documents)
            except StopIteration:
                break
            if index >= MAX_POLICY_DOCUMENTS:
                raise PolicyError(
                    Reason.POLICY_INVALID, f"more than {MAX_POLICY_DOCUMENTS} documents in policy YAML"
                )
            if doc is not None:
                policies.append(_compile_document(index, doc, resolver))
            index += 1
    except yaml.YAMLError as e:
        raise PolicyError(Reason.POLICY_INVALID, f"document {index}: YAML does not parse: {e}") from e
    except RecursionError as e:
        raise PolicyError(Reason.POLICY_INVALID, f"document {index}: YAML nested too deeply") from e
    return policies


def _compile_document(index: int, doc: object, resolver: SecretResolver) -> CompiledPolicy:
    if not isinstance(doc, Mapping):
        raise PolicyError(Reason.POLICY_INVALID, f"document {index}: not a mapping but {type(doc).__name__}")
    try:
        return compile_policy(doc, resolver)
    except ImprimaturError as e:
        raise PolicyError(Reason.POLICY_INVALID, f"document {index}: {e.detail}") from e
