"""Tests for controller/policy/evaluate.py: one policy, one image's signatures, one result."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.errors import Reason
from controller.model import Failure, VerifiedSignature
from controller.policy.compiled import CompiledPolicy, compile_policy
from controller.policy.evaluate import (
    FAILURE_PRIORITY,
    MAX_DETAIL_LENGTH,
    PolicyResult,
    evaluate_policy,
    most_informative,
)
from tests.policy._builders import (
    ACTIONS,
    GITHUB_OAUTH,
    GOOGLE,
    GOOGLE_SA,
    PHBELITZ,
    WORKFLOW,
    actions_signature,
    policy_doc,
    signature,
)

IMAGE = "ghcr.io/acme/app@sha256:" + "31dc72a1" + "0" * 56


def _policy(**spec: object) -> CompiledPolicy:
    return compile_policy(policy_doc(**spec))


def _failure(reason: Reason, *, transient: bool = False) -> Failure:
    return Failure(reason, f"{reason} happened", IMAGE, transient=transient)


def _evaluate(
    policy: CompiledPolicy, verified: list[VerifiedSignature], failures: list[Failure] | None = None
) -> PolicyResult:
    return evaluate_policy(policy, verified, failures or [], IMAGE)


def test_passes_when_a_verified_signature_has_a_trusted_identity() -> None:
    trusted = signature(PHBELITZ, GITHUB_OAUTH)
    other = signature(GOOGLE_SA, GOOGLE)
    result = _evaluate(_policy(), [other, trusted], [_failure(Reason.NOT_KEYLESS)])
    assert result.passed
    assert result.reason == Reason.VERIFIED
    assert result.matched == (trusted,)
    assert result.policy == "ClusterImagePolicy acme-releases"
    assert result.mode == "enforce"
    assert result.warnings == ()
    assert not result.transient


def test_any_identity_suffices() -> None:
    policy = _policy(
        identities=[
            {"issuer": GOOGLE, "subject": GOOGLE_SA},
            {
                "issuer": ACTIONS,
                "subjectRegExp": r"https://github\.com/acme/.+",
                "claims": {"githubWorkflowTrigger": "push"},
            },
        ]
    )
    assert _evaluate(policy, [actions_signature()]).passed
    assert _evaluate(policy, [signature(GOOGLE_SA, GOOGLE)]).passed
    result = _evaluate(policy, [actions_signature(githubWorkflowTrigger="workflow_dispatch")])
    assert not result.passed
    assert result.reason == Reason.IDENTITY_MISMATCH


def test_identity_mismatch_when_verified_but_untrusted() -> None:
    result = _evaluate(_policy(), [signature(GOOGLE_SA, GOOGLE), signature(PHBELITZ, GOOGLE)])
    assert not result.passed
    assert result.reason == Reason.IDENTITY_MISMATCH
    assert result.matched == ()
    assert GOOGLE_SA in result.detail  # the detail lists who did sign


def test_identity_mismatch_outranks_failures_of_other_signatures() -> None:
    result = _evaluate(_policy(), [signature(GOOGLE_SA, GOOGLE)], [_failure(Reason.SIGNATURE_INVALID)])
    assert result.reason == Reason.IDENTITY_MISMATCH


def test_identity_mismatch_detail_is_bounded() -> None:
    many = [signature(f"user{i}-{'x' * 200}@example.com", GOOGLE) for i in range(50)]
    identities = [{"issuer": GOOGLE, "subject": f"trusted{i}-{'y' * 200}@acme.com"} for i in range(50)]
    result = _evaluate(_policy(identities=identities), many)
    assert result.reason == Reason.IDENTITY_MISMATCH
    assert len(result.detail) <= MAX_DETAIL_LENGTH


def test_annotations_are_all_required() -> None:
    policy = _policy(
        identities=[{"issuer": GOOGLE, "subject": GOOGLE_SA}], annotations={"key1": "value1", "env": "prod"}
    )
    full = signature(GOOGLE_SA, GOOGLE, annotations={"key1": "value1", "env": "prod", "extra": "ok"})
    partial = signature(GOOGLE_SA, GOOGLE, annotations={"key1": "value1"})
    wrong = signature(GOOGLE_SA, GOOGLE, annotations={"key1": "value1", "env": "dev"})
    assert _evaluate(policy, [partial, full]).matched == (full,)
    for sig in (partial, wrong):
        result = _evaluate(policy, [sig])
        assert not result.passed
        assert result.reason == Reason.ANNOTATION_MISMATCH


def test_annotation_mismatch_outranks_identity_mismatch() -> None:
    policy = _policy(annotations={"env": "prod"})
    result = _evaluate(policy, [signature(GOOGLE_SA, GOOGLE), signature(PHBELITZ, GITHUB_OAUTH)])
    assert result.reason == Reason.ANNOTATION_MISMATCH


def test_annotations_on_an_untrusted_signature_do_not_help() -> None:
    policy = _policy(annotations={"env": "prod"})
    result = _evaluate(
        policy,
        [signature(GOOGLE_SA, GOOGLE, annotations={"env": "prod"}), signature(PHBELITZ, GITHUB_OAUTH)],
    )
    assert not result.passed


def test_no_evidence_at_all_is_signature_not_found() -> None:
    result = _evaluate(_policy(), [])
    assert not result.passed
    assert result.reason == Reason.SIGNATURE_NOT_FOUND


@pytest.mark.parametrize(
    ("failures", "expected"),
    [
        (
            [_failure(Reason.NOT_KEYLESS), _failure(Reason.CERTIFICATE_CHAIN_INVALID)],
            Reason.CERTIFICATE_CHAIN_INVALID,
        ),
        (
            [_failure(Reason.REGISTRY_UNAVAILABLE, transient=True), _failure(Reason.SCT_MISSING)],
            Reason.SCT_MISSING,
        ),
        (
            [_failure(Reason.NOT_KEYLESS), _failure(Reason.REGISTRY_UNAVAILABLE, transient=True)],
            Reason.REGISTRY_UNAVAILABLE,
        ),
        ([_failure(Reason.SIGNATURE_NOT_FOUND), _failure(Reason.NOT_KEYLESS)], Reason.NOT_KEYLESS),
        (
            [_failure(Reason.SIGNATURE_NOT_FOUND), _failure(Reason.LIMIT_EXCEEDED, transient=True)],
            Reason.LIMIT_EXCEEDED,
        ),
        ([_failure(Reason.TLOG_ENTRY_MISSING), _failure(Reason.DIGEST_MISMATCH)], Reason.DIGEST_MISMATCH),
        (
            [_failure(Reason.SIGNATURE_INVALID), _failure(Reason.TRUST_ROOT_UNKNOWN)],
            Reason.TRUST_ROOT_UNKNOWN,
        ),
        (
            [_failure(Reason.PAYLOAD_INVALID), _failure(Reason.PAYLOAD_DIGEST_MISMATCH)],
            Reason.PAYLOAD_DIGEST_MISMATCH,
        ),
        ([_failure(Reason.NOT_KEYLESS)], Reason.NOT_KEYLESS),
        ([_failure(Reason.INTERNAL_ERROR), _failure(Reason.NOT_KEYLESS)], Reason.INTERNAL_ERROR),
    ],
)
def test_most_informative_failure_is_reported(failures: list[Failure], expected: Reason) -> None:
    result = _evaluate(_policy(), [], failures)
    assert not result.passed
    assert result.reason == expected
    assert result.transient == (expected in (Reason.REGISTRY_UNAVAILABLE, Reason.LIMIT_EXCEEDED))


def test_ties_go_to_the_first_failure() -> None:
    first = Failure(Reason.SIGNATURE_INVALID, "layer 0", IMAGE)
    second = Failure(Reason.SIGNATURE_INVALID, "layer 1", IMAGE)
    assert most_informative([first, second]) is first


_reasons = st.sampled_from(list(Reason))
_failures = st.lists(
    st.builds(lambda r, t: _failure(r, transient=t), _reasons, st.booleans()), min_size=1, max_size=8
)


@given(_failures)
def test_not_keyless_is_chosen_only_when_nothing_better_exists(failures: list[Failure]) -> None:
    chosen = most_informative(failures)
    assert chosen in failures
    if chosen.reason in (Reason.NOT_KEYLESS, Reason.SIGNATURE_NOT_FOUND):
        assert all(f.reason in (Reason.NOT_KEYLESS, Reason.SIGNATURE_NOT_FOUND) for f in failures)
    if chosen.transient:
        assert all(
            f.transient or f.reason in (Reason.NOT_KEYLESS, Reason.SIGNATURE_NOT_FOUND) for f in failures
        )
    listed = [f for f in failures if not f.transient and f.reason in FAILURE_PRIORITY]
    if listed:
        assert chosen.reason == min(listed, key=lambda f: FAILURE_PRIORITY.index(f.reason)).reason


def test_warn_mode_passes_with_the_failure_as_a_warning() -> None:
    result = _evaluate(_policy(mode="warn"), [signature(GOOGLE_SA, GOOGLE)])
    assert result.passed
    assert result.mode == "warn"
    assert result.reason == Reason.IDENTITY_MISMATCH
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith("ClusterImagePolicy acme-releases")
    assert result.matched == ()


def test_warn_mode_with_no_evidence() -> None:
    result = _evaluate(_policy(mode="warn"), [], [_failure(Reason.REGISTRY_UNAVAILABLE, transient=True)])
    assert result.passed
    assert result.reason == Reason.REGISTRY_UNAVAILABLE
    assert result.warnings


def test_warn_mode_that_passes_has_no_failure_warning() -> None:
    result = _evaluate(_policy(mode="warn"), [signature()])
    assert result.passed
    assert result.reason == Reason.VERIFIED
    assert result.warnings == ()


def test_tlog_less_signature_warnings_are_carried_when_the_tlog_is_optional() -> None:
    note = "no transparency-log entry: the signing time is not proven"
    sig = signature(tlog=False, warnings=(note,))
    result = _evaluate(_policy(tlog="optional"), [sig, signature(tlog=False, warnings=(note,))])
    assert result.passed
    assert result.warnings == (note,)


def test_tlog_less_signature_does_not_count_when_the_tlog_is_required() -> None:
    result = _evaluate(_policy(), [signature(tlog=False, warnings=("no tlog",))])
    assert not result.passed
    assert result.reason == Reason.TLOG_ENTRY_MISSING


def test_signature_verified_under_another_trust_root_does_not_count() -> None:
    result = _evaluate(_policy(), [signature(trust_root="staging")])
    assert not result.passed
    assert result.reason == Reason.CERTIFICATE_CHAIN_INVALID
    assert _evaluate(_policy(trustRoot="staging"), [signature(trust_root="staging")]).passed
    assert _evaluate(_policy(), [signature(trust_root="public-good")]).passed


def test_github_actions_policy_end_to_end() -> None:
    policy = _policy(
        identities=[
            {
                "issuer": ACTIONS,
                "subjectRegExp": r"https://github\.com/acme/app/\.github/workflows/release\.yml@refs/tags/v.+",
                "claims": {
                    "githubWorkflowRepository": "acme/app",
                    "githubWorkflowTrigger": {"regExp": "push|release"},
                },
            }
        ]
    )
    assert _evaluate(policy, [actions_signature()]).matched[0].subject == WORKFLOW
    branch = signature(
        WORKFLOW.replace("refs/tags/v1.2.3", "refs/heads/main"), ACTIONS, claims=actions_signature().claims
    )
    assert _evaluate(policy, [branch]).reason == Reason.IDENTITY_MISMATCH


# --- the decision rule as a property: passed iff some signature matches an identity and the annotations

_subjects = st.sampled_from([PHBELITZ, GOOGLE_SA, "release@acme.com"])
_issuers = st.sampled_from([GITHUB_OAUTH, GOOGLE])
_annotations = st.dictionaries(
    st.sampled_from(["env", "key1"]), st.sampled_from(["prod", "value1"]), max_size=2
)
_sigs = st.lists(
    st.builds(lambda s, i, a: signature(s, i, annotations=a), _subjects, _issuers, _annotations), max_size=4
)


@given(_sigs, _annotations, st.lists(st.builds(_failure, _reasons), max_size=3))
def test_decision_rule(
    sigs: list[VerifiedSignature], required: dict[str, str], failures: list[Failure]
) -> None:
    policy = _policy(
        identities=[
            {"issuer": GITHUB_OAUTH, "subject": PHBELITZ},
            {"issuer": GOOGLE, "subjectRegExp": r".*\.iam\.gserviceaccount\.com"},
        ],
        annotations=required or None,
    )
    result = _evaluate(policy, sigs, failures)
    trusted = [s for s in sigs if (s.issuer, s.subject) in {(GITHUB_OAUTH, PHBELITZ), (GOOGLE, GOOGLE_SA)}]
    expected = [s for s in trusted if all(s.annotations.get(k) == v for k, v in required.items())]
    assert result.passed is bool(expected)
    assert list(result.matched) == expected
    if not expected:
        if trusted:
            assert result.reason == Reason.ANNOTATION_MISMATCH
        elif sigs:
            assert result.reason == Reason.IDENTITY_MISMATCH
        elif not failures:
            assert result.reason == Reason.SIGNATURE_NOT_FOUND
        else:
            assert result.reason == most_informative(failures).reason
