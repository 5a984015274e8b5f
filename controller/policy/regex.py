"""Policy regular expressions with Go's syntax and meaning, matched in linear time (RE2).

cosign and policy-controller compile ``issuerRegExp``, ``subjectRegExp`` and claim patterns with
Go's ``regexp`` package, which is RE2. We use RE2 itself (the ``google-re2`` bindings), so that:

- a pattern written for cosign means the same here: ``\\z`` is the end of text, ``\\d``, ``\\w``, ``\\s``
  and ``\\b`` are ASCII only, ``.`` does not match a newline unless ``(?s)``, ``$`` matches only at the
  end of the text unless ``(?m)``, text and pattern are UTF-8;
- syntax Go does not have is refused, not reinterpreted: backreferences, look-around, ``\\Z``,
  ``(?x)``, ``(?#...)``, possessive quantifiers, and ``\\C`` (which RE2 has but Go does not);
- no pattern can backtrack: matching is linear in the text, so a tenant's pattern cannot hold the
  interpreter (and the GIL) for seconds.

Matching is always anchored at both ends (a full match), unlike cosign, which searches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import re2

# RE2's memory budget for one compiled pattern (its default). A pattern that needs more does not
# compile, and so is PolicyInvalid, instead of degrading silently.
MAX_PROGRAM_BYTES: Final = 8 * 1024 * 1024


class RegexpError(ValueError):
    """Raised by :func:`compile_regexp` for a pattern that Go's ``regexp`` would not accept."""


def _options() -> re2.Options:
    options = re2.Options()
    options.encoding = re2.Options.Encoding.UTF8
    options.posix_syntax = False  # Perl-like syntax, as Go's regexp.Compile (syntax.Perl)
    options.longest_match = False  # leftmost-first, as Go's Compile (not CompilePOSIX)
    options.case_sensitive = True  # (?i) turns it off per pattern, as in Go
    options.dot_nl = False  # (?s) turns it on, as in Go
    options.never_nl = False
    options.literal = False
    options.log_errors = False  # errors are returned to us, not printed
    options.max_mem = MAX_PROGRAM_BYTES
    return options


@dataclass(frozen=True, slots=True)
class Regexp:
    """A compiled RE2 pattern that only ever full-matches. Build it with :func:`compile_regexp`."""

    pattern: str
    _compiled: object = field(repr=False, compare=False, hash=False)

    def fullmatch(self, text: str) -> bool:
        """Whether the whole of ``text`` matches. Linear in ``len(text)``; never raises.

        Text that is not valid Unicode (a lone surrogate) matches nothing.
        """
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return self._compiled.fullmatch(data) is not None  # type: ignore[attr-defined]


def compile_regexp(pattern: str) -> Regexp:
    """Compile ``pattern`` with Go's RE2 syntax; raises :class:`RegexpError` if Go would refuse it."""
    _refuse_non_go_escapes(pattern)
    try:
        compiled = re2.compile(pattern, _options())
    except re2.error as e:
        raise RegexpError(_message(e)) from e
    except UnicodeEncodeError as e:
        raise RegexpError("the pattern is not valid Unicode") from e
    return Regexp(pattern, compiled)


def _refuse_non_go_escapes(pattern: str) -> None:
    r"""Refuse ``\C`` (any byte): RE2 accepts it, Go's regexp does not, and it can split a character."""
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\":
            escaped = pattern[i + 1 : i + 2]
            if escaped == "C":
                raise RegexpError(r"invalid escape sequence: \C")
            if escaped == "Q":  # \Q...\E is literal text, up to \E or the end
                end = pattern.find("\\E", i + 2)
                i = len(pattern) if end < 0 else end + 2
                continue
            i += 2
        else:
            i += 1


def _message(error: Exception) -> str:
    detail = error.args[0] if error.args else ""
    if isinstance(detail, bytes):
        detail = detail.decode("utf-8", "replace")
    return str(detail)[:256] or type(error).__name__
