"""Registry credentials for one admission: the pod's pull secrets, its ServiceAccount's, the controller's.

The order is the kubelet's: the pod's own ``imagePullSecrets`` first, then those of its
ServiceAccount, then the controller-wide docker config (a mounted file or a Secret named
``namespace/name``). :meth:`Keychain.merge` keeps that order, and the first credential that matches a
registry host wins.

Objects are read by name through the API and cached briefly (the TTL bounds how stale a rotated
secret can be) in a bounded LRU. A secret that does not exist is skipped, as the kubelet does; a
secret that cannot be read is skipped with a warning in the log, never in the response, and the
registry then answers ``RegistryAuthFailed`` if it needed it.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Final

from controller.admission.kube import CoreResource, KubeReader
from controller.admission.options import ObjectRef
from controller.errors import ImprimaturError
from controller.registry import Keychain
from controller.workload import image_pull_secret_names, service_account_name

log = logging.getLogger(__name__)

MAX_CACHED_OBJECTS: Final = 1024
MAX_SECRETS_PER_REVIEW: Final = 32  # pod plus ServiceAccount pull secrets read for one review

DOCKER_CONFIG_JSON: Final = ".dockerconfigjson"  # kubernetes.io/dockerconfigjson
DOCKER_CFG: Final = ".dockercfg"  # kubernetes.io/dockercfg (legacy flat map)

_Key = tuple[CoreResource, str, str]


class _Cache:
    """A bounded LRU of API reads with a time-to-live; a missing object (None) is cached too."""

    def __init__(self, ttl: float, entries: int, clock: Callable[[], float]) -> None:
        self._ttl = ttl
        self._entries = entries
        self._clock = clock
        self._data: OrderedDict[_Key, tuple[float, Mapping[str, object] | None]] = OrderedDict()

    def get(self, key: _Key) -> tuple[bool, Mapping[str, object] | None]:
        hit = self._data.get(key)
        if hit is None:
            return False, None
        stamp, value = hit
        if self._clock() - stamp > self._ttl:
            del self._data[key]
            return False, None
        self._data.move_to_end(key)
        return True, value

    def put(self, key: _Key, value: Mapping[str, object] | None) -> None:
        if self._ttl <= 0:
            return
        self._data[key] = (self._clock(), value)
        self._data.move_to_end(key)
        while len(self._data) > self._entries:
            self._data.popitem(last=False)


def keychain_from_secret(secret: Mapping[str, object]) -> Keychain | None:
    """The keychain in a ``dockerconfigjson`` or ``dockercfg`` Secret; None for any other Secret.

    Raises :class:`~controller.errors.PolicyError` (``ConfigInvalid``) for a malformed docker config.
    """
    data = secret.get("data")
    if not isinstance(data, Mapping):
        return None
    for key in (DOCKER_CONFIG_JSON, DOCKER_CFG):
        encoded = data.get(key)
        if isinstance(encoded, str):
            try:
                raw = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                return None
            return Keychain.from_docker_config(raw)
    return None


class CredentialResolver:
    """Builds the :class:`Keychain` for a pod (or a workload's pod template) in a namespace."""

    def __init__(
        self,
        reader: KubeReader | None,
        *,
        controller_keychain: Keychain | None = None,
        controller_secret: ObjectRef | None = None,
        ttl_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reader = reader
        self._controller_keychain = controller_keychain
        self._controller_secret = controller_secret
        self._cache = _Cache(ttl_seconds, MAX_CACHED_OBJECTS, clock)
        self.reads = 0  # API reads made (cache misses), for tests and debugging

    async def _get(self, resource: CoreResource, namespace: str, name: str) -> Mapping[str, object] | None:
        key: _Key = (resource, namespace, name)
        found, value = self._cache.get(key)
        if found:
            return value
        if self._reader is None:
            return None
        self.reads += 1
        value = await self._reader.read(resource, namespace, name)
        self._cache.put(key, value)
        return value

    async def _secret_keychain(self, namespace: str, name: str, origin: str) -> Keychain | None:
        try:
            secret = await self._get("secrets", namespace, name)
            if secret is None:
                log.info("pull secret %s/%s (%s) does not exist; skipped", namespace, name, origin)
                return None
            return keychain_from_secret(secret)
        except ImprimaturError as e:
            log.warning(
                "pull secret %s/%s (%s) unusable: %s: %s", namespace, name, origin, e.reason, e.detail
            )
            return None

    async def _service_account_secrets(self, namespace: str, name: str) -> list[str]:
        try:
            account = await self._get("serviceaccounts", namespace, name)
        except ImprimaturError as e:
            log.warning("ServiceAccount %s/%s unreadable: %s: %s", namespace, name, e.reason, e.detail)
            return []
        if account is None:
            return []
        raw = account.get("imagePullSecrets")
        if not isinstance(raw, list):
            return []
        names = [
            e["name"] for e in raw if isinstance(e, Mapping) and isinstance(e.get("name"), str) and e["name"]
        ]
        return [str(n) for n in names]

    async def keychain_for(self, obj: Mapping[str, object], namespace: str | None) -> Keychain | None:
        """The merged keychain (pod > ServiceAccount > controller-wide), or None when it is empty.

        Raises :class:`~controller.errors.InputError` for a pod spec whose pull secrets cannot be read.
        """
        keychains: list[Keychain] = []
        if namespace is not None and self._reader is not None:
            pod_secrets = image_pull_secret_names(obj)
            account = service_account_name(obj)
            account_secrets = await self._service_account_secrets(namespace, account)
            names = list(dict.fromkeys([*pod_secrets, *account_secrets]))[:MAX_SECRETS_PER_REVIEW]
            for name in names:
                origin = "pod" if name in pod_secrets else f"ServiceAccount {account}"
                keychain = await self._secret_keychain(namespace, name, origin)
                if keychain:
                    keychains.append(keychain)
        if self._controller_secret is not None:
            ref = self._controller_secret
            keychain = await self._secret_keychain(ref.namespace, ref.name, "controller-wide")
            if keychain:
                keychains.append(keychain)
        if self._controller_keychain:
            keychains.append(self._controller_keychain)
        merged = Keychain.merge(*keychains)
        return merged if merged else None
