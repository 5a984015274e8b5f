"""The registry client: resolve tags, fetch manifests, blobs, cosign ``.sig`` signatures and referrers.

:class:`RegistryClient` is the facade the engine uses; the work is done by :mod:`.endpoints` (the walk
over a registry's mirrors and upstream, with authentication), :mod:`.content` (manifests and blobs,
bounded and digest-checked), :mod:`.signatures` (``.sig`` and referrers) and :mod:`.transport`.

Every public method takes an optional :class:`~controller.registry.budget.Budget`: with one, every wait
is clipped to the decision's deadline (the socket is cut then, even while waiting for headers) and
every body byte is charged to it. Without one, only the fixed :class:`Limits` apply.

Failures, by reason:

* connection failure, timeout, 5xx from the last endpoint: FetchError(RegistryUnavailable)
* image manifest 404 on resolve / get_manifest / get_blob: FetchError(ImageNotFound)
* 401/403 after authenticating, a failed token exchange: FetchError(RegistryAuthFailed)
* a body that does not hash to its digest: EvidenceError(DigestMismatch)
* a malformed manifest: EvidenceError(ManifestInvalid); any bound or the deadline: LimitError(LimitExceeded)

Details do not repeat the image reference (the verdict shows it); they name a repository only when it
is another one (a signature repository).
"""

from __future__ import annotations

import logging
from pathlib import Path

import requests

from controller.errors import FetchError, InputError, PolicyError, Reason
from controller.model import Digest, ImageRef, Signature
from controller.registry.auth import Keychain
from controller.registry.budget import Budget
from controller.registry.config import RegistryConfig
from controller.registry.content import get_blob, get_manifest, header_digest
from controller.registry.endpoints import Requester, Shared, Target
from controller.registry.limits import Limits
from controller.registry.manifest import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    Manifest,
)
from controller.registry.reference import check_registry, check_repository, check_tag, parse_repository
from controller.registry.signatures import (
    ReferrersMemory,
    fetch_attestations,
    fetch_referrer_bundles,
    fetch_signatures,
)

log = logging.getLogger(__name__)

MANIFEST_ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST))


def _check_files(config: RegistryConfig) -> None:
    for path in config.files():
        if not Path(path).is_file():
            raise PolicyError(Reason.CONFIG_INVALID, f"registries.yaml names a missing file: {path}")


class RegistryClient:
    """Talks to OCI registries for the engine. Safe to share between worker threads."""

    def __init__(
        self,
        config: RegistryConfig | None = None,
        keychain: Keychain | None = None,
        limits: Limits | None = None,
        *,
        session: requests.Session | None = None,
    ) -> None:
        config = config if config is not None else RegistryConfig()
        _check_files(config)
        if session is None:
            session = requests.Session()
            session.trust_env = False  # no ~/.netrc credentials, no REQUESTS_CA_BUNDLE surprises
        shared = Shared(session, config, limits if limits is not None else Limits())
        self._requester = Requester(shared, (keychain,) if keychain else ())
        self._referrers = ReferrersMemory()

    @property
    def limits(self) -> Limits:
        return self._requester.limits

    @property
    def config(self) -> RegistryConfig:
        return self._requester.shared.config

    def with_keychain(self, extra: Keychain) -> RegistryClient:
        """A client sharing this one's session, token cache and config, trying ``extra`` first."""
        derived = object.__new__(RegistryClient)
        keychains = self._requester.keychains
        derived._requester = Requester(self._requester.shared, (extra, *keychains) if extra else keychains)
        derived._referrers = self._referrers
        return derived

    def close(self) -> None:
        """Close the shared HTTP session (and so every derived client)."""
        self._requester.shared.session.close()

    # --- public API

    def resolve(self, ref: ImageRef, *, budget: Budget | None = None) -> Digest:
        """The digest ``ref`` names: free for a digest-pinned ref, else one HEAD (GET if no header)."""
        if ref.digest is not None:
            return ref.digest
        if ref.tag is None:
            raise InputError(Reason.REFERENCE_INVALID, "neither tag nor digest")
        target = self._target(ref)
        tag = check_tag(ref.tag)
        answer = self._requester.request(
            target,
            f"/manifests/{tag}",
            method="HEAD",
            kind="manifest",
            accept=MANIFEST_ACCEPT,
            max_bytes=0,
            budget=budget,
        )
        if answer is None:
            raise FetchError(Reason.IMAGE_NOT_FOUND, "manifest unknown")
        header = header_digest(answer, "manifest")
        if header is not None:
            return header
        return self.get_manifest(ref, tag, budget=budget).digest

    def get_manifest(self, ref: ImageRef, reference: str, *, budget: Budget | None = None) -> Manifest:
        """The manifest ``reference`` (a tag or a digest) in ``ref``'s repository, bounded and checked."""
        expected = self._digest_or_tag(reference)
        own = reference in (ref.tag, str(ref.digest))
        return get_manifest(
            self._requester,
            self._target(ref),
            reference,
            expected,
            accept=MANIFEST_ACCEPT,
            missing=Reason.IMAGE_NOT_FOUND,
            where="" if own else f"{reference}: ",
            budget=budget,
        )

    def get_blob(
        self, ref: ImageRef, digest: Digest, max_bytes: int, *, budget: Budget | None = None
    ) -> bytes:
        """The blob ``digest`` in ``ref``'s repository: at most ``max_bytes``, digest verified."""
        return get_blob(
            self._requester, self._target(ref), digest, max_bytes=max_bytes, where="", budget=budget
        )

    def fetch_signatures(
        self,
        ref: ImageRef,
        digest: Digest,
        signature_repository: str | None = None,
        *,
        budget: Budget | None = None,
    ) -> list[Signature]:
        """cosign's legacy signatures: the layers of manifest ``<alg>-<hex>.sig``; [] when it is absent.

        The tag lives in ``ref``'s repository, or in ``signature_repository`` (a full ``host/path``, as
        cosign's COSIGN_REPOSITORY). Layers of another media type than simple signing are skipped.
        """
        target = self._signature_target(ref, signature_repository)
        return fetch_signatures(self._requester, target, digest, budget=budget)

    def fetch_attestations(
        self,
        ref: ImageRef,
        digest: Digest,
        signature_repository: str | None = None,
        *,
        budget: Budget | None = None,
    ) -> list[Signature]:
        """cosign's legacy attestations: the DSSE layers of manifest ``<alg>-<hex>.att``; [] when absent.

        Same place (``ref``'s repository or ``signature_repository``) and bounds as :meth:`fetch_signatures`.
        """
        target = self._signature_target(ref, signature_repository)
        return fetch_attestations(self._requester, target, digest, budget=budget)

    def fetch_referrer_bundles(
        self,
        ref: ImageRef,
        digest: Digest,
        signature_repository: str | None = None,
        *,
        budget: Budget | None = None,
    ) -> list[Signature]:
        """Sigstore bundles attached as OCI 1.1 referrers of ``digest``; [] when there are none.

        Asks the referrers API; a registry without it (any "not supported" answer) falls back quietly to
        the referrers tag schema, and is remembered as API-less for a while
        (:class:`~controller.registry.signatures.ReferrersMemory`).
        """
        target = self._signature_target(ref, signature_repository)
        return fetch_referrer_bundles(self._requester, target, digest, memory=self._referrers, budget=budget)

    # --- helpers

    def _target(self, ref: ImageRef) -> Target:
        return Target(check_registry(ref.registry), check_repository(ref.repository))

    def _signature_target(self, ref: ImageRef, signature_repository: str | None) -> Target:
        if signature_repository is None:
            return self._target(ref)
        registry, repository = parse_repository(signature_repository)
        return Target(registry, repository)

    @staticmethod
    def _digest_or_tag(reference: str) -> Digest | None:
        if ":" in reference:
            return Digest.parse(reference)
        check_tag(reference)
        return None
