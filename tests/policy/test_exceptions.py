"""ImagePolicyException: compiled strictly, granted only in its namespace, until its expiry, never
past ``exceptions: forbidden``; adversarial cases from a namespace user's side."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.errors import PolicyError, Reason
from controller.model import ImageVerdict
from controller.policy import PolicySet, compile_policy
from controller.policy.exceptions import (
    CREATED_BY_ANNOTATION,
    MAX_EXCEPTIONS_PER_NAMESPACE,
    MAX_WILDCARDS_PER_EXCEPTION,
    MAX_WILDCARDS_PER_NAMESPACE,
    ExceptionSet,
    apply_exceptions,
    compile_exception,
    creator_of,
    forbidden_in,
)

CREATED = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
EXPIRES = "2026-12-03T10:00:00Z"
EXPIRY = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
UNSIGNED = "registry.example/team/app@sha256:" + "b" * 64


def _exception(namespace: str = "team-a", name: str = "incident-42", **spec: object) -> dict[str, object]:
    body: dict[str, object] = {"images": [{"glob": "registry.example/team/**"}], "expires": EXPIRES}
    body["reason"] = "INC-42: the signer is down"
    body.update(spec)
    return {
        "apiVersion": "imprimatur.dev/v1alpha1",
        "kind": "ImagePolicyException",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": "2026-12-01T10:00:00Z"},
        "spec": body,
    }


def _denied(image: str = UNSIGNED) -> ImageVerdict:
    return ImageVerdict(image, False, Reason.SIGNATURE_NOT_FOUND, "no signatures found")


def _cluster_policy(name: str = "apps", **spec: object) -> dict[str, object]:
    return {
        "apiVersion": "imprimatur.dev/v1alpha1",
        "kind": "ClusterImagePolicy",
        "metadata": {"name": name},
        "spec": {
            "images": [{"glob": "registry.example/**"}],
            "identities": [{"issuer": "https://issuer.example", "subject": "ci@example.com"}],
            **spec,
        },
    }


def _grant(
    exceptions: ExceptionSet,
    *,
    namespace: str | None = "team-a",
    labels: dict[str, str] | None = None,
    now: datetime = CREATED + timedelta(hours=1),
    policies: PolicySet | None = None,
) -> ImageVerdict:
    forbidden = forbidden_in(policies or PolicySet([compile_policy(_cluster_policy())]), namespace, {})
    (verdict,) = apply_exceptions(
        [_denied()], exceptions, namespace=namespace, labels=labels or {}, now=now, forbidden=forbidden
    )
    return verdict


# --- compiling


def test_a_valid_exception_compiles() -> None:
    compiled = compile_exception(_exception())
    assert compiled.label == "ImagePolicyException team-a/incident-42"
    assert compiled.expires == EXPIRY
    assert compiled.selector is None


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"expires": "2026-12-09T10:00:01Z"}, "spec.expires"),  # past the 7-day maximum
        ({"expires": "2026-12-01T10:00:00Z"}, "spec.expires"),  # not after its creation
        ({"expires": "next week"}, "spec.expires"),
        ({"reason": ""}, "spec.reason"),
        ({"reason": "x" * 513}, "spec.reason"),
        ({"reason": "two\nlines"}, "spec.reason"),  # warnings are one line
        ({"images": []}, "spec.images"),
        ({"images": [{"glob": "registry.example//A B"}]}, "spec.images[0].glob"),
        ({"images": [{"glob": "a", "extra": 1}]}, "spec.images[0]"),
        ({"selector": {"matchLabels": {"app": "bad value!"}}}, "spec.selector.matchLabels"),
        ({"selector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}, "spec.selector"),
        ({"unknown": True}, "spec"),
    ],
)
def test_invalid_exceptions_are_policy_invalid_naming_the_field(spec: dict[str, object], field: str) -> None:
    with pytest.raises(PolicyError) as e:
        compile_exception(_exception(**spec))
    assert e.value.reason == Reason.POLICY_INVALID
    assert f"ImagePolicyException team-a/incident-42: {field}" in e.value.detail


def test_the_maximum_is_the_clusters_setting() -> None:
    doc = _exception(expires="2026-12-01T11:00:01Z")
    with pytest.raises(PolicyError):
        compile_exception(doc, max_lifetime=timedelta(hours=1))
    assert compile_exception(doc, max_lifetime=timedelta(hours=2)).expires > CREATED


def test_without_a_creation_time_the_given_one_is_used() -> None:
    doc = _exception()
    del doc["metadata"]["creationTimestamp"]  # type: ignore[attr-defined]
    with pytest.raises(PolicyError):
        compile_exception(doc, created=EXPIRY - timedelta(days=8))
    assert compile_exception(doc, created=CREATED).expires == EXPIRY


def test_a_namespace_is_required() -> None:
    doc = _exception()
    del doc["metadata"]["namespace"]  # type: ignore[attr-defined]
    with pytest.raises(PolicyError):
        compile_exception(doc)


@given(
    st.dictionaries(
        st.sampled_from(["images", "selector", "expires", "reason", "x"]),
        st.none() | st.text(max_size=20) | st.lists(st.text(max_size=5), max_size=3) | st.integers(),
    )
)
def test_any_spec_compiles_or_is_policy_invalid(spec: dict[str, object]) -> None:
    doc = _exception()
    doc["spec"] = spec
    try:
        compile_exception(doc)
    except PolicyError as e:
        assert e.reason == Reason.POLICY_INVALID


# --- who created it


def test_the_creator_is_the_annotation_and_the_tool_is_the_first_manager() -> None:
    meta = {
        "annotations": {CREATED_BY_ANNOTATION: "alice@example.com"},
        "managedFields": [
            {"manager": "kubectl-edit", "time": "2026-12-01T11:00:00Z"},
            {"manager": "kubectl-create", "time": "2026-12-01T10:00:00Z"},
        ],
    }
    assert creator_of(meta) == "alice@example.com (via kubectl-create)"
    assert creator_of({"managedFields": [{"manager": "kubectl-create"}]}) == "unverified (via kubectl-create)"
    assert creator_of({}) == "unverified"


# --- granting


def test_an_active_exception_admits_a_denied_image_with_a_warning() -> None:
    verdict = _grant(ExceptionSet([compile_exception(_exception())]))
    assert verdict.allowed
    assert verdict.reason == Reason.EXCEPTION_GRANTED
    assert verdict.warnings == (
        f"ImagePolicyException team-a/incident-42 admits {UNSIGNED} until {EXPIRES}: INC-42: the signer is down",
    )
    assert verdict.exception is not None
    assert (verdict.exception.namespace, verdict.exception.name) == ("team-a", "incident-42")
    assert verdict.exception.denied == Reason.SIGNATURE_NOT_FOUND


def test_it_stops_exactly_at_its_expiry() -> None:
    exceptions = ExceptionSet([compile_exception(_exception())])
    assert _grant(exceptions, now=EXPIRY - timedelta(microseconds=1)).allowed
    stopped = _grant(exceptions, now=EXPIRY)
    assert not stopped.allowed
    assert stopped.reason == Reason.SIGNATURE_NOT_FOUND


def test_an_allowed_verdict_is_untouched() -> None:
    allowed = ImageVerdict(UNSIGNED, True, Reason.VERIFIED, "signed")
    exceptions = ExceptionSet([compile_exception(_exception())])
    (same,) = apply_exceptions(
        [allowed], exceptions, namespace="team-a", labels={}, now=CREATED, forbidden=lambda _: False
    )
    assert same is allowed


def test_the_selector_matches_the_objects_labels() -> None:
    exceptions = ExceptionSet([compile_exception(_exception(selector={"matchLabels": {"app": "web"}}))])
    assert _grant(exceptions, labels={"app": "web", "tier": "x"}).allowed
    assert not _grant(exceptions, labels={"app": "db"}).allowed
    assert not _grant(exceptions, labels={}).allowed


def test_an_image_outside_its_globs_stays_denied() -> None:
    exceptions = ExceptionSet([compile_exception(_exception(images=[{"glob": "registry.example/other"}]))])
    assert not _grant(exceptions).allowed


# --- adversarial: a namespace user with create on exceptions in their own namespace


def test_an_exception_never_reaches_another_namespace() -> None:
    exceptions = ExceptionSet([compile_exception(_exception(namespace="team-a", images=[{"glob": "**"}]))])
    assert not _grant(exceptions, namespace="team-b").allowed
    assert not _grant(exceptions, namespace=None).allowed  # cluster-scoped objects, CLI checks
    assert _grant(exceptions, namespace="team-a").allowed


def test_exceptions_forbidden_cannot_be_overridden() -> None:
    forbidding = PolicySet([compile_policy(_cluster_policy(exceptions="forbidden"))])
    exceptions = ExceptionSet([compile_exception(_exception(images=[{"glob": "**"}]))])
    verdict = _grant(exceptions, policies=forbidding)
    assert not verdict.allowed
    assert verdict.reason == Reason.SIGNATURE_NOT_FOUND


def test_a_forbidding_policy_scoped_elsewhere_does_not_forbid_here() -> None:
    scoped = PolicySet(
        [
            compile_policy(_cluster_policy()),
            compile_policy(_cluster_policy("strict", exceptions="forbidden", namespaces=["payments"])),
        ]
    )
    exceptions = ExceptionSet([compile_exception(_exception())])
    assert _grant(exceptions, policies=scoped).allowed


def test_only_a_cluster_image_policy_may_say_exceptions() -> None:
    doc = _cluster_policy(exceptions="allowed")
    doc["kind"] = "ImagePolicy"
    doc["metadata"] = {"name": "mine", "namespace": "team-a"}
    with pytest.raises(PolicyError) as e:
        compile_policy(doc)
    assert "spec.exceptions" in e.value.detail
    with pytest.raises(PolicyError):
        compile_policy(_cluster_policy(exceptions="sometimes"))


def test_an_invalid_governing_cluster_policy_forbids_exceptions() -> None:
    from controller.policy import compile_policy_lenient

    broken = _cluster_policy(identities=[{"issuer": "x", "subjectRegExp": r"(a)\1"}])
    policies = PolicySet([compile_policy_lenient(broken)])
    exceptions = ExceptionSet([compile_exception(_exception())])
    assert not _grant(exceptions, policies=policies).allowed


# --- bounds (what one namespace's exceptions may cost a review)


def test_an_exception_holds_at_most_its_wildcards() -> None:
    at_most = [{"glob": "registry.example/" + "*a" * MAX_WILDCARDS_PER_EXCEPTION}]
    assert compile_exception(_exception(images=at_most)).wildcards == MAX_WILDCARDS_PER_EXCEPTION
    over = [{"glob": "registry.example/" + "*a" * 40}, {"glob": "registry.example/" + "?" * 25}]
    with pytest.raises(PolicyError) as caught:
        compile_exception(_exception(images=over))
    assert caught.value.reason is Reason.POLICY_INVALID
    assert "spec.images" in caught.value.detail


def test_a_namespace_considers_a_bounded_set_expiring_last_first() -> None:
    costly = [{"glob": "registry.example/" + "*a" * 64}]  # the most one exception may hold
    fits = MAX_WILDCARDS_PER_NAMESPACE // 64
    expiring = [
        (CREATED + timedelta(hours=2, minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ") for i in range(fits + 2)
    ]
    heavy = [
        compile_exception(_exception(name=f"h{i}", images=costly, expires=e)) for i, e in enumerate(expiring)
    ]
    cheap = compile_exception(_exception(name="cheap", expires="2026-12-01T11:00:00Z"))  # expires first
    exceptions = ExceptionSet([*heavy, cheap])
    considered = exceptions.in_namespace("team-a")
    # the wildcard budget binds: the ones expiring last fill it, and then not even one more wildcard fits
    assert [e.name for e in considered] == [f"h{i}" for i in reversed(range(2, fits + 2))]
    assert exceptions.ignored == {("team-a", "h0"), ("team-a", "h1"), ("team-a", "cheap")}
    many = ExceptionSet(
        compile_exception(_exception(name=f"n{i}", expires=f"2026-12-02T{i // 60:02d}:{i % 60:02d}:00Z"))
        for i in range(MAX_EXCEPTIONS_PER_NAMESPACE + 3)
    )
    assert len(many.in_namespace("team-a")) == MAX_EXCEPTIONS_PER_NAMESPACE
    assert len(many.ignored) == 3
