"""The bounds: named-constant defaults, and refusal of nonsense values."""

from __future__ import annotations

import pytest

from controller.errors import PolicyError, Reason
from controller.registry import Limits
from controller.registry import limits as limits_module


def test_defaults_are_the_named_constants() -> None:
    limits = Limits()
    assert limits.max_manifest_bytes == limits_module.MAX_MANIFEST_BYTES == 4 * 1024 * 1024
    assert limits.max_blob_bytes == limits_module.MAX_BLOB_BYTES == 4 * 1024 * 1024
    assert limits.max_signature_layers == limits_module.MAX_SIGNATURE_LAYERS == 64
    assert limits.max_redirects == limits_module.MAX_REDIRECTS == 5
    assert limits.connect_timeout == limits_module.CONNECT_TIMEOUT_SECONDS == 5.0
    assert limits.read_timeout == limits_module.READ_TIMEOUT_SECONDS == 10.0
    assert limits.total_timeout == limits_module.TOTAL_TIMEOUT_SECONDS
    assert limits.max_token_bytes == limits_module.MAX_TOKEN_BYTES
    assert limits.max_index_children == limits_module.MAX_INDEX_CHILDREN


@pytest.mark.parametrize(
    "overrides",
    [
        {"max_redirects": -1},
        {"read_timeout": 0},
        {"connect_timeout": -1.0},
        {"max_manifest_bytes": 0},
        {"max_signature_layers": True},
        {"total_timeout": "30"},
    ],
)
def test_nonsense_limits_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(PolicyError) as caught:
        Limits(**overrides)  # type: ignore[arg-type]
    assert caught.value.reason is Reason.CONFIG_INVALID


def test_zero_redirects_is_allowed() -> None:
    assert Limits(max_redirects=0).max_redirects == 0
