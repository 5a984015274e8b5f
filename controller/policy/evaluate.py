"""Evaluating one policy against the signatures of one image.

The engine verifies each candidate signature under the policy's trust root and tlog setting, then
hands us what verified and what failed. A policy passes when **any** verified signature was made by
**any** of its identities and carries **all** of its required annotations, and every one of its
``attestations:`` entries is met (:mod:`controller.policy.attestations`).

Only a *signature* (``kind == "signature"``) satisfies ``identities``; an attestation, whoever signed
it, never does. A key-signed artifact satisfies only a key identity with that key, and a keyless one
only a keyless identity.

When it does not pass, the reason is, in this order:

0. ``AttestationMissing``/``AttestationInvalid``/``AttestationConditionFailed``: the signature
   requirement is met, but an ``attestations:`` entry is not (the detail names the entry and condition);
1. ``AnnotationMismatch``: some verified signature has a trusted identity but lacks an annotation;
2. ``IdentityMismatch``: signatures verified, but none by a trusted identity (the detail lists who
   signed and whom the policy trusts);
3. otherwise nothing verified: the most informative failure, chosen by :data:`FAILURE_PRIORITY`
   (see :func:`most_informative`); ``SignatureNotFound`` when there are no failures at all.

In ``warn`` mode a policy that does not pass still passes (``passed=True``); its ``reason`` and
``detail`` stay those of the failure, and the failure text is added to ``warnings``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from controller.errors import Reason
from controller.model import Failure, VerifiedSignature
from controller.policy.attestations import check_attestations, signer_of
from controller.policy.compiled import CompiledPolicy
from controller.policy.crd import Mode
from controller.policy.deadline import deadline_note  # issue 8

MAX_DETAIL_LENGTH: Final = 1024
MAX_SIGNERS_LISTED: Final = 5

# Non-transient failure reasons, most informative first. Configuration problems come first because
# they explain why nothing could verify; then evidence that names another artifact or was tampered
# with; then a broken chain of trust; then malformed material. A reason not listed here ranks after
# every listed one; transient failures rank after every non-transient one; then NotKeylessSignature
# (key-based signatures exist, but they are not keyless evidence); SignatureNotFound comes last.
FAILURE_PRIORITY: Final[tuple[Reason, ...]] = (
    Reason.TRUST_ROOT_UNKNOWN,
    Reason.TRUST_ROOT_INVALID,
    Reason.POLICY_INVALID,
    Reason.CONFIG_INVALID,
    Reason.DIGEST_MISMATCH,
    Reason.PAYLOAD_DIGEST_MISMATCH,
    Reason.TLOG_BODY_MISMATCH,
    Reason.SIGNATURE_INVALID,
    Reason.CERTIFICATE_CHAIN_INVALID,
    Reason.CERTIFICATE_EXPIRED,
    Reason.SCT_INVALID,
    Reason.SCT_MISSING,
    Reason.TLOG_ENTRY_INVALID,
    Reason.TLOG_ENTRY_MISSING,
    Reason.CERTIFICATE_INVALID,
    Reason.ISSUER_MISSING,
    Reason.BUNDLE_INVALID,
    Reason.PAYLOAD_INVALID,
    Reason.IDENTITY_MISMATCH,
    Reason.ANNOTATION_MISMATCH,
    Reason.MANIFEST_INVALID,
    Reason.LIMIT_EXCEEDED,
)


@dataclass(frozen=True, slots=True)
class PolicyResult:
    """The outcome of one policy for one image.

    ``matched`` holds the signatures that satisfied an identity and the annotations. ``transient``
    is True when the reason is a failure to fetch (worth a retry). ``reason`` is ``Verified`` when
    the policy passed on its merits; in warn mode a failing policy has ``passed=True`` and keeps its
    failure reason.
    """

    policy: str
    passed: bool
    reason: Reason
    detail: str
    matched: tuple[VerifiedSignature, ...] = ()
    warnings: tuple[str, ...] = ()
    mode: Mode = "enforce"
    transient: bool = False


def evaluate_policy(
    policy: CompiledPolicy,
    verified: Sequence[VerifiedSignature],
    failures: Sequence[Failure],
    image: str,
) -> PolicyResult:
    """Decide ``policy`` for ``image`` from the signatures that verified and those that failed.

    As defence in depth, a verified signature without a tlog entry does not count under a policy
    that requires the tlog, nor does one verified under a different (named) trust root.
    """
    usable: list[VerifiedSignature] = []
    failures = list(failures)
    for sig in verified:
        if policy.tlog_required and sig.log_index is None:
            failures.append(
                Failure(
                    Reason.TLOG_ENTRY_MISSING,
                    f"{_signer(sig)} has no tlog entry; the policy requires one",
                    image,
                )
            )
        elif sig.trust_root and sig.trust_root != policy.trust_root:
            failures.append(
                Failure(
                    Reason.CERTIFICATE_CHAIN_INVALID,
                    f"{_signer(sig)} verified under trust root {sig.trust_root!r}, "
                    f"the policy requires {policy.trust_root!r}",
                    image,
                )
            )
        else:
            usable.append(sig)

    signatures = [sig for sig in usable if sig.kind == "signature"]
    by_identity = [sig for sig in signatures if any(identity.matches(sig) for identity in policy.identities)]
    matched = tuple(sig for sig in by_identity if _has_annotations(sig, policy))
    attested: tuple[VerifiedSignature, ...] = ()
    if matched and policy.attestations:
        attested, missing = check_attestations(policy.label, policy.attestations, usable, failures)
        if missing is not None:
            return _failed(policy, image, missing.reason, _bound(missing.detail), transient=missing.transient)
    if matched:
        signers = ", ".join(_signer(sig) for sig in matched[:MAX_SIGNERS_LISTED])
        return PolicyResult(
            policy=policy.label,
            passed=True,
            reason=Reason.VERIFIED,
            detail=_bound(f"signed by {signers}" + _attested(attested)),
            matched=matched,
            warnings=_unique(w for sig in (*matched, *attested) for w in sig.warnings),
            mode=policy.mode,
        )

    transient = False
    if by_identity:
        reason = Reason.ANNOTATION_MISMATCH
        detail = _annotation_detail(by_identity, policy)
    elif signatures:
        reason = Reason.IDENTITY_MISMATCH
        detail = _identity_detail(signatures, policy)
    elif failures:
        chosen = most_informative(failures)
        reason, transient = chosen.reason, chosen.transient
        detail = chosen.detail
        if len(failures) > 1:
            detail += f" (and {len(failures) - 1} other failure(s))"
    elif usable:
        reason = Reason.SIGNATURE_NOT_FOUND
        detail = (
            f"only attestations verified ({_attestation_list(usable)}); an attestation is not a signature"
        )
    else:
        reason = Reason.SIGNATURE_NOT_FOUND
        detail = "no signatures found"
    return _failed(policy, image, reason, _bound(detail), transient=transient)


def _failed(
    policy: CompiledPolicy, image: str, reason: Reason, detail: str, *, transient: bool
) -> PolicyResult:
    """A policy that does not pass: denied, or, in warn mode, passed with a warning."""
    if policy.mode == "warn":
        return PolicyResult(
            policy=policy.label,
            passed=True,
            reason=reason,
            detail=detail,
            warnings=(
                _bound(f"{policy.label} (warn mode): {reason}: {image}: {detail}")
                + deadline_note(policy),  # issue 8: " (enforced from <enforceAfter>)", never cut off
            ),
            mode=policy.mode,
            transient=transient,
        )
    return PolicyResult(
        policy=policy.label,
        passed=False,
        reason=reason,
        detail=detail,
        mode=policy.mode,
        transient=transient,
    )


def most_informative(failures: Sequence[Failure]) -> Failure:
    """The failure that best explains why nothing verified (see :data:`FAILURE_PRIORITY`).

    Ties go to the earliest failure. ``failures`` must not be empty.
    """
    return min(enumerate(failures), key=lambda item: (*_rank(item[1]), item[0]))[1]


def _rank(failure: Failure) -> tuple[int, int]:
    if failure.reason == Reason.SIGNATURE_NOT_FOUND:
        return (3, 0)
    if failure.reason == Reason.NOT_KEYLESS:
        return (2, 0)
    if failure.transient:
        return (1, 0)
    if failure.reason in FAILURE_PRIORITY:
        return (0, FAILURE_PRIORITY.index(failure.reason))
    return (0, len(FAILURE_PRIORITY))


def _has_annotations(sig: VerifiedSignature, policy: CompiledPolicy) -> bool:
    return all(sig.annotations.get(key) == value for key, value in policy.annotations.items())


def _signer(sig: VerifiedSignature) -> str:
    return signer_of(sig)


def _attested(attested: tuple[VerifiedSignature, ...]) -> str:
    return f"; attested {_attestation_list(attested)}" if attested else ""


def _attestation_list(sigs: Sequence[VerifiedSignature]) -> str:
    types = _unique(sig.predicate_type or sig.kind for sig in sigs)
    shown = ", ".join(types[:MAX_SIGNERS_LISTED])
    return shown + (
        f", and {len(types) - MAX_SIGNERS_LISTED} more" if len(types) > MAX_SIGNERS_LISTED else ""
    )


def _identity_detail(sigs: Sequence[VerifiedSignature], policy: CompiledPolicy) -> str:
    seen = _unique(_signer(sig) for sig in sigs)
    shown = "; ".join(seen[:MAX_SIGNERS_LISTED])
    if len(seen) > MAX_SIGNERS_LISTED:
        shown += f"; and {len(seen) - MAX_SIGNERS_LISTED} more"
    wanted = " | ".join(identity.describe() for identity in policy.identities[:MAX_SIGNERS_LISTED])
    if len(policy.identities) > MAX_SIGNERS_LISTED:
        wanted += f" | and {len(policy.identities) - MAX_SIGNERS_LISTED} more"
    return f"signed by {shown}; {policy.label} trusts {wanted}"


def _annotation_detail(sigs: Sequence[VerifiedSignature], policy: CompiledPolicy) -> str:
    sig = sigs[0]
    problems = []
    for key, value in sorted(policy.annotations.items()):
        actual = sig.annotations.get(key)
        if actual is None:
            problems.append(f"{key} missing (want {value!r})")
        elif actual != value:
            problems.append(f"{key}={actual!r} (want {value!r})")
    return f"{_signer(sig)} is trusted but its annotations differ: {', '.join(problems)}"


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    """The items without repeats, in first-seen order."""
    return tuple(dict.fromkeys(items))


def _bound(text: str) -> str:
    return text if len(text) <= MAX_DETAIL_LENGTH else text[: MAX_DETAIL_LENGTH - 1] + "…"
