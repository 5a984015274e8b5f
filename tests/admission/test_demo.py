"""``python -m demo`` runs end to end and gets every answer it expects; a wrong answer is a mismatch."""

from __future__ import annotations

import base64
import io
import json
import re
from datetime import UTC, datetime

import pytest

from controller.admission.pinning import ANNOTATION
from demo.__main__ import _patch, run
from demo.cases import ALLOWED, PINNED, Answer, Case, Pin, check
from tests.admission.harness import pod

TAG = "registry.example/shop/frontend:1.4"
DIGEST = "sha256:" + "ab" * 32
SIGNER = "https://github.com/acme/shop/.github/workflows/release.yml@refs/heads/main"


def test_demo_answers_as_expected() -> None:
    out = io.StringIO()
    assert run(out) == 0, out.getvalue()
    text = out.getvalue()
    assert "19/19 answers as expected" in text
    assert "MISMATCH" not in text
    assert "denied [403]: SignatureNotFound: " in text
    # pinning: the JSON patch writes tag@digest and the record names the signer
    assert re.search(
        r"patch: replace /spec/containers/0/image = \S+/shop/frontend:1\.4@sha256:[0-9a-f]{64}\n", text
    )
    assert re.search(rf"verified-images: \S+/shop/frontend:1\.4 signed by {re.escape(SIGNER)}\n", text)
    # attestations: the condition's own message, and a missing one
    assert "denied [403]: AttestationConditionFailed: " in text
    assert "condition 'built by GitHub Actions' failed" in text
    assert "denied [403]: AttestationMissing: " in text
    # a key-signed image never satisfies a keyless identity
    assert "denied [403]: NotKeylessSignature: " in text
    # warn mode names its deadline; the exception names itself and its expiry
    assert re.search(r"warning: ClusterImagePolicy labs-warn \(warn mode\): .*\(enforced from \d{4}-", text)
    assert re.search(r"warning: ImagePolicyException incident/signing-outage admits \S+ until \d{4}-", text)


def _pin_case() -> Case:
    return Case("pin", pod("p", [TAG]), True, pin=Pin("/spec/containers/0/image", f"{TAG}@{DIGEST}", SIGNER))


def _pin_answer(image: str = f"{TAG}@{DIGEST}", signer: str = SIGNER) -> Answer:
    record = json.dumps({TAG: {"signer": signer, "issuer": "x", "digest": DIGEST}})
    patch = (
        {"op": "replace", "path": "/spec/containers/0/image", "value": image},
        {"op": "add", "path": "/metadata/annotations", "value": {ANNOTATION: record}},
    )
    return Answer(True, "", (), None, patch)


def test_a_pinned_answer_passes_only_with_the_expected_image_and_signer() -> None:
    case = _pin_case()
    assert _pin_answer().reason == PINNED
    assert check(case, _pin_answer()) == ""
    assert "the patch writes" in check(case, _pin_answer(image=f"{TAG}@sha256:" + "cd" * 32))
    assert "recorded signer 'mallory'" in check(case, _pin_answer(signer="mallory"))
    assert "the patch writes None" in check(case, Answer(True, "", (), None))


def test_a_denial_must_have_the_expected_reason_and_text() -> None:
    case = Case("c", pod("p", [TAG]), False, "AttestationConditionFailed", expect_text="built by Actions")
    right = Answer(False, f"AttestationConditionFailed: {TAG}: condition 'built by Actions' failed", (), 403)
    assert check(case, right) == ""
    assert check(case, Answer(False, f"AttestationMissing: {TAG}: built by Actions", (), 403)) == (
        "reason AttestationMissing, expected AttestationConditionFailed"
    )
    assert "nothing says" in check(case, Answer(False, f"AttestationConditionFailed: {TAG}: other", (), 403))
    assert "admitted" in check(case, Answer(True, "", (), None))


def test_an_admission_must_carry_the_expected_warning() -> None:
    deadline = datetime(2027, 1, 1, tzinfo=UTC)
    case = Case("w", pod("p", [TAG]), True, expect_text=f"(enforced from {deadline:%Y-%m-%dT%H:%M:%SZ})")
    warned = Answer(
        True, "", ("ClusterImagePolicy w (warn mode): x (enforced from 2027-01-01T00:00:00Z)",), None
    )
    assert warned.reason == ALLOWED and check(case, warned) == ""
    assert "nothing says" in check(case, Answer(True, "", ("ClusterImagePolicy w (warn mode): x",), None))
    assert "denied" in check(case, Answer(False, "SignatureNotFound: x: y", (), 403))


OPS = [{"op": "replace", "path": "/spec/containers/0/image", "value": "x"}]


def _b64(value: object) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


def test_a_well_formed_patch_is_read() -> None:
    assert _patch({"patchType": "JSONPatch", "patch": _b64(OPS)}) == tuple(OPS)
    assert _patch({}) == ()


@pytest.mark.parametrize(
    "response",
    [
        {"patchType": "MergePatch", "patch": _b64(OPS)},
        {"patchType": "JSONPatch", "patch": _b64({"op": "add"})},
        {"patchType": "JSONPatch", "patch": _b64(OPS * 65)},
        {"patchType": "JSONPatch", "patch": _b64(["op"])},
        {"patchType": "JSONPatch", "patch": "not base64!"},
    ],
)
def test_a_malformed_patch_is_refused(response: dict[str, object]) -> None:
    with pytest.raises((RuntimeError, ValueError)):
        _patch(response)
