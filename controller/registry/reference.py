"""Image references, parsed by the distribution reference grammar and normalised as Docker does.

The grammar (github.com/distribution/reference, ``reference.go``)::

    reference        := name [ ":" tag ] [ "@" digest ]
    name             := [domain "/"] path-component ["/" path-component]*
    domain           := host [":" port-number]
    host             := domain-name | "[" IPv6address "]"
    domain-component := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
    path-component   := alpha-numeric [separator alpha-numeric]*
    alpha-numeric    := /[a-z0-9]+/
    separator        := /[_.]|__|[-]*/
    tag              := /[\\w][\\w.-]{0,127}/

Normalisation (``ParseNormalizedNamed``): the first path component is a registry only when it holds a
``.`` or a ``:`` or is ``localhost``; otherwise the registry is Docker Hub (``docker.io``), and a
one-component Docker Hub path gains ``library/``. A reference with neither tag nor digest gets tag
``latest``. The full normalised name is at most 255 characters.
"""

from __future__ import annotations

import re

from controller.errors import InputError, Reason
from controller.model import Digest, ImageRef

DOCKER_HUB = "docker.io"
"""The canonical name of Docker Hub in an :class:`ImageRef`."""

DOCKER_HUB_API_HOST = "index.docker.io"
"""The host that serves Docker Hub's registry API (as in go-containerregistry and cosign)."""

DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
"""Host names a user may write for Docker Hub; all normalise to :data:`DOCKER_HUB`."""

OFFICIAL_IMAGES_NAMESPACE = "library"
DEFAULT_TAG = "latest"

NAME_TOTAL_LENGTH_MAX = 255
"""distribution's ``NameTotalLengthMax``, checked on the normalised ``registry/repository``."""

MAX_REFERENCE_LENGTH = 1024
"""Longer input cannot be a valid reference (name 255 + tag 128 + sha512 digest 135): refuse early."""

MAX_PORT = 65535

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_RE = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::(?P<port>[0-9]+))?",
    re.ASCII,
)
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*", re.ASCII)
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)


def _invalid(text: str, why: str) -> InputError:
    return InputError(Reason.REFERENCE_INVALID, f"invalid image reference {text[:300]!r}: {why}")


def canonical_registry(host: str) -> str:
    """The canonical form of a registry host: lower case, with Docker Hub's aliases as ``docker.io``."""
    lowered = host.lower()
    return DOCKER_HUB if lowered in DOCKER_HUB_ALIASES else lowered


def api_host(registry: str) -> str:
    """The host that serves the registry API for ``registry``: ``docker.io`` -> ``index.docker.io``."""
    canonical = canonical_registry(registry)
    return DOCKER_HUB_API_HOST if canonical == DOCKER_HUB else canonical


def _split_domain(name: str) -> tuple[str, str]:
    """Split ``name`` into (registry, path) by Docker's rule for the first component."""
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return DOCKER_HUB, name


def parse_reference(text: str) -> ImageRef:
    """Parse and normalise an image reference; anything malformed is an :class:`InputError`.

    ``nginx`` -> ``docker.io/library/nginx:latest``; ``ghcr.io/a/b@sha256:...`` keeps tag None.
    """
    if not isinstance(text, str):
        raise InputError(Reason.REFERENCE_INVALID, f"image reference must be a string, not {type(text)}")
    if not text:
        raise _invalid(text, "empty")
    if len(text) > MAX_REFERENCE_LENGTH:
        raise _invalid(text, f"longer than {MAX_REFERENCE_LENGTH} characters")

    remainder, at, digest_text = text.partition("@")
    digest: Digest | None = None
    if at:
        try:
            digest = Digest.parse(digest_text)
        except InputError as e:
            raise _invalid(text, "digest is not sha256:<64 hex> or sha512:<128 hex>") from e

    tag: str | None = None
    colon = remainder.rfind(":")
    if colon > remainder.rfind("/"):
        tag = remainder[colon + 1 :]
        remainder = remainder[:colon]
        if not _TAG_RE.fullmatch(tag):
            raise _invalid(text, "tag must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")

    domain, path = _split_domain(remainder)
    if domain != DOCKER_HUB:
        match = _DOMAIN_RE.fullmatch(domain)
        if match is None:
            raise _invalid(text, "registry host is not a valid host[:port]")
        port = match.group("port")
        if port is not None and not 0 < int(port) <= MAX_PORT:
            raise _invalid(text, "registry port out of range")
    if not _PATH_RE.fullmatch(path):
        raise _invalid(text, "repository must be lower-case path components separated by '/'")

    registry = canonical_registry(domain)
    if registry == DOCKER_HUB and "/" not in path:
        path = f"{OFFICIAL_IMAGES_NAMESPACE}/{path}"
    if len(registry) + 1 + len(path) > NAME_TOTAL_LENGTH_MAX:
        raise _invalid(text, f"repository name longer than {NAME_TOTAL_LENGTH_MAX} characters")

    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return ImageRef(registry=registry, repository=path, tag=tag, digest=digest)


def check_repository(repository: str) -> str:
    """``repository`` if it is a valid path (``a/b``); else an InputError. Guards URL building."""
    if not _PATH_RE.fullmatch(repository):
        raise InputError(Reason.REFERENCE_INVALID, f"invalid repository {str(repository)[:300]!r}")
    return repository


def check_registry(registry: str) -> str:
    """``registry`` if it is a valid ``host[:port]``; else an InputError. Guards URL building."""
    if not _DOMAIN_RE.fullmatch(registry):
        raise InputError(Reason.REFERENCE_INVALID, f"invalid registry host {registry[:300]!r}")
    return registry


def check_tag(tag: str) -> str:
    """``tag`` if it matches the tag grammar; else an InputError. Guards URL building."""
    if not _TAG_RE.fullmatch(tag):
        raise InputError(Reason.REFERENCE_INVALID, f"invalid tag {str(tag)[:300]!r}")
    return tag


def parse_repository(text: str) -> tuple[str, str]:
    """A repository without tag or digest (cosign's ``COSIGN_REPOSITORY``): ``(registry, repository)``.

    ``ghcr.io/acme/sigs`` -> ``("ghcr.io", "acme/sigs")``; ``acme/sigs`` -> Docker Hub.
    """
    if "@" in text or ":" in text.rpartition("/")[2]:
        raise InputError(Reason.REFERENCE_INVALID, f"a repository takes no tag or digest: {text[:300]!r}")
    ref = parse_reference(text)
    return ref.registry, ref.repository
