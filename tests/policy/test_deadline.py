"""Warn with a deadline: spec.enforceAfter parsed strictly, warn before it, enforce from it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.errors import PolicyError, Reason
from controller.policy import compile_policy, evaluate_policy
from controller.policy.deadline import (
    TimestampError,
    format_timestamp,
    next_change,
    parse_timestamp,
    policy_at,
)

DEADLINE = "2027-01-15T00:00:00Z"
AT = datetime(2027, 1, 15, tzinfo=UTC)
IMAGE = "registry.example/app@sha256:" + "a" * 64


def _policy(kind: str = "ClusterImagePolicy", **spec: object) -> dict[str, object]:
    metadata: dict[str, object] = {"name": "rollout"}
    if kind == "ImagePolicy":
        metadata["namespace"] = "team-a"
    return {
        "apiVersion": "imprimatur.dev/v1alpha1",
        "kind": kind,
        "metadata": metadata,
        "spec": {
            "images": [{"glob": "registry.example/**"}],
            "identities": [{"issuer": "https://issuer.example", "subject": "ci@example.com"}],
            **spec,
        },
    }


# --- the parser


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2027-01-15T00:00:00Z", AT),
        ("2027-01-15t00:00:00z", AT),
        ("2027-01-15T01:30:00+01:30", AT),
        ("2027-01-14T19:00:00-05:00", AT),
        ("2027-01-15T00:00:00.5Z", AT + timedelta(milliseconds=500)),
        ("2027-01-15T00:00:00.123456789Z", AT + timedelta(microseconds=123456)),
    ],
)
def test_rfc3339_timestamps_parse_to_utc(text: str, expected: datetime) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed.tzinfo == UTC


@pytest.mark.parametrize(
    "text",
    [
        "2027-01-15",  # no time
        "2027-01-15T00:00:00",  # no offset: ambiguous
        "2027-01-15 00:00:00Z",  # a space is not RFC 3339's separator here
        "2027-02-30T00:00:00Z",  # no such day
        "2027-01-15T24:00:00Z",
        "2027-01-15T23:59:60Z",  # leap seconds are not representable
        "2027-01-15T00:00:00+25:00",
        "tomorrow",
        "",
        "2027-01-15T00:00:00Z" + " " * 60,
        "\uff12\uff10\uff12\uff17-01-15T00:00:00Z",  # non-ASCII (fullwidth) digits
    ],
)
def test_malformed_timestamps_are_refused(text: str) -> None:
    with pytest.raises(TimestampError):
        parse_timestamp(text)


def test_aware_datetimes_from_yaml_are_accepted_and_naive_ones_refused() -> None:
    assert parse_timestamp(datetime(2027, 1, 15, 1, tzinfo=timezone(timedelta(hours=1)))) == AT
    with pytest.raises(TimestampError):
        parse_timestamp(datetime(2027, 1, 15))
    with pytest.raises(TimestampError):
        parse_timestamp(1768435200)


@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 1, 1), timezones=st.just(UTC)))
def test_format_then_parse_round_trips_to_the_second(moment: datetime) -> None:
    assert parse_timestamp(format_timestamp(moment)) == moment.replace(microsecond=0)


@given(st.text(max_size=80))
def test_the_parser_never_fails_other_than_with_timestamp_error(text: str) -> None:
    try:
        parsed = parse_timestamp(text)
    except TimestampError:
        return
    assert parsed.tzinfo == UTC


# --- the CRD field


def test_enforce_after_needs_warn_mode() -> None:
    with pytest.raises(PolicyError) as e:
        compile_policy(_policy(enforceAfter=DEADLINE))
    assert e.value.reason == Reason.POLICY_INVALID
    assert "spec.enforceAfter" in e.value.detail


def test_a_bad_enforce_after_is_policy_invalid() -> None:
    with pytest.raises(PolicyError) as e:
        compile_policy(_policy(mode="warn", enforceAfter="2027-01-15"))
    assert e.value.reason == Reason.POLICY_INVALID


@pytest.mark.parametrize("kind", ["ClusterImagePolicy", "ImagePolicy"])
def test_warns_before_the_deadline_and_enforces_from_it(kind: str) -> None:
    policy = compile_policy(_policy(kind, mode="warn", enforceAfter=DEADLINE))
    before = evaluate_policy(policy_at(policy, AT - timedelta(seconds=1)), (), (), IMAGE)
    assert before.passed
    assert before.reason == Reason.SIGNATURE_NOT_FOUND
    (warning,) = before.warnings
    assert warning.endswith(f"(enforced from {DEADLINE})")

    at = evaluate_policy(policy_at(policy, AT), (), (), IMAGE)
    assert not at.passed
    assert at.reason == Reason.SIGNATURE_NOT_FOUND
    assert at.warnings == ()


def test_the_enforcing_form_is_one_object_so_memoised_results_stay_apart() -> None:
    policy = compile_policy(_policy(mode="warn", enforceAfter=DEADLINE))
    assert policy_at(policy, AT) is policy_at(policy, AT + timedelta(days=1))
    assert policy_at(policy, AT) is not policy
    assert policy_at(policy, AT - timedelta(microseconds=1)) is policy


def test_warn_without_deadline_and_enforce_never_change() -> None:
    warn = compile_policy(_policy(mode="warn"))
    enforce = compile_policy(_policy())
    far = AT + timedelta(days=10_000)
    assert policy_at(warn, far) is warn
    assert policy_at(enforce, far) is enforce
    assert next_change([warn, enforce], AT) is None


def test_next_change_is_the_earliest_deadline_ahead() -> None:
    soon = compile_policy(_policy(mode="warn", enforceAfter=DEADLINE))
    later = compile_policy(
        {**_policy(mode="warn", enforceAfter="2027-02-01T00:00:00Z"), "metadata": {"name": "later"}}
    )
    assert next_change([later, soon], AT - timedelta(days=1)) == AT
    assert next_change([later, soon], AT) == datetime(2027, 2, 1, tzinfo=UTC)  # AT itself is not ahead
    assert next_change([later, soon], datetime(2027, 3, 1, tzinfo=UTC)) is None
