"""VerifyOptions: cosign's defaults, and immutability."""

from __future__ import annotations

import dataclasses

import pytest

from controller.verify import VerifyOptions


def test_defaults_are_cosigns() -> None:
    options = VerifyOptions()
    assert options.require_tlog
    assert options.require_sct
    assert options.require_issuer_extension


def test_options_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        VerifyOptions().require_sct = False  # type: ignore[misc]
