"""A set of image globs matched at once, by one RE2 program (ImagePolicyException images).

:class:`~controller.policy.glob.ImageGlob` runs each glob as a set of states in Python: linear, but a
glob like ``*a*a*a...`` of 512 characters against a 255-character name costs about 20 ms. An
ImagePolicyException holds up to 64 globs, tenants write them, and grants are computed on the
webhook's event loop, so a namespace's exceptions are matched by one RE2 program instead: the same
language (``*`` any run without ``/``, ``**`` any run, ``?`` one character but ``/``, the rest
literal), linear in the name, in C, whatever the globs. A differential test holds the two to the same
answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from controller.policy.glob import MATCH_ALL, ImageGlob
from controller.policy.regex import Regexp, RegexpError, compile_regexp


class GlobSetError(ValueError):
    """Raised when the globs together do not fit RE2's memory budget (the set is then invalid)."""


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


@dataclass(frozen=True, slots=True)
class GlobSet:
    """Globs matched together; build with :func:`compile_glob_set`."""

    globs: tuple[ImageGlob, ...]
    _program: Regexp | None = field(repr=False, compare=False, default=None)

    def matches_normalized(self, name: str) -> bool:
        """Whether any glob matches the normalised ``registry/repository`` name, whole."""
        return self._program is not None and self._program.fullmatch(name)


def compile_glob_set(globs: Sequence[ImageGlob]) -> GlobSet:
    """One RE2 program for ``globs`` (none: a set that matches nothing); raises :class:`GlobSetError`."""
    if not globs:
        return GlobSet(())
    pattern = "|".join(f"(?:{glob_pattern(g.normalized)})" for g in globs)
    try:
        program = compile_regexp(f"(?s:{pattern})")
    except RegexpError as e:
        raise GlobSetError(str(e)) from e
    return GlobSet(tuple(globs), program)


def wildcards(glob: ImageGlob) -> int:
    """How many wildcards (runs of ``*``, and ``?``) ``glob`` holds: what its matching costs grow with."""
    text = glob.normalized
    runs = sum(1 for i, c in enumerate(text) if c == "*" and (i == 0 or text[i - 1] != "*"))
    return runs + text.count("?")
