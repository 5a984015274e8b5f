"""The demo's world: images in the local registry, signed (or not) by whom, and the policies over them.

Everything is made here with the test Sigstore kit, the way the real tools make it:

* ``cosign sign`` (keyless) by the release workflow, or by an intern, or no signature at all;
* ``cosign attest --type slsaprovenance1`` (keyless, a legacy ``.att``): an SLSA v1 provenance statement
  saying which builder built the image;
* ``cosign sign --key cosign.key``: a key-signed ``.sig`` with its Rekor entry.

The policies are the CRD YAML a cluster admin (and a namespace admin) would apply, plus one
ImagePolicyException: ``imprimatur serve --policy`` reads all of them from one file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from controller.model import Digest
from controller.policy.deadline import format_timestamp
from tests.fixtures.registry import RegistryServer
from tests.kit.attest import attest_image, key_sign_image, public_key_pem
from tests.kit.oci import push_att_image, push_signed_image
from tests.kit.sigstore import GITHUB_OAUTH_ISSUER, Identity, KeyType, SigningKey, SigstoreKit, generate_key

API_VERSION = "imprimatur.dev/v1alpha1"
TRUST_ROOT = "acme-sigstore"
RELEASE = Identity.github_workflow("acme/shop", ".github/workflows/release.yml", "refs/heads/main")
INTERN = Identity.email("intern@acme.example", GITHUB_OAUTH_ISSUER)

SLSA_V1 = "https://slsa.dev/provenance/v1"
GITHUB_ACTIONS_BUILD = "https://actions.github.io/buildtypes/workflow/v1"
LAPTOP_BUILD = "https://example.com/laptop/make"
BUILT_BY_ACTIONS = "built by GitHub Actions"

INCIDENT_NAMESPACE = "incident"
EXCEPTION_NAME = "signing-outage"
EXCEPTION_REASON = "INC-7: the release workflow's signing step is down"
EXCEPTION_HOURS = 4
WARN_DAYS = 30


@dataclass(frozen=True)
class Setting:
    """What the policies name: the registry, the vendor's signing key, and two instants (no digest, so
    the server can load them while the images are pushed)."""

    host: str
    key: SigningKey = field(repr=False)
    enforce_after: datetime  # labs-warn enforces from this instant: midnight UTC, WARN_DAYS ahead
    exception_expires: datetime  # the incident's exception ends EXCEPTION_HOURS from now

    @classmethod
    def of(cls, host: str, now: datetime) -> Setting:
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return cls(
            host,
            generate_key(KeyType.ECDSA_P256),
            midnight + timedelta(days=WARN_DAYS),
            now.replace(microsecond=0) + timedelta(hours=EXCEPTION_HOURS),
        )

    @property
    def key_pem(self) -> str:
        return public_key_pem(self.key)

    @property
    def enforce_after_text(self) -> str:
        return format_timestamp(self.enforce_after)


@dataclass(frozen=True)
class World:
    """The setting and the image references (``host/repo@digest`` unless said otherwise)."""

    setting: Setting
    frontend: str  # signed by the release workflow
    frontend_tag: str  # the same image by its tag, 1.4
    backend: str  # signed by an intern
    worker: str  # not signed
    lab: str  # not signed, under a warn-mode policy with enforceAfter
    api: str  # signed; provenance attestation: built by GitHub Actions
    cron: str  # signed; provenance attestation: built on a laptop
    batch: str  # signed; no attestation
    agent: str  # signed with the setting's key (cosign sign --key), not keyless

    @property
    def host(self) -> str:
        return self.setting.host


def publish(registry: RegistryServer, kit: SigstoreKit, setting: Setting) -> World:
    """Push every image, signature and attestation of the demo to ``registry``."""
    host = setting.host

    def signed(repo: str, tag: str, who: Identity) -> str:
        return f"{host}/{repo}@{signed_digest(repo, tag, who)}"

    def signed_digest(repo: str, tag: str, who: Identity) -> Digest:
        return push_signed_image(
            registry, repo, tag, lambda d: [kit.sign_image(str(d), f"{host}/{repo}", identity=who)]
        )

    def attested(repo: str, build_type: str | None) -> str:
        digest = signed_digest(repo, "1.0", RELEASE)
        if build_type is not None:
            statement = attest_image(
                kit,
                str(digest),
                f"{host}/{repo}",
                predicate_type=SLSA_V1,
                predicate={"buildDefinition": {"buildType": build_type}},
                identity=RELEASE,
            )
            push_att_image(registry, repo, digest, [statement])
        return f"{host}/{repo}@{digest}"

    agent = push_signed_image(
        registry,
        "vendor/agent",
        "3.1",
        lambda d: [key_sign_image(kit, str(d), f"{host}/vendor/agent", setting.key)],
    )
    return World(
        setting=setting,
        frontend=signed("shop/frontend", "1.4", RELEASE),
        frontend_tag=f"{host}/shop/frontend:1.4",
        backend=signed("shop/backend", "2.0", INTERN),
        worker=f"{host}/shop/worker@{registry.push_random_image('shop/worker', '0.9')}",
        lab=f"{host}/labs/tool@{registry.push_random_image('labs/tool', 'dev')}",
        api=attested("builds/api", GITHUB_ACTIONS_BUILD),
        cron=attested("builds/cron", LAPTOP_BUILD),
        batch=attested("builds/batch", None),
        agent=f"{host}/vendor/agent@{agent}",
    )


def _cluster_policy(
    name: str, glob: str, identities: list[dict[str, object]], **spec: object
) -> dict[str, object]:
    return {
        "apiVersion": API_VERSION,
        "kind": "ClusterImagePolicy",
        "metadata": {"name": name},
        "spec": {"images": [{"glob": glob}], "identities": identities, "trustRoot": TRUST_ROOT, **spec},
    }


def _release(**claims: str) -> dict[str, object]:
    identity: dict[str, object] = {"issuer": RELEASE.issuer, "subject": RELEASE.subject}
    if claims:
        identity["claims"] = claims
    return identity


def policies(setting: Setting, trusted_root: bytes) -> list[dict[str, object]]:
    """The cluster admin's policies, team-a's own, and the incident namespace's exception."""
    host = setting.host
    provenance = {
        "name": "provenance",
        "predicateType": SLSA_V1,
        "conditions": [
            {
                "expression": f'predicate.buildDefinition.buildType == "{GITHUB_ACTIONS_BUILD}"',
                "message": BUILT_BY_ACTIONS,
            }
        ],
    }
    return [
        {
            "apiVersion": API_VERSION,
            "kind": "TrustRoot",
            "metadata": {"name": TRUST_ROOT},
            "spec": {"inline": trusted_root.decode()},
        },
        _cluster_policy("shop-release", f"{host}/shop/**", [_release(githubWorkflowRepository="acme/shop")]),
        _cluster_policy(
            "labs-warn",
            f"{host}/labs/**",
            [{"issuer": RELEASE.issuer, "subjectRegExp": "https://github\\.com/acme/.*"}],
            mode="warn",
            enforceAfter=setting.enforce_after_text,
        ),
        # attestations: a signature is not enough, the provenance must say GitHub Actions built it
        _cluster_policy("builds-provenance", f"{host}/builds/**", [_release()], attestations=[provenance]),
        # the same vendor image: trusted by its key in default, by a keyless identity only in team-b
        _cluster_policy(
            "vendor-key",
            f"{host}/vendor/**",
            [{"key": {"pem": setting.key_pem}}],
            namespaces=["default"],
        ),
        _cluster_policy("vendor-keyless", f"{host}/vendor/**", [_release()], namespaces=["team-b"]),
        # A namespace admin's policies: they can only add requirements in their own namespace.
        {
            "apiVersion": API_VERSION,
            "kind": "ImagePolicy",
            "metadata": {"name": "trust-anyone", "namespace": "team-a"},
            "spec": {
                "images": [{"glob": "**"}],
                "identities": [{"issuerRegExp": ".*", "subjectRegExp": ".*"}],
                "trustRoot": TRUST_ROOT,
            },
        },
        {
            "apiVersion": API_VERSION,
            "kind": "ImagePolicy",
            "metadata": {"name": "prod-only", "namespace": "team-a"},
            "spec": {
                "images": [{"glob": f"{host}/shop/**"}],
                "identities": [_release()],
                "annotations": {"env": "prod"},
                "trustRoot": TRUST_ROOT,
            },
        },
        # break-glass: the incident namespace may run the unsigned worker for a few hours
        {
            "apiVersion": API_VERSION,
            "kind": "ImagePolicyException",
            "metadata": {"name": EXCEPTION_NAME, "namespace": INCIDENT_NAMESPACE},
            "spec": {
                "images": [{"glob": f"{host}/shop/worker"}],
                "expires": format_timestamp(setting.exception_expires),
                "reason": EXCEPTION_REASON,
            },
        },
    ]
