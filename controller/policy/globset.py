"""A set of image globs matched at once, by a few RE2 programs (a policy's images, an exception's).

Globs are tenants' text (an ImagePolicy's or an ImagePolicyException's ``spec.images``), and matching
runs on the webhook's event loop, so what a set may cost is bounded by construction:

* one glob holds at most :data:`~controller.policy.glob.MAX_WILDCARDS_PER_GLOB` (64) wildcards and
  512 characters (:mod:`controller.policy.glob`);
* the globs are compiled, once, into programs of at most :data:`MAX_PROGRAM_WILDCARDS` wildcards and
  :data:`MAX_PROGRAM_CHARACTERS` pattern characters each. One program for all the globs is fastest
  while RE2's DFA fits its memory, but 64 globs ``*aaaa...`` of 512 characters overflow it and RE2
  falls back to its NFA: 20 to 40 ms a name. Programs of 2,048 characters stay in the DFA (about
  1 ms for those 64 globs); wildcards cost about 20 µs each a name at worst (``*a???...``), however
  they are grouped.

The language is that of :class:`~controller.policy.glob.ImageGlob` (``*`` any run without ``/``,
``**`` any run, ``?`` one character but ``/``, the rest literal), whole-name, linear in the name; a
differential test holds the two to the same answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from controller.policy.glob import GlobError, ImageGlob, compile_pattern, count_wildcards, glob_pattern
from controller.policy.regex import Regexp

MAX_PROGRAM_WILDCARDS: Final = 64
MAX_PROGRAM_CHARACTERS: Final = 2048

__all__ = [
    "MAX_PROGRAM_CHARACTERS",
    "MAX_PROGRAM_WILDCARDS",
    "GlobSet",
    "GlobSetError",
    "compile_glob_set",
    "compile_once",
    "glob_pattern",
    "wildcards",
]


class GlobSetError(ValueError):
    """Raised when the globs together do not fit RE2's memory budget (the set is then invalid)."""


@dataclass(frozen=True, slots=True)
class GlobSet:
    """Globs matched together; build with :func:`compile_glob_set`."""

    globs: tuple[ImageGlob, ...]
    _programs: tuple[Regexp, ...] = field(repr=False, compare=False, default=())

    @property
    def programs(self) -> int:
        """How many RE2 programs a match may run (one per group of globs)."""
        return len(self._programs)

    def matches_normalized(self, name: str) -> bool:
        """Whether any glob matches the normalised ``registry/repository`` name, whole."""
        return any(program.fullmatch(name) for program in self._programs)


def compile_glob_set(globs: Sequence[ImageGlob]) -> GlobSet:
    """The programs for ``globs`` (none: a set that matches nothing); raises :class:`GlobSetError`.

    Globs are grouped in order, a new program starting where the next glob would take the current one
    past :data:`MAX_PROGRAM_WILDCARDS` or :data:`MAX_PROGRAM_CHARACTERS`.
    """
    groups: list[list[str]] = []
    group_wildcards = group_characters = 0
    for glob in globs:
        pattern = glob_pattern(glob.normalized)
        if (
            not groups
            or group_wildcards + glob.wildcards > MAX_PROGRAM_WILDCARDS
            or group_characters + len(pattern) > MAX_PROGRAM_CHARACTERS
        ):
            groups.append([])
            group_wildcards = group_characters = 0
        groups[-1].append(pattern)
        group_wildcards += glob.wildcards
        group_characters += len(pattern)
    try:
        programs = tuple(compile_pattern("|".join(f"(?:{p})" for p in group)) for group in groups)
    except GlobError as e:
        raise GlobSetError(str(e)) from e
    return GlobSet(tuple(globs), programs)


def wildcards(glob: ImageGlob) -> int:
    """How many wildcards (runs of ``*``, and ``?``) ``glob`` holds: what its matching costs grow with."""
    return count_wildcards(glob.normalized)


def compile_once(globs: Sequence[ImageGlob], memo: list[GlobSet]) -> GlobSet:
    """The set of ``globs``, compiled into ``memo`` (a policy's own field) at the first call, then kept.

    :class:`~controller.policy.policyset.PolicySet` makes that first call when it is built (on a
    policy event, never on a review). Raises :class:`GlobSetError`.
    """
    if not memo:
        memo.append(compile_glob_set(globs))
    return memo[0]
