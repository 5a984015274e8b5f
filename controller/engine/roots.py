"""The engine's two inputs from outside the policy set: the embedded trust roots, and the clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from importlib import resources
from typing import Final

from controller.verify import TrustRoot

BUILTIN_TRUST_ROOTS: Final = {
    "public-good": "trusted_root.public-good.json",
    "staging": "trusted_root.staging.json",
}

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The wall clock, in UTC. The engine reads time only through its injected clock."""
    return datetime.now(UTC)


def builtin_trust_roots() -> dict[str, TrustRoot]:
    """The embedded Sigstore roots shipped as package data: ``public-good`` and ``staging``."""
    roots: dict[str, TrustRoot] = {}
    data = resources.files("controller").joinpath("data")
    for name, filename in BUILTIN_TRUST_ROOTS.items():
        roots[name] = TrustRoot.from_json(data.joinpath(filename).read_bytes(), name)
    return roots
