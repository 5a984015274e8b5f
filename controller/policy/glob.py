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

Matching does not use a backtracking regex: ``**a**a**a**b`` against a long name takes seconds in
:mod:`re`. A glob is compiled once to a small program and run as a set of states over the name, so a
match costs at most ``len(name) * len(glob)`` steps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from controller.errors import InputError, Reason

MAX_GLOB_LENGTH: Final = 512
MAX_IMAGE_NAME_LENGTH: Final = 255  # distribution's NameTotalLengthMax, registry included
MAX_REFERENCE_LENGTH: Final = 1024  # a whole reference (name, tag and digest) given to matching

DOCKER_HUB: Final = "docker.io"
_DOCKER_HUB_ALIASES: Final = frozenset({"index.docker.io", "registry-1.docker.io"})
MATCH_ALL: Final = "**"

_REGISTRY_GLOB_RE: Final = re.compile(r"[a-z0-9.\-:*?]+")
_PATH_GLOB_RE: Final = re.compile(r"[a-z0-9._\-*?]+")

# program instructions
_LITERAL: Final = 0
_ONE: Final = 1  # ?
_STAR: Final = 2  # *
_DOUBLE_STAR: Final = 3  # **

_Instruction = tuple[int, str]


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


def _compile(glob: str) -> tuple[_Instruction, ...]:
    program: list[_Instruction] = []
    i = 0
    while i < len(glob):
        char = glob[i]
        if char == "*":
            run = len(glob[i:]) - len(glob[i:].lstrip("*"))
            program.append((_DOUBLE_STAR, "") if run >= 2 else (_STAR, ""))
            i += run
            continue
        program.append((_ONE, "") if char == "?" else (_LITERAL, char))
        i += 1
    return tuple(program)


def _closure(program: tuple[_Instruction, ...], states: set[int]) -> set[int]:
    """Add the states reachable without consuming a character (a star may match nothing)."""
    pending = list(states)
    while pending:
        state = pending.pop()
        if state < len(program) and program[state][0] in (_STAR, _DOUBLE_STAR) and state + 1 not in states:
            states.add(state + 1)
            pending.append(state + 1)
    return states


def _run(program: tuple[_Instruction, ...], text: str) -> bool:
    """Whole-string match of ``program`` against ``text``, in ``O(len(text) * len(program))``."""
    end = len(program)
    states = _closure(program, {0})
    for char in text:
        following: set[int] = set()
        for state in states:
            if state == end:
                continue
            op, literal = program[state]
            if op == _LITERAL:
                if char == literal:
                    following.add(state + 1)
            elif op == _ONE:
                if char != "/":
                    following.add(state + 1)
            elif op == _STAR:
                if char != "/":
                    following.add(state)
            else:
                following.add(state)
        if not following:
            return False
        states = _closure(program, following)
    return end in states


@dataclass(frozen=True, slots=True)
class ImageGlob:
    """A compiled image glob. ``glob`` is as written; ``normalized`` has the registry made explicit."""

    glob: str
    normalized: str
    _program: tuple[_Instruction, ...] = field(repr=False, compare=False)

    @classmethod
    def compile(cls, glob: str) -> ImageGlob:
        """Normalise and compile ``glob``; raises :class:`GlobError` when it is malformed."""
        normalized = normalize_glob(glob)
        return cls(glob, normalized, _compile(normalized))

    def matches(self, image: str) -> bool:
        """Whether the image (a reference or a name; normalised first) matches this glob, whole."""
        return self.matches_normalized(normalize_image_name(image))

    def matches_normalized(self, name: str) -> bool:
        """Whether an already normalised ``registry/repository`` name matches this glob, whole."""
        return _run(self._program, name)
