"""The k3s / RKE2 ``registries.yaml``: mirrors, and per-host credentials and TLS.

.. code-block:: yaml

    mirrors:
      docker.io:
        endpoint: ["https://mirror.internal:5000", "http://plain.internal:5000"]
      "*":
        endpoint: ["https://catch-all.internal"]
    configs:
      "mirror.internal:5000":
        auth: {username: u, password: p}        # or auth: <base64 u:p>, or identity_token
        tls: {ca_file: /ca.pem, cert_file: /c.pem, key_file: /k.pem, insecure_skip_verify: false}

A registry's endpoints are its mirrors in order (or the ``"*"`` mirrors when it has none of its own),
then its upstream ``https://<api host>``.

Docker Hub's names, as containerd reads them: the CRI normalises an image written ``index.docker.io/x``
to ``docker.io/library/x`` (distribution's reference rule for the legacy domain) and then looks its
mirrors up under that name, so the ``docker.io`` entry is the one that applies. A file may also carry
an ``index.docker.io`` (or ``registry-1.docker.io``) entry, in ``mirrors`` or ``configs``; it is a valid
k3s file. Here an alias entry is used only when there is no ``docker.io`` entry (the first alias
listed, then), and is otherwise ignored, with a debug log. The same key written twice is still an error. Plain HTTP is used only for an endpoint written ``http://``.
The parse is strict: an unknown key, a wrong type or a ``rewrite`` (which we cannot honour) is a
:class:`PolicyError` (ConfigInvalid). Nothing is read from disk here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

import yaml

from controller.errors import LimitError, PolicyError, Reason
from controller.registry.auth import Credential, credential_from_fields
from controller.registry.reference import api_host, canonical_registry

log = logging.getLogger(__name__)

MAX_CONFIG_BYTES = 1024 * 1024
MAX_ENDPOINTS_PER_MIRROR = 16
WILDCARD = "*"
API_ROOT = "/v2"

_HOST_RE = re.compile(
    r"^(?:\[[0-9a-f:]+\]|[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*)"
    r"(?::(?P<port>[0-9]{1,5}))?$"
)
_TOP_KEYS = frozenset({"mirrors", "configs"})
_MIRROR_KEYS = frozenset({"endpoint"})
_CONFIG_KEYS = frozenset({"auth", "tls"})
_AUTH_KEYS = frozenset({"username", "password", "auth", "identity_token", "identitytoken"})
_TLS_KEYS = frozenset({"ca_file", "cert_file", "key_file", "insecure_skip_verify"})


def _invalid(detail: str) -> PolicyError:
    return PolicyError(Reason.CONFIG_INVALID, f"registries.yaml: {detail}")


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """TLS settings for one host: an extra CA bundle, a client certificate, or no verification at all."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure_skip_verify: bool = False


@dataclass(frozen=True, slots=True)
class HostConfig:
    """What ``configs`` says about one host."""

    credential: Credential | None = None
    tls: TLSConfig = field(default_factory=TLSConfig)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One place to send registry API requests: ``scheme://host`` + ``api_root`` (``/v2``)."""

    scheme: Literal["https", "http"]
    host: str
    api_root: str = API_ROOT
    mirror: bool = False

    @property
    def url(self) -> str:
        """The API root URL, without a trailing slash (``https://host:5000/v2``)."""
        return f"{self.scheme}://{self.host}{self.api_root}"


def _check_host(host: str, what: str) -> str:
    lowered = host.lower()
    match = _HOST_RE.match(lowered)
    if match is None or (match.group("port") is not None and not 0 < int(match.group("port")) <= 65535):
        raise _invalid(f"{what} {host[:200]!r} is not a host[:port]")
    return lowered


def parse_endpoint(text: str, *, mirror: bool = True) -> Endpoint:
    """``https://mirror:5000`` -> Endpoint; no scheme means https; a path becomes the API root."""
    if not text.strip():
        raise _invalid("an endpoint must be a non-empty string")
    raw = text.strip()
    if "://" not in raw:
        raw = "https://" + raw
    try:
        parts = urlsplit(raw)
        _ = parts.port  # validates the port
    except ValueError as e:
        raise _invalid(f"endpoint {text[:200]!r} is not a URL") from e
    if parts.scheme not in ("https", "http"):
        raise _invalid(f"endpoint {text[:200]!r}: scheme must be https or http")
    if parts.username is not None or parts.password is not None:
        raise _invalid(f"endpoint {text[:200]!r}: credentials belong in configs, not in the URL")
    if parts.query or parts.fragment:
        raise _invalid(f"endpoint {text[:200]!r}: no query or fragment allowed")
    host = _check_host(parts.netloc, "endpoint host")
    path = parts.path.rstrip("/")
    api_root = path if path.endswith(API_ROOT) else path + API_ROOT
    scheme: Literal["https", "http"] = "https" if parts.scheme == "https" else "http"
    return Endpoint(scheme=scheme, host=host, api_root=api_root, mirror=mirror)


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate mapping keys."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[object, object]:
    loader.flatten_mapping(node)
    out: dict[object, object] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise _invalid("mapping keys must be scalars")
        if key in out:
            raise _invalid(f"duplicate key {key!r}")
        out[key] = loader.construct_object(value_node, deep=True)
    return out


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _mapping(value: object, what: str, allowed: frozenset[str] | None = None) -> dict[str, object]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _invalid(f"{what} must be a mapping")
    out: dict[str, object] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise _invalid(f"{what}: key {key!r} must be a string")
        if allowed is not None and key not in allowed:
            raise _invalid(f"{what}: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")
        out[key] = item
    return out


def _string(value: object, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _invalid(f"{what} must be a string")
    return value


def _registry_key(key: str, what: str) -> str:
    if key == WILDCARD:
        return key
    return canonical_registry(_check_host(key, what))


def _parse_mirrors(value: object) -> dict[str, tuple[Endpoint, ...]]:
    mirrors: dict[str, tuple[Endpoint, ...]] = {}
    canonical_names: set[str] = set()
    for name, entry in _mapping(value, "mirrors").items():
        what = f"mirrors[{name[:100]!r}]"
        if isinstance(entry, dict) and "rewrite" in entry:
            raise _invalid(f"{what}: 'rewrite' is not supported (image names must not be rewritten)")
        body = _mapping(entry, what, _MIRROR_KEYS)
        endpoints = body.get("endpoint", [])
        if endpoints is None:
            endpoints = []
        if not isinstance(endpoints, list):
            raise _invalid(f"{what}.endpoint must be a list of URLs")
        if len(endpoints) > MAX_ENDPOINTS_PER_MIRROR:
            raise _invalid(f"{what}.endpoint lists more than {MAX_ENDPOINTS_PER_MIRROR} endpoints")
        key = _registry_key(name, f"{what} registry")
        parsed = tuple(parse_endpoint(_string(e, f"{what}.endpoint[]")) for e in endpoints)
        if _keep(key, name, mirrors, canonical_names):
            mirrors[key] = parsed
    return mirrors


def _keep(key: str, name: str, entries: Mapping[str, object], canonical_names: set[str]) -> bool:
    """Whether the entry written ``name`` (canonical ``key``) is the one to use (see the module doc)."""
    if name.lower() == key:  # the canonical name always wins over an alias listed before it
        if key in canonical_names:
            raise _invalid(f"{name[:100]!r}: the same registry is listed twice")
        canonical_names.add(key)
        return True
    if key in entries:
        log.debug("registries.yaml: %r is an alias of %r, which is already listed; ignored", name, key)
        return False
    return True


def _parse_configs(value: object) -> dict[str, HostConfig]:
    configs: dict[str, HostConfig] = {}
    canonical_names: set[str] = set()
    for name, entry in _mapping(value, "configs").items():
        what = f"configs[{name[:100]!r}]"
        body = _mapping(entry, what, _CONFIG_KEYS)
        auth = _mapping(body.get("auth"), f"{what}.auth", _AUTH_KEYS)
        tls = _mapping(body.get("tls"), f"{what}.tls", _TLS_KEYS)
        if auth.get("identity_token") and auth.get("identitytoken"):
            raise _invalid(f"{what}.auth: give identity_token once")
        credential = credential_from_fields(
            auth=_string(auth.get("auth"), f"{what}.auth.auth"),
            username=_string(auth.get("username"), f"{what}.auth.username"),
            password=_string(auth.get("password"), f"{what}.auth.password"),
            identity_token=_string(
                auth.get("identity_token") or auth.get("identitytoken"), f"{what}.auth.identity_token"
            ),
            where=f"registries.yaml {what}.auth",
        )
        insecure = tls.get("insecure_skip_verify", False)
        if not isinstance(insecure, bool):
            raise _invalid(f"{what}.tls.insecure_skip_verify must be true or false")
        tls_config = TLSConfig(
            ca_file=_string(tls.get("ca_file"), f"{what}.tls.ca_file") or None,
            cert_file=_string(tls.get("cert_file"), f"{what}.tls.cert_file") or None,
            key_file=_string(tls.get("key_file"), f"{what}.tls.key_file") or None,
            insecure_skip_verify=insecure,
        )
        if tls_config.key_file and not tls_config.cert_file:
            raise _invalid(f"{what}.tls: key_file needs cert_file")
        if name == WILDCARD:
            raise _invalid(f"{what}: configs are per host; '*' is not allowed")
        key = canonical_registry(_check_host(name, f"{what} host"))
        if _keep(key, name, configs, canonical_names):
            configs[key] = HostConfig(credential=credential, tls=tls_config)
    return configs


@dataclass(frozen=True, slots=True)
class RegistryConfig:
    """Mirrors and per-host settings, from a k3s/RKE2 ``registries.yaml``."""

    mirrors: Mapping[str, tuple[Endpoint, ...]] = field(default_factory=dict)
    configs: Mapping[str, HostConfig] = field(default_factory=dict)

    @classmethod
    def from_yaml(cls, text: str) -> RegistryConfig:
        """Parse ``registries.yaml`` strictly; malformed input is a PolicyError (ConfigInvalid)."""
        if len(text) > MAX_CONFIG_BYTES:
            raise LimitError(f"registries.yaml is larger than {MAX_CONFIG_BYTES} bytes")
        try:
            document = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as e:
            raise _invalid(f"not YAML: {e}") from e
        top = _mapping(document, "the document", _TOP_KEYS)
        return cls(mirrors=_parse_mirrors(top.get("mirrors")), configs=_parse_configs(top.get("configs")))

    def endpoints(self, registry: str) -> tuple[Endpoint, ...]:
        """Where to send requests for ``registry``: its mirrors in order, then its upstream."""
        canonical = canonical_registry(registry)
        mirrors = self.mirrors.get(canonical)
        if mirrors is None:
            mirrors = self.mirrors.get(WILDCARD, ())
        upstream = Endpoint(scheme="https", host=api_host(canonical), api_root=API_ROOT, mirror=False)
        out: list[Endpoint] = []
        for endpoint in (*mirrors, upstream):
            same = (endpoint.scheme, endpoint.host, endpoint.api_root)
            if all((e.scheme, e.host, e.api_root) != same for e in out):
                out.append(endpoint)
        return tuple(out)

    def host_config(self, host: str) -> HostConfig | None:
        """The ``configs`` entry for ``host`` (``host[:port]``), if any."""
        return self.configs.get(canonical_registry(host))

    def files(self) -> tuple[str, ...]:
        """Every file this configuration names (CA bundles, client certificates and keys)."""
        out: list[str] = []
        for host_config in self.configs.values():
            tls = host_config.tls
            out.extend(p for p in (tls.ca_file, tls.cert_file, tls.key_file) if p)
        return tuple(out)
