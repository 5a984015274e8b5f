"""Strict JSON for evidence and trust material: one parser, one set of shape checks.

Every JSON document ``verify`` reads goes through :func:`loads`, which is stricter than
:func:`json.loads`:

* the input must be UTF-8 (no BOM, no UTF-16/32 sniffing) and must not contain lone surrogates;
* duplicate object keys are rejected (two parsers must never disagree on which one wins);
* ``NaN``/``Infinity`` and numbers that overflow to infinity are rejected;
* nesting is bounded by :data:`controller.verify.limits.MAX_JSON_DEPTH`.

Shape helpers (:func:`fields`, :func:`get_str` ...) check the parsed value against what we expect
and raise :class:`StrictJsonError`. That error never leaves ``verify``: each caller converts it into
its own reasoned error (``PayloadInvalid``, ``TlogEntryInvalid``, ``TrustRootInvalid`` ...).
"""

from __future__ import annotations

import json
import json.scanner
import math
import re
from collections.abc import Iterable
from typing import Final

from controller.verify.limits import MAX_JSON_DEPTH, MAX_JSON_SAFE_INTEGER

JsonObject = dict[str, object]


class StrictJsonError(ValueError):
    """Raised when a document is not the strict JSON, or not the shape, we expect. Internal."""


# A JSON escape that decodes to a UTF-16 surrogate (U+D800..U+DFFF). Text decoded from UTF-8 holds
# no surrogates, so a lone one can only come from such an escape; a document without one needs no
# string scan. (An escaped backslash followed by "ud8.." also matches: that only costs the scan.)
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")


def _reject_duplicates(pairs: list[tuple[str, object]]) -> JsonObject:
    out: JsonObject = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise StrictJsonError(f"duplicate key {key[:64]!r}")
            seen.add(key)
    return out


def _reject_constant(name: str) -> object:
    raise StrictJsonError(f"non-finite number {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise StrictJsonError("number out of range")
    return value


def _check_string(text: str) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise StrictJsonError("string holds a lone surrogate") from e


def _check_tree(root: object, max_depth: int) -> None:
    """Bound the nesting and reject strings that are not valid Unicode (iteratively)."""
    stack: list[tuple[object, int]] = [(root, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            _check_string(value)
            continue
        if isinstance(value, dict):
            children: Iterable[object] = value.values()
            for key in value:
                _check_string(key)
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > max_depth:
            raise StrictJsonError(f"nesting deeper than {max_depth}")
        stack.extend((child, depth + 1) for child in children)


# One decoder for every document: ``json.loads`` with hooks would build a new one per call.
_DECODER: Final = json.JSONDecoder(
    object_pairs_hook=_reject_duplicates,
    parse_constant=_reject_constant,
    parse_float=_finite_float,
)


_SCAN: Final = json.scanner.make_scanner(_DECODER)  # type: ignore[arg-type]  # typeshed mistypes it
_WHITESPACE: Final = re.compile(r"[ \t\n\r]*")  # JSON's whitespace (json.decoder.WHITESPACE)


def _skip_whitespace(text: str, at: int) -> int:
    if at == len(text) or text[at] not in " \t\n\r":
        return at  # the usual case, without a regex
    match = _WHITESPACE.match(text, at)
    return at if match is None else match.end()


def _openers_at_most(text: str, limit: int) -> bool:
    """True when ``text`` holds at most ``limit`` ``[`` and ``{`` (found with str.find, which is
    much faster than str.count on the few-bracket documents we read)."""
    count = 0
    for opener in "[{":
        at = text.find(opener)
        while at >= 0:
            count += 1
            if count > limit:
                return False
            at = text.find(opener, at + 1)
    return True


def _needs_tree_check(text: str, max_depth: int) -> bool:
    """False when the document can neither nest deeper than ``max_depth`` nor hold a lone surrogate.

    Every level of nesting opens with its own ``[`` or ``{``, so their count bounds the depth (those
    inside strings only make the bound looser); lone surrogates need a ``\\uD8..``-``\\uDF..`` escape,
    so a document without a backslash has none.
    """
    if not _openers_at_most(text, max_depth):
        return True
    return "\\" in text and _SURROGATE_ESCAPE.search(text) is not None


def loads(data: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> object:
    """Parse ``data`` as strict JSON (see the module docstring). Size bounds are the caller's."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise StrictJsonError("not UTF-8") from e
    if text.startswith("\ufeff"):
        raise StrictJsonError("byte order mark")
    try:
        # What JSONDecoder.decode does, without its per-call Python layers: one value between
        # optional whitespace, nothing after it.
        value, end = _SCAN(text, _skip_whitespace(text, 0))
    except StopIteration as e:
        raise StrictJsonError(f"not JSON: expecting a value at {e.value}") from e
    except RecursionError as e:
        raise StrictJsonError("nesting too deep") from e
    except ValueError as e:  # json.JSONDecodeError, int() digit limits, StrictJsonError itself
        if isinstance(e, StrictJsonError):
            raise
        raise StrictJsonError(f"not JSON: {e}") from e
    if _skip_whitespace(text, end) != len(text):
        raise StrictJsonError(f"not JSON: extra data at {end}")
    if _needs_tree_check(text, max_depth):
        _check_tree(value, max_depth)
    return value


def as_object(value: object, what: str) -> JsonObject:
    """``value`` as a JSON object, or :class:`StrictJsonError`."""
    if not isinstance(value, dict):
        raise StrictJsonError(f"{what}: expected an object")
    return value


def fields(
    value: object, what: str, *, required: frozenset[str], optional: frozenset[str] = frozenset()
) -> JsonObject:
    """``value`` as an object holding every ``required`` key and nothing outside ``optional``."""
    if not isinstance(value, dict):
        raise StrictJsonError(f"{what}: expected an object")
    obj: JsonObject = value
    if len(obj) == len(required) and obj.keys() >= required:  # exactly the required keys
        return obj
    missing = required.difference(obj)
    if missing:
        raise StrictJsonError(f"{what}: missing {sorted(missing)}")
    unknown = set(obj).difference(required, optional)
    if unknown:
        raise StrictJsonError(f"{what}: unknown field(s) {sorted(k[:64] for k in unknown)[:5]}")
    return obj


def get_str(obj: JsonObject, key: str, what: str) -> str:
    """``obj[key]`` as a string (the key must be present)."""
    value = obj.get(key)
    if not isinstance(value, str):
        raise StrictJsonError(f"{what}.{key}: expected a string")
    return value


def get_optional_str(obj: JsonObject, key: str, what: str) -> str | None:
    """``obj[key]`` as a string, or None when the key is absent."""
    if key not in obj:
        return None
    return get_str(obj, key, what)


def get_int(obj: JsonObject, key: str, what: str) -> int:
    """``obj[key]`` as a JSON integer in ``[0, 2**53)`` (not a bool, not a float)."""
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise StrictJsonError(f"{what}.{key}: expected an integer")
    if not 0 <= value <= MAX_JSON_SAFE_INTEGER:
        raise StrictJsonError(f"{what}.{key}: integer out of range")
    return value


def get_list(obj: JsonObject, key: str, what: str, *, max_items: int) -> list[object]:
    """``obj[key]`` as a list of at most ``max_items`` items."""
    value = obj.get(key)
    if not isinstance(value, list):
        raise StrictJsonError(f"{what}.{key}: expected a list")
    if len(value) > max_items:
        raise StrictJsonError(f"{what}.{key}: more than {max_items} items")
    return value
