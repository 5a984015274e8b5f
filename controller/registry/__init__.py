"""The only code that talks to OCI registries.

References, credentials and tokens, manifests, blobs, mirrors, cosign ``.sig`` signatures and OCI 1.1
referrers. Digests are checked on every body read; sizes, counts and times are bounded (:class:`Limits`),
and per decision by a :class:`Budget` (deadline and bytes) drawing on a process-wide :class:`BytePool`.
This layer rests only on :mod:`controller.model` and :mod:`controller.errors`.
"""

from controller.registry.auth import Credential, Keychain
from controller.registry.budget import Budget, BytePool
from controller.registry.client import RegistryClient
from controller.registry.config import RegistryConfig
from controller.registry.limits import Limits
from controller.registry.manifest import Manifest
from controller.registry.reference import api_host, parse_reference, parse_repository

__all__ = [
    "Budget",
    "BytePool",
    "Credential",
    "Keychain",
    "Limits",
    "Manifest",
    "RegistryClient",
    "RegistryConfig",
    "api_host",
    "parse_reference",
    "parse_repository",
]
