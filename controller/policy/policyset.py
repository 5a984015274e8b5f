"""A set of policies, loading them from YAML, and choosing the ones that govern an image.

Every ClusterImagePolicy whose globs match an image and whose namespace scope includes the namespace
applies to it, and so does every ImagePolicy of that namespace whose globs match
(:meth:`PolicySet.scope_for`). The set holds compiled policies and :class:`InvalidPolicy` ones alike:
an invalid policy is matched like any other and denies (see :mod:`controller.policy.tenancy`, which
also says how cluster and namespaced results combine: a namespaced policy only ever *adds*
requirements).

**What a namespace's ImagePolicies may cost.** Their globs are tenants' text, matched on the webhook's
event loop for every image reviewed in the namespace, so the set considers, per namespace and in name
order, only the ImagePolicies that fit in :data:`MAX_GLOBS_PER_NAMESPACE` globs,
:data:`MAX_WILDCARDS_PER_NAMESPACE` wildcards and :data:`MAX_GLOB_CHARACTERS_PER_NAMESPACE` glob
characters in all (about 5 ms a name at worst; see :mod:`controller.policy.globset`). The others are
never compiled nor matched: one :class:`InvalidPolicy` named after the first of them takes their place
and denies every image of that namespace (fail closed; an ImagePolicy only ever adds requirements), so
the namespace's owner sees why. Other namespaces are not affected.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import yaml

from controller.errors import ImprimaturError, PolicyError, Reason
from controller.model import TrustedKey
from controller.policy.compiled import CompiledPolicy, compile_policy
from controller.policy.globset import GlobSetError
from controller.policy.invalid import InvalidPolicy
from controller.policy.keys import SecretResolver, no_secrets
from controller.policy.scope import EMPTY_LABELS

MAX_POLICY_YAML_BYTES: Final = 1024 * 1024
MAX_POLICY_DOCUMENTS: Final = 512
# What one namespace's ImagePolicies may cost each image reviewed there (see the module docstring).
MAX_GLOBS_PER_NAMESPACE: Final = 256
MAX_WILDCARDS_PER_NAMESPACE: Final = 256
MAX_GLOB_CHARACTERS_PER_NAMESPACE: Final = 16384

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
        grouped: dict[str, list[AnyPolicy]] = {}
        for policy in sorted((p for p in policies if p.kind == "ImagePolicy"), key=lambda p: p.name):
            if policy.namespace is None:
                raise PolicyError(Reason.POLICY_INVALID, f"{policy.label}: an ImagePolicy needs a namespace")
            grouped.setdefault(policy.namespace, []).append(policy)
        self._over_budget: dict[str, tuple[AnyPolicy, ...]] = {}
        self._namespaced: dict[str, tuple[AnyPolicy, ...]] = {}
        for namespace, group in grouped.items():
            considered, over = _within_budget(group)
            if over:
                self._over_budget[namespace] = over
                considered.append(_over_budget_policy(namespace, over))
            self._namespaced[namespace] = tuple(_with_glob_set(p) for p in considered)
        # every glob set is compiled here, once per policy object, so that no review compiles one
        self._cluster = tuple(_with_glob_set(p) for p in self._cluster)

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

    def over_budget(self, namespace: str) -> tuple[AnyPolicy, ...]:
        """The namespace's ImagePolicies past its budget: never matched, replaced by one denial."""
        return self._over_budget.get(namespace, ())

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


def _cost(policy: AnyPolicy) -> tuple[int, int, int]:
    """(globs, wildcards, glob characters) of a policy; an invalid one that covers everything: one glob."""
    if policy.images is None:
        return 1, 0, 0
    return (
        len(policy.images),
        sum(glob.wildcards for glob in policy.images),
        sum(len(glob.normalized) for glob in policy.images),
    )


def _within_budget(group: Sequence[AnyPolicy]) -> tuple[list[AnyPolicy], tuple[AnyPolicy, ...]]:
    """Split one namespace's ImagePolicies (in name order) into those within its budget and the rest."""
    considered: list[AnyPolicy] = []
    over: list[AnyPolicy] = []
    globs = wildcards = characters = 0
    for policy in group:
        cost = _cost(policy)
        if (
            globs + cost[0] <= MAX_GLOBS_PER_NAMESPACE
            and wildcards + cost[1] <= MAX_WILDCARDS_PER_NAMESPACE
            and characters + cost[2] <= MAX_GLOB_CHARACTERS_PER_NAMESPACE
        ):
            considered.append(policy)
            globs, wildcards, characters = globs + cost[0], wildcards + cost[1], characters + cost[2]
        else:
            over.append(policy)
    return considered, tuple(over)


def _over_budget_policy(namespace: str, over: Sequence[AnyPolicy]) -> InvalidPolicy:
    others = f" and {len(over) - 1} other ImagePolicies" if len(over) > 1 else ""
    detail = (
        f"spec.images: the namespace's ImagePolicies hold more than admission matches per image (at most "
        f"{MAX_GLOBS_PER_NAMESPACE} globs, {MAX_WILDCARDS_PER_NAMESPACE} wildcards and "
        f"{MAX_GLOB_CHARACTERS_PER_NAMESPACE} glob characters in all, counted in name order): this one{others} "
        "are not matched, and every image in the namespace is denied until they fit"
    )
    return InvalidPolicy("ImagePolicy", over[0].name, namespace, None, detail)


def _with_glob_set(policy: AnyPolicy) -> AnyPolicy:
    """``policy`` with its glob set compiled (kept on the policy), or an invalid policy covering everything
    if RE2 cannot compile it (globs within their bounds always compile)."""
    try:
        policy.glob_set()
    except GlobSetError as e:
        detail = f"{policy.label}: spec.images: {e}"
        return InvalidPolicy(policy.kind, policy.name, policy.namespace, None, detail, policy.scope)
    return policy


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
