"""Public keys that policies hold in Secrets (``identities[].key.secretRef``), read for the compiler.

The policy compiler is pure: it takes a resolver ``(secret name, data key) -> bytes | None``. This
module is the admission side of it. Before a policy object is compiled, the Secrets its key identities
name are read from the controller's own namespace (a ``get`` by name, as TrustRoot references are:
no list or watch, so the namespaced Role's ``get`` is all it takes), and the compiler resolves from
that snapshot. A Secret or key that is absent resolves to ``None``, which the compiler turns into a
``PolicyInvalid`` policy: fail closed.

**Edits.** :meth:`PolicyKeys.refresh` re-reads every Secret key in use (the operator calls it every
``refresh_seconds``); the policies whose keys changed are recompiled, and :meth:`PolicyKeys.current`
hands out the recompiled entry in place of the one kopf's index holds, until the object itself changes.
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from controller.admission.kube import KubeReader
from controller.admission.objects import ObjectKey, PolicyEntry
from controller.errors import ImprimaturError

log = logging.getLogger(__name__)

MAX_KEY_REFS_PER_POLICY: Final = 64
"""secretRefs read for one policy; past it the rest resolve to nothing (and the policy is invalid)."""
MAX_KEY_BYTES: Final = 16 * 1024
"""A PEM public key is under 2 KiB (RSA-8192); a bigger value is not a key."""
MAX_TRACKED_POLICIES: Final = 4096

SecretRef = tuple[str, str]  # (Secret name, data key), in the controller's namespace
Resolver = Callable[[str, str], bytes | None]
Compiler = Callable[[Mapping[str, object], Resolver], PolicyEntry]


def key_secret_refs(body: Mapping[str, object]) -> tuple[SecretRef, ...]:
    """The ``key.secretRef`` entries a policy object names, in ``spec.identities`` and in each
    ``spec.attestations[].identities``; malformed ones are left to the compiler to refuse."""
    spec = body.get("spec")
    if not isinstance(spec, Mapping):
        return ()
    lists: list[object] = [spec.get("identities")]
    attestations = spec.get("attestations")
    if isinstance(attestations, list):
        lists.extend(a.get("identities") for a in attestations if isinstance(a, Mapping))
    refs: dict[SecretRef, None] = {}
    for identities in lists:
        if not isinstance(identities, list):
            continue
        for identity in identities:
            key = identity.get("key") if isinstance(identity, Mapping) else None
            ref = key.get("secretRef") if isinstance(key, Mapping) else None
            if not isinstance(ref, Mapping):
                continue
            name, data_key = ref.get("name"), ref.get("key")
            if isinstance(name, str) and isinstance(data_key, str) and name and data_key:
                refs[(name[:253], data_key[:253])] = None
            if len(refs) >= MAX_KEY_REFS_PER_POLICY:
                return tuple(refs)
    return tuple(refs)


@dataclass(frozen=True, slots=True)
class _Tracked:
    """A policy whose keys live in Secrets: its body (to recompile it) and the entries it had."""

    body: Mapping[str, object]
    refs: tuple[SecretRef, ...]
    indexed: PolicyEntry  # the entry kopf's index holds
    current: PolicyEntry  # the same, or its recompilation after a Secret changed


class PolicyKeys:
    """Reads Secret-held policy keys from ``namespace`` and keeps policies in step with them."""

    def __init__(self, reader: KubeReader | None, namespace: str | None, compile_entry: Compiler) -> None:
        self._reader = reader
        self._namespace = namespace
        self._compile = compile_entry
        self._values: dict[SecretRef, bytes | None] = {}
        self._tracked: dict[ObjectKey, _Tracked] = {}

    def resolve(self, name: str, key: str) -> bytes | None:
        """The resolver the compiler calls: the key's bytes as last read, or None."""
        return self._values.get((name, key))

    async def compile(self, body: Mapping[str, object]) -> PolicyEntry:
        """Read the Secrets ``body`` names, then compile it with them."""
        refs = key_secret_refs(body)
        for ref in refs:
            self._values[ref] = await self._read(ref)
        entry = self._compile(body, self.resolve)
        if refs:
            self._tracked.pop(entry.key, None)
            self._tracked[entry.key] = _Tracked(body, refs, entry, entry)
            while len(self._tracked) > MAX_TRACKED_POLICIES:
                del self._tracked[next(iter(self._tracked))]
        else:
            self._tracked.pop(entry.key, None)
        return entry

    def unresolved(self, body: Mapping[str, object]) -> tuple[SecretRef, ...]:
        """The Secret keys ``body`` names that were not there when last read (absent, or not a value)."""
        return tuple(ref for ref in key_secret_refs(body) if self._values.get(ref) is None)

    def compile_as_if_present(self, body: Mapping[str, object]) -> PolicyEntry:
        """``body`` compiled as if every unresolved Secret key held a valid key: whether anything but
        the missing Secrets is wrong with it (for ``validate-policies``, which then only warns)."""

        def resolve(name: str, key: str) -> bytes | None:
            value = self._values.get((name, key))
            return value if value is not None else _placeholder_pem()

        return self._compile(body, resolve)

    def current(self, entry: PolicyEntry) -> PolicyEntry:
        """``entry`` (from kopf's index), or its recompilation if one of its Secrets changed since."""
        tracked = self._tracked.get(entry.key)
        # kopf's index keeps the value it holds when a re-index returns an equal one (its Store replaces
        # only on ``!=``), so the entry it hands back may be an equal twin of ours: equal is ours.
        if tracked is None or (tracked.indexed is not entry and tracked.indexed != entry):
            return entry
        return tracked.current

    def forget_missing(self, live: Iterable[ObjectKey]) -> None:
        """Drop what is tracked for policies that no longer exist."""
        keep = set(live)
        for key in [k for k in self._tracked if k not in keep]:
            del self._tracked[key]

    async def refresh(self) -> bool:
        """Re-read every Secret key in use; recompile the policies whose keys changed. True if any did."""
        in_use = {ref for tracked in self._tracked.values() for ref in tracked.refs}
        changed: set[SecretRef] = set()
        for ref in sorted(in_use):
            value = await self._read(ref)
            if value != self._values.get(ref):
                self._values[ref] = value
                changed.add(ref)
        if not changed:
            return False
        for key, tracked in list(self._tracked.items()):
            if changed.intersection(tracked.refs):
                fresh = self._compile(tracked.body, self.resolve)
                log.info("%s: a key Secret changed: %s", key, "compiled" if fresh.ready else fresh.detail)
                self._tracked[key] = _Tracked(tracked.body, tracked.refs, tracked.indexed, fresh)
        return True

    async def _read(self, ref: SecretRef) -> bytes | None:
        """The bytes under ``data[key]`` of Secret ``name`` in the controller's namespace, or None when
        it cannot be had (no namespace, no API, absent, unreadable, too big, not base64)."""
        name, key = ref
        if self._reader is None or self._namespace is None:
            return None
        try:
            obj = await self._reader.read("secrets", self._namespace, name)
        except ImprimaturError as e:
            log.warning("Secret %s/%s: %s", self._namespace, name, e.detail)
            return self._values.get(ref)  # a failed read keeps what was known: no flapping
        data = obj.get("data") if obj is not None else None
        value = data.get(key) if isinstance(data, Mapping) else None
        if not isinstance(value, str) or len(value) > MAX_KEY_BYTES * 4 // 3 + 4:
            return None
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None


@functools.cache
def _placeholder_pem() -> bytes:
    """A valid public key standing in for one not readable yet (its private half is thrown away)."""
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
