"""controller/config.py: IMPRIMATUR_MAX_EXCEPTION_SECONDS (issue 8), its default, bounds and bad values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from controller.config import DEFAULT_MAX_EXCEPTION_SECONDS, MAX_EXCEPTION_SECONDS_LIMIT, Settings
from controller.errors import PolicyError, Reason

NAME = "IMPRIMATUR_MAX_EXCEPTION_SECONDS"
CHART = Path(__file__).resolve().parent.parent / "charts" / "imprimatur"


def test_the_default_is_seven_days() -> None:
    assert Settings.from_env({}).max_exception_seconds == 7 * 86400
    assert Settings.from_env({NAME: ""}).max_exception_seconds == 7 * 86400  # an empty value is unset
    assert Settings().max_exception_seconds == DEFAULT_MAX_EXCEPTION_SECONDS


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("3600", 3600.0),
        ("60", 60.0),  # the lowest
        ("7776000", 90 * 86400.0),  # the highest: 90 days
        ("86400.5", 86400.5),
        ("1e5", 100000.0),
        (" 600 ", 600.0),
    ],
)
def test_good_values_are_read(raw: str, seconds: float) -> None:
    assert Settings.from_env({NAME: raw}).max_exception_seconds == seconds


@pytest.mark.parametrize(
    "raw",
    [
        "59",  # below a minute
        "0",
        "-3600",
        "7776001",  # beyond 90 days
        "1e400",  # inf
        "inf",
        "-inf",
        "nan",  # compares false with both bounds
        "7d",  # no units
        "P7D",
        "0x3c",
        "3600s",
        "seven days",
    ],
)
def test_bad_values_are_config_invalid(raw: str) -> None:
    with pytest.raises(PolicyError) as caught:
        Settings.from_env({NAME: raw})
    assert caught.value.reason is Reason.CONFIG_INVALID
    assert NAME in caught.value.detail  # the error names the variable, so the operator knows which


def test_a_bad_value_is_never_a_silent_default() -> None:
    """Every other variable valid, only this one wrong: still refused (not the 7-day default)."""
    with pytest.raises(PolicyError) as caught:
        Settings.from_env({"IMPRIMATUR_DEFAULT_DECISION": "deny", NAME: "forever"})
    assert caught.value.reason is Reason.CONFIG_INVALID


@given(st.text(max_size=24))
def test_any_text_is_a_bounded_number_or_config_invalid(raw: str) -> None:
    try:
        value = Settings.from_env({NAME: raw}).max_exception_seconds
    except PolicyError as e:
        assert e.reason is Reason.CONFIG_INVALID
        return
    assert 60 <= value <= MAX_EXCEPTION_SECONDS_LIMIT or (
        raw == "" and value == DEFAULT_MAX_EXCEPTION_SECONDS
    )


def test_the_chart_default_and_schema_agree_with_the_parser() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    bounds = schema["properties"]["exceptions"]["properties"]["maxLifetimeSeconds"]
    assert values["exceptions"]["maxLifetimeSeconds"] == DEFAULT_MAX_EXCEPTION_SECONDS
    assert bounds["minimum"] == 60
    assert bounds["maximum"] == MAX_EXCEPTION_SECONDS_LIMIT
    # the chart's bounds are accepted by the parser, one past them is not
    for edge in (bounds["minimum"], bounds["maximum"]):
        assert Settings.from_env({NAME: str(edge)}).max_exception_seconds == edge
    for past in (bounds["minimum"] - 1, bounds["maximum"] + 1):
        with pytest.raises(PolicyError):
            Settings.from_env({NAME: str(past)})
