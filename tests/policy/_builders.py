"""Builders for policy documents and verified signatures, shared by the policy tests.

The identities are those of real production signatures in ../shared/testdata/sigstore-real
(connaisseur, salrashid123) plus a GitHub Actions signer shaped like Fulcio's real extensions.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import UTC, datetime

from controller.model import Digest, VerifiedSignature

DIGEST = Digest("sha256", "31dc72a1" + "0" * 56)
GITHUB_OAUTH = "https://github.com/login/oauth"
GOOGLE = "https://accounts.google.com"
ACTIONS = "https://token.actions.githubusercontent.com"
PHBELITZ = "philipp.belitz@securesystems.de"
GOOGLE_SA = "cosign-svc-account@mineral-minutia-820.iam.gserviceaccount.com"
WORKFLOW = "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.2.3"
ACTIONS_CLAIMS = {
    "githubWorkflowTrigger": "push",
    "githubWorkflowSHA": "4fcb0016" + "0" * 32,
    "githubWorkflowName": "release",
    "githubWorkflowRepository": "acme/app",
    "githubWorkflowRef": "refs/tags/v1.2.3",
    "sourceRepositoryURI": "https://github.com/acme/app",
    "runnerEnvironment": "github-hosted",
}


def signature(
    subject: str = PHBELITZ,
    issuer: str = GITHUB_OAUTH,
    *,
    claims: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    tlog: bool = True,
    trust_root: str = "",
    warnings: tuple[str, ...] = (),
) -> VerifiedSignature:
    """A VerifiedSignature as the verifier would hand it over."""
    return VerifiedSignature(
        subject=subject,
        issuer=issuer,
        claims=dict(claims or {}),
        digest=DIGEST,
        log_index=25579 if tlog else None,
        integrated_time=datetime(2024, 5, 30, 12, 0, tzinfo=UTC) if tlog else None,
        annotations=dict(annotations or {}),
        trust_root=trust_root,
        warnings=warnings,
    )


def actions_signature(**overrides: str) -> VerifiedSignature:
    """A GitHub Actions keyless signature of acme/app's release workflow."""
    claims = {**ACTIONS_CLAIMS, **overrides}
    return signature(WORKFLOW, ACTIONS, claims=claims)


BASE_POLICY: dict[str, object] = {
    "apiVersion": "imprimatur.dev/v1alpha1",
    "kind": "ClusterImagePolicy",
    "metadata": {"name": "acme-releases"},
    "spec": {
        "images": [{"glob": "ghcr.io/acme/**"}],
        "identities": [{"issuer": GITHUB_OAUTH, "subject": PHBELITZ}],
    },
}


def policy_doc(**spec_overrides: object) -> dict[str, object]:
    """A valid ClusterImagePolicy document with some ``spec`` fields replaced (None deletes one)."""
    doc = copy.deepcopy(BASE_POLICY)
    spec = doc["spec"]
    assert isinstance(spec, dict)
    for key, value in spec_overrides.items():
        if value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    return doc
