"""A policy's ``attestations:``: compiled requirements, and checking them against verified evidence.

Each entry names an in-toto predicate type that must be attested for the image. It is met when some
verified artifact of kind ``attestation``

1. has exactly that predicate type (else ``AttestationMissing``; ``AttestationInvalid`` when an
   attestation failed verification, since that may be the one we wanted; and when some evidence could
   not be fetched, e.g. the ``.att`` tag hit a limit or its registry failed, that fetch failure's own
   reason, marked transient: what was never read is not known to be missing);
2. was signed by one of the entry's identities, which default to the policy's (else
   ``AttestationInvalid``): an attestation is judged by who signed it, exactly as a signature is;
3. has a statement that parses and whose subject names the image's digest (verify/ checked the
   subject already; we check it again, cheaply, because the statement is parsed here anyway; else
   ``AttestationInvalid``);
4. passes every condition (else ``AttestationConditionFailed``, naming the condition's message).

Every entry must be met. The work is bounded: at most :data:`MAX_CANDIDATES` artifacts are examined per
entry, each statement is parsed once per evaluation (and a small statement once per process while it
stays among the :data:`PARSED_STATEMENTS` most recently used: a verified statement's bytes do not change,
so an evaluation after a policy edit, or under another policy, does not parse it again), and all conditions of one policy evaluation share
one cost budget of :data:`POLICY_COST_LIMIT` (each condition is bounded by ``cel.COST_LIMIT`` too).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from cel import Context

from controller.errors import Reason
from controller.model import Failure, VerifiedSignature
from controller.policy.cel import (
    COST_LIMIT,
    CelCondition,
    CelError,
    ConditionOutcome,
    Statement,
    context_for,
    parse_statement,
    roots_of,
)

MAX_CANDIDATES: Final = 8  # attestations of one predicate type examined per entry
POLICY_COST_LIMIT: Final = 4 * COST_LIMIT  # every condition of one policy, for one image
PARSED_STATEMENTS: Final = 128  # parsed statements kept, most recently used (each at most the next)
MAX_KEPT_STATEMENT_BYTES: Final = 64 * 1024  # a bigger statement is parsed each time, never kept


class SignerMatcher(Protocol):
    """A compiled identity: keyless (:class:`~controller.policy.compiled.IdentityMatcher`) or a key."""

    def matches(self, sig: VerifiedSignature) -> bool: ...
    def describe(self) -> str: ...


@dataclass(frozen=True, slots=True)
class CompiledAttestation:
    """One ``attestations[]`` entry, ready to check."""

    name: str
    predicate_type: str
    identities: tuple[SignerMatcher, ...]
    conditions: tuple[CelCondition, ...] = ()


@dataclass(frozen=True, slots=True)
class AttestationFailure:
    """Why an entry is not met: the reason code and a detail naming the entry (and the condition)."""

    reason: Reason
    detail: str
    transient: bool = False  # the evidence could not be fetched: worth a retry, never cached


@dataclass(slots=True)
class _Budget:
    """The cost left for the conditions of one policy evaluation, and the statements parsed so far."""

    left: int = POLICY_COST_LIMIT
    parsed: dict[int, Statement | CelError] = field(default_factory=dict)

    def statement(self, sig: VerifiedSignature) -> Statement | CelError:
        key = id(sig)
        if key not in self.parsed:
            data = sig.statement
            self.parsed[key] = _parsed(data) if len(data) <= MAX_KEPT_STATEMENT_BYTES else _parse(data)
        return self.parsed[key]


def _parse(data: bytes) -> Statement | CelError:
    try:
        return parse_statement(data)
    except CelError as e:
        return e


@functools.lru_cache(maxsize=PARSED_STATEMENTS)
def _parsed(data: bytes) -> Statement | CelError:
    """:func:`_parse`, kept by the statement's bytes (the key is the bytes, compared in full on a hit).

    Shared between evaluations and threads: a :class:`Statement` is only read (conditions convert it
    into the engine's own values; the subject check reads it), never changed."""
    return _parse(data)


def check_attestations(
    label: str,
    required: Sequence[CompiledAttestation],
    usable: Sequence[VerifiedSignature],
    failures: Sequence[Failure],
) -> tuple[tuple[VerifiedSignature, ...], AttestationFailure | None]:
    """Check every entry of ``required`` against ``usable`` (already filtered for tlog and trust root).

    ``failures`` are the image's evidence failures: candidates that failed verification, and lookups
    that could not be fetched (``transient``). Returns the attestations that met the entries, and the
    first entry's failure, if any. Never raises.
    """
    budget = _Budget()
    met: list[VerifiedSignature] = []
    unread = next((f for f in failures if f.transient), None)
    invalid = sum(1 for f in failures if f.reason == Reason.ATTESTATION_INVALID)
    for entry in required:
        sig, failure = _check_one(label, entry, usable, _Absent(invalid, unread), budget)
        if failure is not None:
            return tuple(met), failure
        if sig is not None:
            met.append(sig)
    return tuple(met), None


@dataclass(frozen=True, slots=True)
class _Absent:
    """What explains an entry with no verified attestation of its type, besides "not there"."""

    invalid: int  # attestations that failed verification (``AttestationInvalid``)
    unread: Failure | None  # the first lookup that could not be fetched (transient), if any

    def failure(self, where: str) -> AttestationFailure:
        if self.unread is not None:
            # It may be in what could not be read: the fetch failure's reason, transient, never "missing".
            return AttestationFailure(
                self.unread.reason, f"{where}: not verified: {self.unread.detail}", transient=True
            )
        if self.invalid:
            return AttestationFailure(
                Reason.ATTESTATION_INVALID,
                f"{where}: none verified; {self.invalid} attestation(s) failed verification",
            )
        return AttestationFailure(Reason.ATTESTATION_MISSING, f"{where}: not found")


def _check_one(
    label: str,
    entry: CompiledAttestation,
    usable: Sequence[VerifiedSignature],
    absent: _Absent,
    budget: _Budget,
) -> tuple[VerifiedSignature | None, AttestationFailure | None]:
    where = f"{label}: attestation {entry.name} ({entry.predicate_type})"
    of_type = [s for s in usable if s.kind == "attestation" and s.predicate_type == entry.predicate_type]
    if not of_type:
        return None, absent.failure(where)
    signed = [s for s in of_type if any(identity.matches(s) for identity in entry.identities)][
        :MAX_CANDIDATES
    ]
    if not signed:
        signers = "; ".join(dict.fromkeys(signer_of(s) for s in of_type[:MAX_CANDIDATES]))
        trusted = " | ".join(identity.describe() for identity in entry.identities[:5])
        return None, AttestationFailure(
            Reason.ATTESTATION_INVALID, f"{where}: signed by {signers}; the entry trusts {trusted}"
        )
    first: AttestationFailure | None = None
    for sig in signed:
        failure = _check_statement(where, entry, sig, budget)
        if failure is None:
            return sig, None
        first = first or failure
    return None, first


def _check_statement(
    where: str, entry: CompiledAttestation, sig: VerifiedSignature, budget: _Budget
) -> AttestationFailure | None:
    statement = budget.statement(sig)
    if isinstance(statement, CelError):
        return AttestationFailure(Reason.ATTESTATION_INVALID, f"{where}: {statement}")
    if not _names_digest(statement, sig):
        return AttestationFailure(
            Reason.ATTESTATION_INVALID, f"{where}: the statement's subject does not name {sig.digest}"
        )
    context: Context | None = None
    for condition in entry.conditions:
        cost = condition.estimate(statement)
        if cost > COST_LIMIT:  # refused by evaluate() without converting the statement
            outcome = condition.evaluate(statement, None)
        elif cost > budget.left:
            outcome = ConditionOutcome(
                False, f"the policy's conditions exceed their total cost limit of {POLICY_COST_LIMIT}"
            )
        else:
            budget.left -= cost
            if context is None:
                try:
                    context = context_for(statement, roots_of(entry.conditions))
                except Exception as e:  # noqa: BLE001 - a value the engine cannot take fails the conditions
                    return AttestationFailure(
                        Reason.ATTESTATION_CONDITION_FAILED,
                        f"{where}: statement not usable: {type(e).__name__}",
                    )
            outcome = condition.evaluate(statement, context)
        if not outcome.passed:
            return AttestationFailure(
                Reason.ATTESTATION_CONDITION_FAILED,
                f"{where}: condition {condition.message!r} failed: {outcome.problem}",
            )
    return None


def _names_digest(statement: Statement, sig: VerifiedSignature) -> bool:
    subjects = statement.variables.get("subject")
    if not isinstance(subjects, list):
        return False
    for subject in subjects:
        digests = subject.get("digest") if isinstance(subject, dict) else None
        if isinstance(digests, dict) and digests.get(sig.digest.algorithm) == sig.digest.hex:
            return True
    return False


def signer_of(sig: VerifiedSignature) -> str:
    """Who made ``sig``: ``subject (issuer)`` for keyless, ``key sha256:…`` for key-signed."""
    if sig.key_id:
        return f"key {sig.key_id[:19]}…"
    return f"{sig.subject} ({sig.issuer})"
