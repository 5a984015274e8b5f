"""Image globs: which images a policy is about.

A glob is matched, whole, against a normalised image name ``registry/repository`` (no tag, no digest),
e.g. ``docker.io/library/nginx``:

* ``*`` matches any run of characters inside one path segment (never ``/``);
* ``**`` matches any run of characters, across segments;
* ``?`` matches one character other than ``/``;
* everything else is literal.

A glob without a registry part is normalised as Docker normalises a reference: ``nginx`` becomes
``docker.io/library/nginx`` and ``acme/*`` becomes ``docker.io/acme/*``. A first segment is a registry
when it holds a ``.`` or a ``:`` or is ``localhost``, or when it holds ``**`` (which already spans any
registry). ``**`` alone matches every image.

Matching is RE2's (:mod:`controller.policy.regex`): linear in the name, in C, whatever the glob. The
Python state-set matcher this replaced was linear too, but ``*a*a*a...`` of 512 characters against a
255-character name cost it 20 to 30 ms of the webhook's event loop, per glob and image. A glob may hold
at most :data:`MAX_WILDCARDS_PER_GLOB` wildcards (runs of ``*``, and ``?``): RE2's work on a name grows
with them (``*a`` followed by 62 ``?`` is its worst, about 1 ms a name). A policy's globs are compiled
together, once, into a :class:`~controller.policy.globset.GlobSet`; see there for what a namespace's
ImagePolicies may cost in all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from controller.errors import InputError, Reason
from controller.policy.regex import Regexp, RegexpError, compile_regexp

MAX_GLOB_LENGTH: Final = 512
MAX_IMAGE_NAME_LENGTH: Final = 255  # distribution's NameTotalLengthMax, registry included
MAX_REFERENCE_LENGTH: Final = 1024  # a whole reference (name, tag and digest) given to matching

DOCKER_HUB: Final = "docker.io"
_DOCKER_HUB_ALIASES: Final = frozenset({"index.docker.io", "registry-1.docker.io"})
MATCH_ALL: Final = "**"

# wildcards (runs of '*', and '?') in one glob; the CRD schema says the same (hack/gen-crds.py)
MAX_WILDCARDS_PER_GLOB: Final = 64

_REGISTRY_GLOB_RE: Final = re.compile(r"[a-z0-9.\-:*?]+")
_PATH_GLOB_RE: Final = re.compile(r"[a-z0-9._\-*?]+")


class GlobError(ValueError):
    """Raised when a glob is malformed; the policy compiler turns it into a PolicyError."""


def _split_registry(name: str) -> tuple[str | None, str]:
    """Split ``registry/path`` the way Docker does; ``None`` when there is no registry part."""
    first, sep, rest = name.partition("/")
    if not sep:
        return None, name
    if "." in first or ":" in first or first == "localhost" or "**" in first:
        return first.lower(), rest
    return None, name


def _normalise(registry: str | None, path: str) -> str:
    registry = DOCKER_HUB if registry is None or registry in _DOCKER_HUB_ALIASES else registry
    if registry == DOCKER_HUB and "/" not in path and "**" not in path:
        path = f"library/{path}"
    return f"{registry}/{path}"


def normalize_glob(glob: str) -> str:
    """The glob with its registry part made explicit (``acme/*`` -> ``docker.io/acme/*``).

    Raises :class:`GlobError` for an empty or over-long glob, a character that cannot occur in an
    image name (upper case outside the registry, ``@``, tags, whitespace ...), or an empty segment.
    """
    if not glob:
        raise GlobError("a glob must not be empty")
    if len(glob) > MAX_GLOB_LENGTH:
        raise GlobError(f"a glob may be at most {MAX_GLOB_LENGTH} characters long")
    if glob == MATCH_ALL:
        return MATCH_ALL
    registry, path = _split_registry(glob)
    if registry is not None and not _REGISTRY_GLOB_RE.fullmatch(registry):
        raise GlobError(f"registry part {registry!r:.80} holds a character no registry name can")
    for segment in path.split("/"):
        if not segment:
            raise GlobError(f"{glob!r:.80} has an empty path segment")
        if not _PATH_GLOB_RE.fullmatch(segment):
            raise GlobError(
                f"path segment {segment!r:.80} holds a character no repository name can "
                "(lower case letters, digits, '.', '_', '-' and the wildcards '*', '**', '?'; "
                "no tag or digest)"
            )
    if registry is not None and "**" in registry:
        # `**/app` or `**.example.com/**`: the glob already spans the registry; nothing to add.
        return f"{registry}/{path}"
    return _normalise(registry, path)


def normalize_image_name(reference: str) -> str:
    """``registry/repository`` for an image reference or name, tag and digest removed.

    Idempotent on names that are already normalised (``ImageRef.name``). Raises :class:`InputError`
    (``ReferenceInvalid``) for an empty, over-long or malformed name, so that a bad name never slips
    past a namespaced policy by failing to match it.
    """
    if not reference or len(reference) > MAX_REFERENCE_LENGTH or any(c.isspace() for c in reference):
        raise InputError(Reason.REFERENCE_INVALID, f"not an image reference: {reference!r:.80}")
    name = reference.partition("@")[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name = name[:colon]
    registry, path = _split_registry(name)
    normalised = _normalise(registry, path)
    if len(normalised) > MAX_IMAGE_NAME_LENGTH or "" in path.split("/") or not path:
        raise InputError(Reason.REFERENCE_INVALID, f"not an image name: {reference!r:.80}")
    return normalised


def count_wildcards(normalized: str) -> int:
    """How many wildcards (runs of ``*``, and ``?``) a glob holds: what matching it costs grows with."""
    runs = sum(1 for i, c in enumerate(normalized) if c == "*" and (i == 0 or normalized[i - 1] != "*"))
    return runs + normalized.count("?")


def glob_pattern(normalized: str) -> str:
    """The RE2 pattern of one normalised glob (``ImageGlob.normalized``), matched whole."""
    if normalized == MATCH_ALL:
        return ".*"
    out: list[str] = []
    i = 0
    while i < len(normalized):
        char = normalized[i]
        if char == "*":
            run = len(normalized) - i - len(normalized[i:].lstrip("*"))
            out.append(".*" if run >= 2 else "[^/]*")
            i += run
            continue
        if char == "?":
            out.append("[^/]")
        elif char.isascii() and (char.isalnum() or char == "/"):
            out.append(char)
        else:
            out.append("\\" + char if char.isascii() and not char.isspace() else f"\\x{{{ord(char):x}}}")
        i += 1
    return "".join(out)


def compile_pattern(pattern: str) -> Regexp:
    """Compile a pattern of :func:`glob_pattern` (or an alternation of them); raises :class:`GlobError`
    when it does not fit RE2's memory budget."""
    try:
        return compile_regexp(f"(?s:{pattern})")
    except RegexpError as e:
        raise GlobError(f"the glob is too complex to compile: {e}") from e


@dataclass(frozen=True, slots=True)
class ImageGlob:
    """A parsed image glob. ``glob`` is as written; ``normalized`` has the registry made explicit.

    Policies and exceptions match their globs together through a
    :class:`~controller.policy.globset.GlobSet` compiled with them; :meth:`matches` compiles this one
    glob alone, at its first use (for the CLI and one-off checks), and keeps the program.
    """

    glob: str
    normalized: str
    wildcards: int = field(compare=False)
    _program: list[Regexp] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def compile(cls, glob: str) -> ImageGlob:
        """Normalise and check ``glob``; raises :class:`GlobError` when it is malformed or holds more
        than :data:`MAX_WILDCARDS_PER_GLOB` wildcards."""
        normalized = normalize_glob(glob)
        wildcards = count_wildcards(normalized)
        if wildcards > MAX_WILDCARDS_PER_GLOB:
            raise GlobError(
                f"the glob holds {wildcards} wildcards (runs of '*', and '?'); "
                f"at most {MAX_WILDCARDS_PER_GLOB} are allowed"
            )
        return cls(glob, normalized, wildcards)

    def matches(self, image: str) -> bool:
        """Whether the image (a reference or a name; normalised first) matches this glob, whole."""
        return self.matches_normalized(normalize_image_name(image))

    def matches_normalized(self, name: str) -> bool:
        """Whether an already normalised ``registry/repository`` name matches this glob, whole."""
        if not self._program:
            self._program.append(compile_pattern(glob_pattern(self.normalized)))
        return self._program[0].fullmatch(name)
