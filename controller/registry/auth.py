"""Registry credentials, the keychain of pull secrets, ``WWW-Authenticate`` challenges and the token cache.

* Docker config files (the ``.dockerconfigjson`` of a ``kubernetes.io/dockerconfigjson`` secret, and the
  older ``.dockercfg`` flat map) become a :class:`Keychain`.
* :func:`parse_challenges` reads RFC 7235 challenges (``Bearer realm="...",service="...",scope="..."``).
* :func:`parse_token_response` reads the token endpoint's JSON (distribution's ``token.md``: ``token``
  or ``access_token``, ``expires_in``), and :class:`TokenCache` keeps tokens per
  (host, scope, credential) until they expire.

No I/O here: the HTTP exchanges of the token flow live in :mod:`controller.registry.client`.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

from controller.errors import FetchError, LimitError, PolicyError, Reason
from controller.registry.manifest import reject_duplicate_keys
from controller.registry.reference import canonical_registry

MAX_DOCKER_CONFIG_BYTES = 1024 * 1024
"""A docker config file (Kubernetes caps a Secret at 1 MiB)."""

MAX_CHALLENGE_HEADER_CHARS = 8192
MAX_CHALLENGES = 8

DEFAULT_TOKEN_TTL_SECONDS = 60
"""distribution ``token.md``: ``expires_in`` defaults to 60 seconds."""

MAX_TOKEN_TTL_SECONDS = 3600
"""Never cache a token longer than this, whatever the server says."""

TOKEN_EXPIRY_SLACK_SECONDS = 10
"""Drop a cached token this long before it expires, so a request never races its expiry."""

MAX_CACHED_TOKENS = 1024

_HOST_KEY_RE = re.compile(r"^(?:\[[0-9a-f:]+\]|[a-z0-9*](?:[a-z0-9*.-]*[a-z0-9*])?)(?::[0-9]{1,5})?$")
_TOKEN_CHARS_RE = re.compile(r"^[\x21-\x7e]+$")


def _config_error(detail: str) -> PolicyError:
    return PolicyError(Reason.CONFIG_INVALID, detail)


@dataclass(frozen=True, slots=True)
class Credential:
    """A registry credential: a username and password, or an identity (OAuth2 refresh) token.

    ``repr`` never shows a secret. :attr:`fingerprint` names a credential in cache keys and logs.
    """

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if not self.identity_token and not (self.username and self.password):
            raise _config_error("a credential needs a username and password, or an identity token")
        for name, value in (("username", self.username), ("password", self.password)):
            if "\n" in value or "\r" in value:
                raise _config_error(f"credential {name} holds a line break")
        if ":" in self.username:
            raise _config_error("credential username holds a ':'")

    @property
    def fingerprint(self) -> str:
        """A short, non-reversible identity for this credential (for cache keys)."""
        material = "\x00".join((self.username, self.password, self.identity_token)).encode()
        return hashlib.sha256(material).hexdigest()[:16]

    def basic_header(self) -> str | None:
        """``Basic base64(user:pass)``, or None for a credential with no password."""
        if not (self.username and self.password):
            return None
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def credential_from_fields(
    *, auth: str = "", username: str = "", password: str = "", identity_token: str = "", where: str
) -> Credential | None:
    """Build a credential from docker-config style fields; None when none of them is set.

    ``auth`` (base64 of ``user:password``) wins over ``username``/``password``, as in docker.
    """
    if auth:
        try:
            decoded = base64.b64decode(auth.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as e:
            raise _config_error(f"{where}: 'auth' is not base64 of user:password") from e
        user, colon, secret = decoded.partition(":")
        if not colon:
            raise _config_error(f"{where}: 'auth' does not decode to user:password")
        username, password = user, secret
    if not (username or password or identity_token):
        return None
    if identity_token:
        return Credential(username=username, password=password, identity_token=identity_token)
    if not (username and password):
        raise _config_error(f"{where}: a username needs a password")
    return Credential(username=username, password=password)


def normalize_host_key(key: str, *, where: str) -> str:
    """``https://index.docker.io/v1/`` -> ``docker.io``; ``HOST:5000/v2/`` -> ``host:5000``.

    The scheme and any path are dropped: a credential is keyed by host (a path-scoped docker config key
    therefore applies to its whole host). ``*`` may stand for a whole domain component (kubelet).
    """
    text = key.strip().lower()
    for scheme in ("https://", "http://"):
        if text.startswith(scheme):
            text = text[len(scheme) :]
            break
    host = text.split("/", 1)[0]
    if not _HOST_KEY_RE.match(host):
        raise _config_error(f"{where}: {key[:200]!r} is not a registry host")
    return canonical_registry(host)


def _host_matches(pattern: str, host: str) -> bool:
    """Exact host match, or kubelet's glob match where ``*`` matches within one domain component."""
    if pattern == host:
        return True
    if "*" not in pattern:
        return False
    pattern_name, _, pattern_port = pattern.partition(":")
    host_name, _, host_port = host.partition(":")
    if pattern_port != host_port:
        return False
    pattern_parts = pattern_name.split(".")
    host_parts = host_name.split(".")
    if len(pattern_parts) != len(host_parts):
        return False
    return all(fnmatch.fnmatchcase(h, p) for p, h in zip(pattern_parts, host_parts, strict=True))


def _optional_str(entry: Mapping[str, object], name: str, where: str) -> str:
    value = entry.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _config_error(f"{where}: {name!r} must be a string")
    return value


@dataclass(frozen=True, slots=True)
class Keychain:
    """Credentials by registry host, in order: the first entry that matches a host wins."""

    entries: tuple[tuple[str, Credential], ...] = ()

    @classmethod
    def from_docker_config(cls, data: bytes | str) -> Keychain:
        """Parse a docker ``config.json`` (``{"auths": {...}}``) or a legacy ``.dockercfg`` flat map.

        Entries hold ``auth`` (base64 ``user:password``), or ``username``/``password``, or
        ``identitytoken``; entries with none of them are skipped. Malformed input is a
        :class:`PolicyError` (ConfigInvalid); input over :data:`MAX_DOCKER_CONFIG_BYTES` a LimitError.
        """
        raw = data.encode() if isinstance(data, str) else data
        if len(raw) > MAX_DOCKER_CONFIG_BYTES:
            raise LimitError(f"docker config is larger than {MAX_DOCKER_CONFIG_BYTES} bytes")
        try:
            document = json.loads(raw, object_pairs_hook=reject_duplicate_keys)
        except (ValueError, UnicodeDecodeError) as e:
            raise _config_error(f"docker config is not JSON: {e}") from e
        if not isinstance(document, dict):
            raise _config_error("docker config must be a JSON object")
        auths = document.get("auths", document)
        if not isinstance(auths, dict):
            raise _config_error("docker config 'auths' must be an object")

        exact: list[tuple[str, Credential]] = []
        globbed: list[tuple[str, Credential]] = []
        for key, entry in auths.items():
            where = f"docker config entry {key[:100]!r}"
            if not isinstance(entry, dict):
                raise _config_error(f"{where} must be an object")
            host = normalize_host_key(key, where=where)
            credential = credential_from_fields(
                auth=_optional_str(entry, "auth", where),
                username=_optional_str(entry, "username", where),
                password=_optional_str(entry, "password", where),
                identity_token=_optional_str(entry, "identitytoken", where),
                where=where,
            )
            if credential is None:
                continue
            (globbed if "*" in host else exact).append((host, credential))
        return cls(tuple(exact + globbed))

    @staticmethod
    def merge(*keychains: Keychain) -> Keychain:
        """One keychain holding every entry; an earlier keychain wins over a later one."""
        return Keychain(tuple(entry for keychain in keychains for entry in keychain.entries))

    def lookup(self, host: str) -> Credential | None:
        """The credential for ``host`` (``host[:port]``; Docker Hub aliases match each other)."""
        wanted = canonical_registry(host)
        for pattern, credential in self.entries:
            if _host_matches(pattern, wanted):
                return credential
        return None

    def __bool__(self) -> bool:
        return bool(self.entries)


# --- WWW-Authenticate challenges (RFC 7235 section 4.1)

_TCHARS = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_SCHEME_RE = re.compile(rf"\s*({_TCHARS})")
_PARAM_RE = re.compile(rf"\s*({_TCHARS})\s*=\s*(?:\"((?:[^\"\\]|\\.)*)\"|({_TCHARS}))\s*,?", re.DOTALL)
_TOKEN68_RE = re.compile(r"\s*[A-Za-z0-9\-._~+/]+=*\s*(?:,|$)")


@dataclass(frozen=True, slots=True)
class Challenge:
    """One authentication challenge: the scheme (lower case) and its parameters (keys lower case)."""

    scheme: str
    params: Mapping[str, str]


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a ``WWW-Authenticate`` header into challenges; unparseable trailing text is dropped."""
    text = header[:MAX_CHALLENGE_HEADER_CHARS]
    out: list[Challenge] = []
    pos = 0
    while pos < len(text) and len(out) < MAX_CHALLENGES:
        while pos < len(text) and text[pos] in " ,\t":
            pos += 1
        scheme_match = _SCHEME_RE.match(text, pos)
        if scheme_match is None:
            break
        pos = scheme_match.end()
        params: dict[str, str] = {}
        while pos < len(text):
            param = _PARAM_RE.match(text, pos)
            if param is None:
                token68 = _TOKEN68_RE.match(text, pos)
                if token68 is not None and not params:
                    pos = token68.end()
                break
            key = param.group(1).lower()
            value = param.group(2)
            value = re.sub(r"\\(.)", r"\1", value) if value is not None else param.group(3)
            params.setdefault(key, value)
            pos = param.end()
        out.append(Challenge(scheme_match.group(1).lower(), params))
    return out


# --- tokens


@dataclass(frozen=True, slots=True)
class Token:
    """A bearer token and how long it may be cached."""

    value: str = field(repr=False)
    ttl_seconds: float


def parse_token_response(body: bytes) -> Token:
    """Read a token endpoint answer: ``token`` or ``access_token``, and ``expires_in``.

    A malformed answer is a :class:`FetchError` (RegistryAuthFailed): without a token we cannot pull.
    """
    try:
        document = json.loads(body, object_pairs_hook=reject_duplicate_keys)
    except (ValueError, UnicodeDecodeError) as e:
        raise FetchError(Reason.REGISTRY_AUTH_FAILED, "token endpoint answered with invalid JSON") from e
    if not isinstance(document, dict):
        raise FetchError(Reason.REGISTRY_AUTH_FAILED, "token endpoint answer is not a JSON object")
    value = document.get("token") or document.get("access_token")
    if not isinstance(value, str) or not _TOKEN_CHARS_RE.match(value):
        raise FetchError(Reason.REGISTRY_AUTH_FAILED, "token endpoint answer holds no usable token")
    expires_in = document.get("expires_in", DEFAULT_TOKEN_TTL_SECONDS)
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in <= 0:
        expires_in = DEFAULT_TOKEN_TTL_SECONDS
    ttl = min(float(expires_in), MAX_TOKEN_TTL_SECONDS) - TOKEN_EXPIRY_SLACK_SECONDS
    return Token(value=value, ttl_seconds=max(ttl, 0.0))


TokenKey = tuple[str, str, str]
"""(host, scope, credential fingerprint or ``""`` for anonymous)."""


class TokenCache:
    """Bearer tokens per (host, scope, credential), each until its expiry. Thread-safe, bounded (LRU)."""

    def __init__(self, max_entries: int = MAX_CACHED_TOKENS) -> None:
        self._max_entries = max_entries
        self._entries: OrderedDict[TokenKey, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: TokenKey) -> str | None:
        """The cached token for ``key``, or None when absent or expired."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            value, expires_at = entry
            if time.monotonic() >= expires_at:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return value

    def put(self, key: TokenKey, token: Token) -> None:
        """Cache ``token`` for ``key`` (a token with no time to live is not cached)."""
        if token.ttl_seconds <= 0:
            return
        with self._lock:
            self._entries[key] = (token.value, time.monotonic() + token.ttl_seconds)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def discard(self, key: TokenKey) -> None:
        """Forget the token for ``key`` (after the registry rejected it)."""
        with self._lock:
            self._entries.pop(key, None)
