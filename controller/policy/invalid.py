"""Policies that do not compile: kept, and enforced as a denial, instead of vanishing.

A ClusterImagePolicy whose regex does not compile used to be left out of the policy set, so the
images it covered fell to namespaced policies or to the default allow (issue 10, finding 4). Now
:func:`compile_policy_lenient` returns an :class:`InvalidPolicy` for it. It denies, with
``PolicyInvalid`` naming the policy and the error, every image its globs cover, wherever its scope
applies. Its globs and scope are salvaged independently of the rest of the spec; when the globs
themselves are unusable it covers every image, and when the scope is unusable it applies everywhere.
Failing closed, always.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from controller.errors import ImprimaturError
from controller.policy.compiled import CompiledPolicy, applies_in, compile_policy
from controller.policy.crd import MAX_GLOB_LENGTH, MAX_IMAGES, MAX_NAME_LENGTH, PolicyKind, policy_label
from controller.policy.glob import GlobError, ImageGlob, normalize_image_name
from controller.policy.globset import GlobSet, compile_once
from controller.policy.keys import SecretResolver, no_secrets
from controller.policy.scope import EMPTY_LABELS, UNSCOPED, NamespaceScope, ScopeError, parse_scope

MAX_INVALID_DETAIL_LENGTH: Final = 1024


@dataclass(frozen=True, slots=True)
class InvalidPolicy:
    """A policy that did not compile. It never passes; see :func:`controller.policy.evaluate_invalid`.

    ``images`` is ``None`` when the globs could not be compiled either: the policy then covers every
    image. ``scope`` is that of the spec when it could be parsed (ClusterImagePolicy only), else
    unscoped. ``detail`` is the compile error.
    """

    kind: PolicyKind
    name: str
    namespace: str | None
    images: tuple[ImageGlob, ...] | None
    detail: str
    scope: NamespaceScope = UNSCOPED
    # the salvaged globs' RE2 programs, compiled once (see CompiledPolicy.glob_set)
    _glob_set: list[GlobSet] = field(default_factory=list, repr=False, compare=False)

    @property
    def label(self) -> str:
        """``ClusterImagePolicy name`` or ``ImagePolicy namespace/name``."""
        return policy_label(self.kind, self.name, self.namespace)

    def matches_image(self, name: str) -> bool:
        """Whether the policy covers the image: any glob matches, or always when the globs are unusable.

        Raises :class:`~controller.errors.InputError` (``ReferenceInvalid``) for a malformed name, as
        :meth:`CompiledPolicy.matches_image` does.
        """
        normalized = normalize_image_name(name)
        if self.images is None:
            return True
        return self.glob_set().matches_normalized(normalized)

    def glob_set(self) -> GlobSet:
        """The salvaged globs compiled together, once (none: an empty set; ``matches_image`` covers all)."""
        return compile_once(self.images or (), self._glob_set)

    def matches_namespace(self, namespace: str | None, labels: Mapping[str, str] = EMPTY_LABELS) -> bool:
        """Whether the policy applies in ``namespace``; the same rule as for a compiled policy."""
        return applies_in(self.kind, self.namespace, self.scope, namespace, labels)


def compile_policy_lenient(
    doc: Mapping[str, object], resolver: SecretResolver = no_secrets
) -> CompiledPolicy | InvalidPolicy:
    """Compile a policy object, or describe why it does not compile. Never raises for a mapping.

    The kind, name and namespace of an :class:`InvalidPolicy` are read best-effort from the object:
    it is an ImagePolicy only when ``kind`` says so and ``metadata.namespace`` is a non-empty string;
    anything else counts as a ClusterImagePolicy, which applies everywhere (fail closed). ``resolver``
    reads key identities' ``secretRef`` (see :func:`~controller.policy.compiled.compile_policy`).
    """
    try:
        return compile_policy(doc, resolver)
    except ImprimaturError as e:
        detail = e.detail
    except Exception as e:  # noqa: BLE001 - a compiler bug must still leave an enforced, invalid policy
        detail = f"{type(e).__name__}: {e}"
    detail = detail[:MAX_INVALID_DETAIL_LENGTH]
    try:
        return _salvage(doc, detail)
    except Exception:  # noqa: BLE001 - nothing salvaged: deny every image, everywhere
        return InvalidPolicy("ClusterImagePolicy", "", None, None, detail)


def _salvage(doc: Mapping[str, object], detail: str) -> InvalidPolicy:
    metadata = doc.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    raw_name = metadata.get("name")
    name = raw_name[:MAX_NAME_LENGTH] if isinstance(raw_name, str) else ""
    raw_namespace = metadata.get("namespace")
    spec = doc.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    images = _salvage_images(spec.get("images"))
    if doc.get("kind") == "ImagePolicy" and isinstance(raw_namespace, str) and raw_namespace:
        return InvalidPolicy("ImagePolicy", name, raw_namespace[:MAX_NAME_LENGTH], images, detail)
    try:
        scope = parse_scope(spec.get("namespaces"), spec.get("namespaceSelector"))
    except ScopeError:
        scope = UNSCOPED
    return InvalidPolicy("ClusterImagePolicy", name, None, images, detail, scope)


def _salvage_images(value: object) -> tuple[ImageGlob, ...] | None:
    """Every glob compiled, or ``None`` (every image) if any one of them is unusable."""
    if not isinstance(value, list | tuple) or not value or len(value) > MAX_IMAGES:
        return None
    globs: list[ImageGlob] = []
    for entry in value:
        pattern = entry.get("glob") if isinstance(entry, Mapping) else None
        if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_GLOB_LENGTH:
            return None
        try:
            globs.append(ImageGlob.compile(pattern))
        except GlobError:
            return None
    return tuple(globs)
