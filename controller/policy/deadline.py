"""Timestamps in policies, and "warn with a deadline": ``mode: warn`` with ``enforceAfter``.

A warn-mode policy with ``spec.enforceAfter: 2027-01-15T00:00:00Z`` warns before that instant (and the
warning says when enforcement starts) and enforces from it on, with no edit. The switch is a pure
function of the decision time: :func:`policy_at` picks the policy's warn form or its enforcing form
(built once, when the policy is compiled), so evaluation memoised by policy identity can never serve
a warning past the deadline; :func:`next_change` is the instant a verdict computed now stops being
true, which the engine uses as the verdict's last moment.

Timestamps are RFC 3339 with an explicit offset (``Z`` or ``+hh:mm``), as Kubernetes writes
``metav1.Time``; a YAML loader may already have turned one into an aware ``datetime``, which is
accepted too. Everything is compared in UTC; nothing here reads the clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from controller.policy.compiled import CompiledPolicy

MAX_TIMESTAMP_LENGTH: Final = 64
_RFC3339: Final = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})[Tt](?P<time>[0-9]{2}:[0-9]{2}:[0-9]{2})"
    r"(?P<fraction>\.[0-9]{1,9})?(?P<offset>[Zz]|[+-][0-9]{2}:[0-9]{2})",
    re.ASCII,
)


class TimestampError(ValueError):
    """A value that is not an RFC 3339 timestamp with an offset (the message says why)."""


def parse_timestamp(value: object) -> datetime:
    """An RFC 3339 timestamp (``2027-01-15T00:00:00Z``) or an aware ``datetime``, as UTC.

    Raises :class:`TimestampError` for anything else: no offset, a naive ``datetime``, an impossible
    date or time, a leap second, text over :data:`MAX_TIMESTAMP_LENGTH` characters.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise TimestampError("must carry a UTC offset (e.g. 2027-01-15T00:00:00Z)")
        return value.astimezone(UTC)
    if not isinstance(value, str):
        raise TimestampError(f"must be an RFC 3339 timestamp string, not {_type_name(value)}")
    if len(value) > MAX_TIMESTAMP_LENGTH:
        raise TimestampError(f"is {len(value)} characters long; at most {MAX_TIMESTAMP_LENGTH} are allowed")
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise TimestampError(
            f"{value!r:.80} is not an RFC 3339 timestamp with an offset (e.g. 2027-01-15T00:00:00Z)"
        )
    fraction = (match["fraction"] or "")[1:7].ljust(6, "0") if match["fraction"] else ""
    offset = "+00:00" if match["offset"] in ("Z", "z") else match["offset"]
    text = f"{match['date']}T{match['time']}{'.' + fraction if fraction else ''}{offset}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as e:
        raise TimestampError(f"{value!r:.80} is not a valid date and time: {e}") from e
    return parsed.astimezone(UTC)


def format_timestamp(moment: datetime) -> str:
    """``2027-01-15T00:00:00Z``: UTC, whole seconds (what warnings and status show)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def enforcing_at(policy: CompiledPolicy, now: datetime) -> bool:
    """Whether ``policy`` enforces at ``now``: ``mode: enforce``, or warn past its ``enforceAfter``."""
    if policy.mode == "enforce":
        return True
    return policy.enforce_after is not None and now >= policy.enforce_after


def policy_at(policy: CompiledPolicy, now: datetime) -> CompiledPolicy:
    """The form of ``policy`` that holds at ``now``: itself, or past its deadline its enforcing form.

    The enforcing form is one object per compiled policy (``CompiledPolicy.enforced``), so memoised
    results keyed by policy identity stay apart for the two phases.
    """
    if policy.mode == "warn" and policy.enforced is not None and enforcing_at(policy, now):
        return policy.enforced
    return policy


def next_change(policies: Iterable[object], now: datetime) -> datetime | None:
    """The earliest ``enforceAfter`` still ahead of ``now`` among the warn-mode ``policies``, or None.

    A verdict decided at ``now`` from these policies holds until then at most. Other objects
    (invalid policies) have no deadline and are skipped.
    """
    ahead = [
        deadline
        for p in policies
        if getattr(p, "mode", None) == "warn"
        and isinstance(deadline := getattr(p, "enforce_after", None), datetime)
        and deadline > now
    ]
    return min(ahead, default=None)


def deadline_note(policy: CompiledPolicy) -> str:
    """`` (enforced from 2027-01-15T00:00:00Z)`` for a warn-mode policy with a deadline; else ``""``."""
    if policy.mode != "warn" or policy.enforce_after is None:
        return ""
    return f" (enforced from {format_timestamp(policy.enforce_after)})"


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__
