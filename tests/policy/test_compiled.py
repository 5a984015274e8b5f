"""Tests for controller/policy/compiled.py: compiled policies, identity matching, CLI flags."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.errors import InputError, PolicyError, Reason
from controller.policy.compiled import (
    MAX_MATCHED_VALUE_LENGTH,
    CompiledPolicy,
    IdentityMatcher,
    compile_policy,
    policy_from_flags,
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


def _identity(**identity: object) -> IdentityMatcher:
    (matcher,) = compile_policy(policy_doc(identities=[identity])).identities
    return matcher


def test_compile_keeps_every_setting() -> None:
    policy = compile_policy(
        policy_doc(
            annotations={"env": "prod"},
            tlog="optional",
            mode="warn",
            trustRoot="staging",
            signatureRepository="registry.example/sigs/app",
        )
    )
    assert isinstance(policy, CompiledPolicy)
    assert (policy.name, policy.kind, policy.namespace) == ("acme-releases", "ClusterImagePolicy", None)
    assert dict(policy.annotations) == {"env": "prod"}
    assert policy.tlog_required is False
    assert policy.mode == "warn"
    assert policy.trust_root == "staging"
    assert policy.signature_repository == "registry.example/sigs/app"
    assert [glob.normalized for glob in policy.images] == ["ghcr.io/acme/**"]


def test_tlog_required_by_default() -> None:
    assert compile_policy(policy_doc()).tlog_required is True


def test_matches_image_uses_any_glob() -> None:
    policy = compile_policy(policy_doc(images=[{"glob": "ghcr.io/acme/**"}, {"glob": "nginx"}]))
    assert policy.matches_image("ghcr.io/acme/app")
    assert policy.matches_image("docker.io/library/nginx")
    assert policy.matches_image("nginx:1.27")
    assert not policy.matches_image("docker.io/acme/app")


@pytest.mark.parametrize("glob", ["ghcr.io/acme/**", "**"])
def test_matches_image_rejects_a_malformed_name(glob: str) -> None:
    policy = compile_policy(policy_doc(images=[{"glob": glob}]))
    with pytest.raises(InputError) as info:
        policy.matches_image("ghcr.io//app")
    assert info.value.reason == Reason.REFERENCE_INVALID


def test_exact_identity() -> None:
    matcher = _identity(issuer=GITHUB_OAUTH, subject=PHBELITZ)
    assert matcher.matches(signature(PHBELITZ, GITHUB_OAUTH))
    assert not matcher.matches(signature(PHBELITZ, GOOGLE))
    assert not matcher.matches(signature("philipp.belitz@securesystems.de.evil.io", GITHUB_OAUTH))
    assert not matcher.matches(signature(PHBELITZ.upper(), GITHUB_OAUTH))


def test_subject_regexp_is_anchored() -> None:
    matcher = _identity(issuer=GOOGLE, subjectRegExp=r".*@mineral-minutia-820\.iam\.gserviceaccount\.com")
    assert matcher.matches(signature(GOOGLE_SA, GOOGLE))
    # cosign would accept these: its regexps search rather than match.
    assert not matcher.matches(signature(GOOGLE_SA + ".attacker.example", GOOGLE))
    assert not matcher.matches(signature("x" + GOOGLE_SA + "\nother", GOOGLE))


def test_cosign_style_prefix_regexp_does_not_match_longer_subjects() -> None:
    matcher = _identity(issuer=GOOGLE, subjectRegExp="gmail")
    assert not matcher.matches(signature("gmail.attacker.com", GOOGLE))
    assert matcher.matches(signature("gmail", GOOGLE))


def test_issuer_regexp_is_anchored() -> None:
    matcher = _identity(issuerRegExp=r"https://token\.actions\.githubusercontent\.com", subject=WORKFLOW)
    assert matcher.matches(signature(WORKFLOW, ACTIONS))
    assert not matcher.matches(signature(WORKFLOW, ACTIONS + ".evil.example"))
    assert not matcher.matches(signature(WORKFLOW, "https://evil.example/" + ACTIONS))


def test_alternation_is_anchored_as_a_whole() -> None:
    matcher = _identity(
        issuer=ACTIONS, subject=WORKFLOW, claims={"githubWorkflowTrigger": {"regExp": "push|release"}}
    )
    assert matcher.matches(actions_signature(githubWorkflowTrigger="push"))
    assert matcher.matches(actions_signature(githubWorkflowTrigger="release"))
    assert not matcher.matches(actions_signature(githubWorkflowTrigger="pushx"))
    assert not matcher.matches(actions_signature(githubWorkflowTrigger="xrelease"))
    assert not matcher.matches(actions_signature(githubWorkflowTrigger="pull_request_target"))


def test_claims_must_all_match_and_be_present() -> None:
    matcher = _identity(
        issuer=ACTIONS,
        subjectRegExp=r"https://github\.com/acme/.+/\.github/workflows/release\.yml@refs/tags/v.+",
        claims={"githubWorkflowRepository": "acme/app", "runnerEnvironment": "github-hosted"},
    )
    assert matcher.matches(actions_signature())
    assert not matcher.matches(actions_signature(githubWorkflowRepository="acme/app-fork"))
    assert not matcher.matches(actions_signature(runnerEnvironment="self-hosted"))
    without = signature(WORKFLOW, ACTIONS, claims={"githubWorkflowRepository": "acme/app"})
    assert not matcher.matches(without)


def test_overlong_value_never_matches_a_regexp() -> None:
    matcher = _identity(issuer=GOOGLE, subjectRegExp=".*")
    assert matcher.matches(signature("a" * MAX_MATCHED_VALUE_LENGTH, GOOGLE))
    assert not matcher.matches(signature("a" * (MAX_MATCHED_VALUE_LENGTH + 1), GOOGLE))


def test_describe_names_what_is_trusted() -> None:
    matcher = _identity(
        issuer=ACTIONS, subjectRegExp="https://github.com/acme/.+", claims={"buildTrigger": "push"}
    )
    description = matcher.describe()
    assert ACTIONS in description
    assert "https://github.com/acme/.+" in description
    assert "buildTrigger" in description


@pytest.mark.parametrize(
    "identity",
    [
        {"issuer": GOOGLE, "subjectRegExp": "(unclosed"},
        {"issuerRegExp": "[z-a]", "subject": "x"},
        {"issuer": GOOGLE, "subject": "x", "claims": {"buildTrigger": {"regExp": "*push"}}},
    ],
)
def test_bad_regexp_is_policy_invalid(identity: dict[str, object]) -> None:
    with pytest.raises(PolicyError) as info:
        compile_policy(policy_doc(identities=[identity]))
    assert info.value.reason == Reason.POLICY_INVALID


@pytest.mark.parametrize("glob", ["ghcr.io/Acme/**", "ghcr.io/acme/app:latest", "ghcr.io//x", "a b"])
def test_bad_glob_is_policy_invalid(glob: str) -> None:
    with pytest.raises(PolicyError) as info:
        compile_policy(policy_doc(images=[{"glob": glob}]))
    assert info.value.reason == Reason.POLICY_INVALID


@given(st.text(min_size=1, max_size=40), st.text(max_size=5), st.text(max_size=5))
def test_escaped_regexp_matches_only_the_literal(subject: str, prefix: str, suffix: str) -> None:
    matcher = _identity(issuer=GOOGLE, subjectRegExp=re.escape(subject))
    assert matcher.matches(signature(subject, GOOGLE))
    candidate = prefix + subject + suffix
    assert matcher.matches(signature(candidate, GOOGLE)) is (candidate == subject)


# --- cosign-style flags


def test_flags_policy_matches_every_image() -> None:
    policy = policy_from_flags(certificate_identity=PHBELITZ, certificate_oidc_issuer=GITHUB_OAUTH)
    assert policy.kind == "ClusterImagePolicy"
    assert policy.matches_image("ghcr.io/acme/app")
    assert policy.matches_image("registry.example:5000/a/b/c")
    assert policy.tlog_required
    assert policy.trust_root == "public-good"
    (identity,) = policy.identities
    assert identity.matches(signature(PHBELITZ, GITHUB_OAUTH))
    assert not identity.matches(signature(PHBELITZ, GOOGLE))


def test_flags_regexps_are_anchored() -> None:
    policy = policy_from_flags(
        certificate_identity_regexp=r".*@securesystems\.de",
        certificate_oidc_issuer_regexp=r"https://github\.com/.*",
    )
    (identity,) = policy.identities
    assert identity.matches(signature(PHBELITZ, GITHUB_OAUTH))
    assert not identity.matches(signature(PHBELITZ + ".evil.io", GITHUB_OAUTH))


def test_flags_carry_claims_annotations_and_settings() -> None:
    policy = policy_from_flags(
        certificate_identity=WORKFLOW,
        certificate_oidc_issuer=ACTIONS,
        claims={"githubWorkflowRepository": "acme/app"},
        annotations={"env": "prod"},
        tlog_required=False,
        trust_root="staging",
        signature_repository="registry.example/sigs",
    )
    assert dict(policy.annotations) == {"env": "prod"}
    assert (policy.tlog_required, policy.trust_root, policy.signature_repository) == (
        False,
        "staging",
        "registry.example/sigs",
    )
    (identity,) = policy.identities
    assert identity.matches(actions_signature())
    assert not identity.matches(actions_signature(githubWorkflowRepository="eve/app"))


@pytest.mark.parametrize(
    "flags",
    [
        {"certificate_oidc_issuer": GOOGLE},
        {"certificate_identity": GOOGLE_SA},
        {
            "certificate_identity": GOOGLE_SA,
            "certificate_identity_regexp": ".*",
            "certificate_oidc_issuer": GOOGLE,
        },
        {
            "certificate_identity": GOOGLE_SA,
            "certificate_oidc_issuer": GOOGLE,
            "certificate_oidc_issuer_regexp": ".*",
        },
        {"certificate_identity_regexp": "(", "certificate_oidc_issuer": GOOGLE},
        {"certificate_identity": GOOGLE_SA, "certificate_oidc_issuer": GOOGLE, "claims": {"nope": "x"}},
        {"certificate_identity": "", "certificate_oidc_issuer": GOOGLE},
    ],
)
def test_bad_flags_are_policy_invalid(flags: dict[str, object]) -> None:
    with pytest.raises(PolicyError) as info:
        policy_from_flags(**flags)  # type: ignore[arg-type]
    assert info.value.reason == Reason.POLICY_INVALID
