"""JSON encoded the way Go's ``encoding/json.Marshal`` encodes it.

cosign, go-containerregistry and Rekor are Go programs. ``json.Marshal`` writes compact JSON, keeps struct
fields in declaration order, sorts map keys, writes non-ASCII as UTF-8, and escapes ``<``, ``>``, ``&``,
U+2028 and U+2029 (its HTML-safe default). Callers build dicts in struct order and sort map keys
themselves (:func:`sorted_map`), so that this module only has to get the escaping right.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

# JSONValue is recursive; Python's typing needs the string form here.
JSONValue = str | int | bool | None | list["JSONValue"] | dict[str, "JSONValue"]

_GO_HTML_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def go_json(value: JSONValue) -> bytes:
    """Compact JSON with Go's escaping. Key order is the caller's (dicts keep insertion order)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    # The escaped characters can only occur inside JSON strings, so a plain replace is exact.
    for char, escaped in _GO_HTML_ESCAPES.items():
        text = text.replace(char, escaped)
    return text.encode("utf-8")


def sorted_map(value: Mapping[str, JSONValue]) -> dict[str, JSONValue]:
    """A Go ``map[string]...``: keys sorted (byte order, as Go does), nested maps sorted too."""
    return {key: _sorted_value(value[key]) for key in sorted(value, key=lambda k: k.encode("utf-8"))}


def _sorted_value(value: JSONValue) -> JSONValue:
    if isinstance(value, dict):
        return sorted_map(value)
    if isinstance(value, list):
        return [_sorted_value(item) for item in value]
    return value
