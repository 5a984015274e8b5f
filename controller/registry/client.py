"""The registry client: resolve tags, fetch manifests, blobs, cosign ``.sig`` signatures and referrers.

Every request for a registry walks that registry's endpoints (its mirrors in order, then the upstream)
and moves on after a connection failure, a 5xx/429, or a 404; the last endpoint's answer decides.
Every body read is bounded and checked against its digest. Authentication follows the distribution
token flow (``401`` + ``WWW-Authenticate: Bearer realm=...`` -> token endpoint) or Basic, with tokens
cached per (host, scope, credential).

Failures, by reason:

* connection failure, timeout, 5xx from the last endpoint: FetchError(RegistryUnavailable)
* image manifest 404 on resolve / get_manifest / get_blob: FetchError(ImageNotFound)
* 401/403 after authenticating, a failed token exchange: FetchError(RegistryAuthFailed)
* a body that does not hash to its digest: EvidenceError(DigestMismatch)
* a malformed manifest: EvidenceError(ManifestInvalid); any bound: LimitError(LimitExceeded)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlencode, urlsplit

import requests

from controller.errors import EvidenceError, FetchError, InputError, LimitError, PolicyError, Reason
from controller.model import Digest, ImageRef, Signature
from controller.registry.auth import (
    Challenge,
    Credential,
    Keychain,
    Token,
    TokenCache,
    parse_challenges,
    parse_token_response,
)
from controller.registry.config import Endpoint, RegistryConfig
from controller.registry.limits import Limits
from controller.registry.manifest import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    MANIFEST_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    SIGSTORE_BUNDLE_TYPES,
    SIMPLESIGNING,
    Descriptor,
    Manifest,
    load_json_object,
    parse_image_manifest,
    parse_index,
)
from controller.registry.reference import check_registry, check_repository, check_tag, parse_repository
from controller.registry.transport import Answer, RequestKind, Transport, host_of

log = logging.getLogger(__name__)

MANIFEST_ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST))
IMAGE_MANIFEST_ACCEPT = ", ".join((OCI_MANIFEST, DOCKER_MANIFEST))
INDEX_ACCEPT = ", ".join((OCI_INDEX, DOCKER_MANIFEST_LIST))
DIGEST_HEADER = "Docker-Content-Digest"
TOKEN_CLIENT_ID = "imprimatur"  # noqa: S105 - an OAuth2 client name, not a secret

REFERRERS_TAG_HEX_CHARS = 64
"""The referrers tag schema truncates the digest's hex to 64 characters (distribution-spec)."""

SIGNATURE_TAG_SUFFIX = "sig"
"""cosign's legacy signature tag: ``<alg>-<hex>.sig`` in the image's (or COSIGN_REPOSITORY's) repo."""

RETRY_ELSEWHERE_STATUSES = frozenset({429})
"""Besides 5xx, the statuses that send a request on to the next endpoint (as 404 does)."""


@dataclass(frozen=True, slots=True)
class _Target:
    """Where a request goes: a registry (its endpoints) and a repository in it."""

    registry: str
    repository: str

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def scope(self) -> str:
        return f"repository:{self.repository}:pull"


@dataclass(frozen=True, slots=True)
class _KnownChallenge:
    """The last challenge an endpoint host answered with, to authenticate up front next time."""

    scheme: Literal["bearer", "basic"]
    realm: str
    service: str | None


class _Shared:
    """What clients derived by :meth:`RegistryClient.with_keychain` share."""

    def __init__(self, session: requests.Session, config: RegistryConfig, limits: Limits) -> None:
        self.session = session
        self.config = config
        self.limits = limits
        self.transport = Transport(session, config, limits)
        self.tokens = TokenCache()
        self.challenges: dict[tuple[str, str], _KnownChallenge] = {}
        self.lock = threading.Lock()


def _check_files(config: RegistryConfig) -> None:
    for path in config.files():
        if not Path(path).is_file():
            raise PolicyError(Reason.CONFIG_INVALID, f"registries.yaml names a missing file: {path}")


def _media_type(answer: Answer) -> str:
    content_type = answer.headers.get("Content-Type", "")
    return content_type.split(";", 1)[0].strip().lower()


def _header_digest(answer: Answer, what: str) -> Digest | None:
    value = answer.headers.get(DIGEST_HEADER)
    if value is None:
        return None
    try:
        return Digest.parse(value.strip())
    except InputError as e:
        raise EvidenceError(Reason.MANIFEST_INVALID, f"{what}: bad {DIGEST_HEADER} {value[:100]!r}") from e


def _checked_digest(answer: Answer, expected: Digest | None, what: str) -> Digest:
    """The digest of ``answer.body``, checked against ``expected`` and the digest header."""
    header = _header_digest(answer, what)
    for claimed in (expected, header):
        if claimed is not None and not claimed.matches(answer.body):
            raise EvidenceError(Reason.DIGEST_MISMATCH, f"{what}: content does not hash to {claimed}")
    if expected is not None:
        return expected
    if header is not None:
        return header
    return Digest.of(answer.body)


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
        self._shared = _Shared(session, config, limits if limits is not None else Limits())
        self._keychains: tuple[Keychain, ...] = (keychain,) if keychain else ()

    @property
    def limits(self) -> Limits:
        return self._shared.limits

    @property
    def config(self) -> RegistryConfig:
        return self._shared.config

    def with_keychain(self, extra: Keychain) -> RegistryClient:
        """A client sharing this one's session, token cache and config, trying ``extra`` first."""
        derived = object.__new__(RegistryClient)
        derived._shared = self._shared
        derived._keychains = (extra, *self._keychains) if extra else self._keychains
        return derived

    def close(self) -> None:
        """Close the shared HTTP session (and so every derived client)."""
        self._shared.session.close()

    # --- public API

    def resolve(self, ref: ImageRef) -> Digest:
        """The digest ``ref`` names: free for a digest-pinned ref, else one HEAD (GET if no header)."""
        if ref.digest is not None:
            return ref.digest
        if ref.tag is None:
            raise InputError(Reason.REFERENCE_INVALID, f"{ref}: neither tag nor digest")
        target = self._target(ref)
        tag = check_tag(ref.tag)
        answer = self._request(
            target, f"/manifests/{tag}", method="HEAD", kind="manifest", accept=MANIFEST_ACCEPT, max_bytes=0
        )
        if answer is None:
            raise FetchError(Reason.IMAGE_NOT_FOUND, f"{target.name}:{tag}: manifest unknown")
        header = _header_digest(answer, f"{target.name}:{tag}")
        if header is not None:
            return header
        return self.get_manifest(ref, tag).digest

    def get_manifest(self, ref: ImageRef, reference: str) -> Manifest:
        """The manifest ``reference`` (a tag or a digest) in ``ref``'s repository, bounded and checked."""
        target = self._target(ref)
        expected = self._digest_or_tag(reference)
        return self._get_manifest(
            target, reference, expected, accept=MANIFEST_ACCEPT, missing=Reason.IMAGE_NOT_FOUND
        )

    def get_blob(self, ref: ImageRef, digest: Digest, max_bytes: int) -> bytes:
        """The blob ``digest`` in ``ref``'s repository: at most ``max_bytes``, digest verified."""
        return self._get_blob(self._target(ref), digest, max_bytes=max_bytes)

    def fetch_signatures(
        self, ref: ImageRef, digest: Digest, signature_repository: str | None = None
    ) -> list[Signature]:
        """cosign's legacy signatures: the layers of manifest ``<alg>-<hex>.sig``; [] when it is absent.

        The tag lives in ``ref``'s repository, or in ``signature_repository`` (a full ``host/path``, as
        cosign's COSIGN_REPOSITORY). Layers of another media type than simple signing are skipped.
        """
        target = self._signature_target(ref, signature_repository)
        tag = f"{digest.algorithm}-{digest.hex}.{SIGNATURE_TAG_SUFFIX}"
        body = self._optional_tagged_manifest(target, tag, accept=IMAGE_MANIFEST_ACCEPT)
        if body is None:
            return []
        where = f"{target.name}:{tag}"
        manifest = parse_image_manifest(body, max_layers=self.limits.max_signature_layers, what=where)
        signatures: list[Signature] = []
        for index, layer in enumerate(manifest.layers):
            if layer.media_type != SIMPLESIGNING:
                log.debug("%s layer %d: skipping media type %s", where, index, layer.media_type)
                continue
            payload = self._get_sized_blob(target, layer, f"{where} layer {index}")
            signatures.append(
                Signature(
                    kind="simplesigning",
                    payload=payload,
                    annotations=dict(layer.annotations),
                    layer_digest=layer.digest,
                    source=f"{where} layer {index}",
                    media_type=SIMPLESIGNING,
                )
            )
        return signatures

    def fetch_referrer_bundles(
        self, ref: ImageRef, digest: Digest, signature_repository: str | None = None
    ) -> list[Signature]:
        """Sigstore bundles attached as OCI 1.1 referrers of ``digest``; [] when there are none.

        Asks the referrers API (``GET /v2/<name>/referrers/<digest>``); when that 404s, reads the
        referrers tag schema (index at tag ``<alg>-<hex>``). Keeps entries whose ``artifactType`` is a
        Sigstore bundle, fetches each manifest (digest checked; its ``subject`` must be ``digest``) and
        its bundle layers (digest and size checked).
        """
        target = self._signature_target(ref, signature_repository)
        index_answer = self._request(
            target,
            f"/referrers/{digest}",
            method="GET",
            kind="manifest",
            accept=OCI_INDEX,
            max_bytes=self.limits.max_manifest_bytes,
        )
        where = f"{target.name} referrers of {digest}"
        if index_answer is not None:
            index_body = index_answer.body
        else:
            tag = f"{digest.algorithm}-{digest.hex[:REFERRERS_TAG_HEX_CHARS]}"
            where = f"{target.name}:{tag}"
            fallback = self._optional_tagged_manifest(target, tag, accept=INDEX_ACCEPT)
            if fallback is None:
                return []
            index_body = fallback
        index = parse_index(index_body, max_children=self.limits.max_index_children, what=where)

        bundles: list[Signature] = []
        for entry in index.manifests:
            if entry.artifact_type not in SIGSTORE_BUNDLE_TYPES or entry.media_type != OCI_MANIFEST:
                continue
            bundles.extend(self._referrer_bundles(target, entry, digest))
        return bundles

    # --- requests, endpoint by endpoint

    def _target(self, ref: ImageRef) -> _Target:
        return _Target(check_registry(ref.registry), check_repository(ref.repository))

    def _signature_target(self, ref: ImageRef, signature_repository: str | None) -> _Target:
        if signature_repository is None:
            return self._target(ref)
        registry, repository = parse_repository(signature_repository)
        return _Target(registry, repository)

    @staticmethod
    def _digest_or_tag(reference: str) -> Digest | None:
        if ":" in reference:
            return Digest.parse(reference)
        check_tag(reference)
        return None

    def _request(
        self,
        target: _Target,
        path: str,
        *,
        method: Literal["GET", "HEAD"],
        kind: RequestKind,
        max_bytes: int,
        accept: str | None = None,
    ) -> Answer | None:
        """Try each endpoint in order. None when the last endpoint said 404 (not found)."""
        endpoints = self._shared.config.endpoints(target.registry)
        failure: FetchError | None = None
        for endpoint in endpoints:
            try:
                answer = self._authorized(
                    endpoint, target, path, method=method, kind=kind, accept=accept, max_bytes=max_bytes
                )
            except FetchError as e:
                if e.reason is not Reason.REGISTRY_UNAVAILABLE:
                    raise
                log.info("registry endpoint %s unavailable for %s: %s", endpoint.url, target.name, e.detail)
                failure = e
                continue
            if answer.status == 404:
                log.debug("%s%s: 404 at %s", target.name, path, endpoint.url)
                failure = None
                continue
            if answer.status >= 500 or answer.status in RETRY_ELSEWHERE_STATUSES:
                failure = FetchError(
                    Reason.REGISTRY_UNAVAILABLE, f"{method} {answer.url}: HTTP {answer.status}"
                )
                log.info(
                    "registry endpoint %s failed for %s: HTTP %d", endpoint.url, target.name, answer.status
                )
                continue
            if answer.status != 200:
                raise FetchError(
                    Reason.REGISTRY_UNAVAILABLE, f"{method} {answer.url}: unexpected HTTP {answer.status}"
                )
            return answer
        if failure is not None:
            raise failure
        return None

    def _credential(self, endpoint: Endpoint) -> Credential | None:
        """Pull secrets (most recent first), then the ``configs`` entry of the endpoint's host."""
        for keychain in self._keychains:
            credential = keychain.lookup(endpoint.host)
            if credential is not None:
                return credential
        host_config = self._shared.config.host_config(endpoint.host)
        return host_config.credential if host_config is not None else None

    def _authorized(
        self,
        endpoint: Endpoint,
        target: _Target,
        path: str,
        *,
        method: Literal["GET", "HEAD"],
        kind: RequestKind,
        accept: str | None,
        max_bytes: int,
    ) -> Answer:
        """One request on one endpoint, authenticating as the endpoint asks."""
        url = f"{endpoint.url}/{target.repository}{path}"
        if endpoint.mirror:
            url += "?" + urlencode({"ns": target.registry})
        headers = {"Accept": accept} if accept else {}
        credential = self._credential(endpoint)
        authorization = self._prepared_authorization(endpoint, target, credential)
        answer = self._shared.transport.exchange(
            method, url, kind=kind, max_bytes=max_bytes, headers=headers, authorization=authorization
        )
        if answer.status == 401:
            challenge = self._pick_challenge(answer)
            if challenge is None:
                raise FetchError(
                    Reason.REGISTRY_AUTH_FAILED, f"{method} {url}: 401 without a usable challenge"
                )
            self._remember(endpoint, challenge)
            fresh = self._authorization_for(
                endpoint, target, credential, challenge, renew=authorization is not None
            )
            if fresh is None or fresh == authorization:
                raise FetchError(
                    Reason.REGISTRY_AUTH_FAILED, f"{method} {url}: 401 and no credential to offer"
                )
            answer = self._shared.transport.exchange(
                method, url, kind=kind, max_bytes=max_bytes, headers=headers, authorization=fresh
            )
        if answer.status in (401, 403):
            raise FetchError(
                Reason.REGISTRY_AUTH_FAILED, f"{method} {url}: HTTP {answer.status} after authenticating"
            )
        return answer

    # --- authentication

    @staticmethod
    def _pick_challenge(answer: Answer) -> Challenge | None:
        challenges = parse_challenges(answer.headers.get("WWW-Authenticate", ""))
        for scheme in ("bearer", "basic"):
            for challenge in challenges:
                if challenge.scheme == scheme:
                    return challenge
        return None

    def _remember(self, endpoint: Endpoint, challenge: Challenge) -> None:
        key = (endpoint.scheme, endpoint.host)
        known: _KnownChallenge | None = None
        if challenge.scheme == "basic":
            known = _KnownChallenge("basic", "", None)
        elif challenge.params.get("realm"):
            known = _KnownChallenge("bearer", challenge.params["realm"], challenge.params.get("service"))
        with self._shared.lock:
            if known is None:
                self._shared.challenges.pop(key, None)
            else:
                self._shared.challenges[key] = known

    def _prepared_authorization(
        self, endpoint: Endpoint, target: _Target, credential: Credential | None
    ) -> str | None:
        """Authorization to send up front, when this host already told us how it authenticates."""
        with self._shared.lock:
            known = self._shared.challenges.get((endpoint.scheme, endpoint.host))
        if known is None:
            return None
        if known.scheme == "basic":
            return credential.basic_header() if credential is not None else None
        params = {"realm": known.realm} | ({"service": known.service} if known.service else {})
        return self._authorization_for(endpoint, target, credential, Challenge("bearer", params), renew=False)

    def _authorization_for(
        self,
        endpoint: Endpoint,
        target: _Target,
        credential: Credential | None,
        challenge: Challenge,
        *,
        renew: bool,
    ) -> str | None:
        if challenge.scheme == "basic":
            return credential.basic_header() if credential is not None else None
        key = (endpoint.host, target.scope, credential.fingerprint if credential is not None else "")
        tokens = self._shared.tokens
        if renew:
            tokens.discard(key)
        else:
            cached = tokens.get(key)
            if cached is not None:
                return f"Bearer {cached}"
        scopes = [target.scope]
        challenge_scope = challenge.params.get("scope")
        if challenge_scope and challenge_scope not in scopes:
            scopes.append(challenge_scope)
        token = self._fetch_token(endpoint, challenge, scopes, credential)
        tokens.put(key, token)
        return f"Bearer {token.value}"

    def _fetch_token(
        self, endpoint: Endpoint, challenge: Challenge, scopes: Sequence[str], credential: Credential | None
    ) -> Token:
        realm = challenge.params.get("realm", "")
        parts = urlsplit(realm)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise FetchError(
                Reason.REGISTRY_AUTH_FAILED, f"{endpoint.host}: bearer realm {realm[:200]!r} is not a URL"
            )
        if parts.scheme == "http" and endpoint.scheme == "https":
            raise FetchError(
                Reason.REGISTRY_AUTH_FAILED,
                f"{endpoint.host}: refusing a plain-http token realm {realm[:200]}",
            )
        service = challenge.params.get("service")
        transport = self._shared.transport
        max_bytes = self.limits.max_token_bytes
        if credential is not None and credential.identity_token:
            form: dict[str, str] = {
                "grant_type": "refresh_token",
                "refresh_token": credential.identity_token,
                "client_id": TOKEN_CLIENT_ID,
                "scope": " ".join(scopes),
            }
            if service:
                form["service"] = service
            answer = transport.exchange("POST", realm, kind="token", max_bytes=max_bytes, data=form)
        else:
            query: list[tuple[str, str]] = [("service", service)] if service else []
            query.extend(("scope", scope) for scope in scopes)
            separator = "&" if parts.query else "?"
            url = realm + (separator + urlencode(query) if query else "")
            basic = credential.basic_header() if credential is not None else None
            answer = transport.exchange("GET", url, kind="token", max_bytes=max_bytes, authorization=basic)
        if answer.status in (401, 403):
            raise FetchError(
                Reason.REGISTRY_AUTH_FAILED, f"token endpoint {host_of(realm)} refused: HTTP {answer.status}"
            )
        if answer.status >= 500 or answer.status == 429:
            raise FetchError(
                Reason.REGISTRY_UNAVAILABLE, f"token endpoint {host_of(realm)} failed: HTTP {answer.status}"
            )
        if answer.status != 200:
            raise FetchError(
                Reason.REGISTRY_AUTH_FAILED, f"token endpoint {host_of(realm)} answered HTTP {answer.status}"
            )
        return parse_token_response(answer.body)

    # --- content

    def _optional_tagged_manifest(self, target: _Target, tag: str, *, accept: str) -> bytes | None:
        """The manifest at ``tag``, size-bounded and checked against its digest header; None on 404.

        For lookups whose absence is an answer (no ``.sig``, no referrers index), not an error.
        """
        answer = self._request(
            target,
            f"/manifests/{check_tag(tag)}",
            method="GET",
            kind="manifest",
            accept=accept,
            max_bytes=self.limits.max_manifest_bytes,
        )
        if answer is None:
            return None
        _checked_digest(answer, None, f"{target.name}:{tag}")
        return answer.body

    def _get_manifest(
        self, target: _Target, reference: str, expected: Digest | None, *, accept: str, missing: Reason
    ) -> Manifest:
        answer = self._request(
            target,
            f"/manifests/{reference}",
            method="GET",
            kind="manifest",
            accept=accept,
            max_bytes=self.limits.max_manifest_bytes,
        )
        where = f"{target.name}{'@' if expected else ':'}{reference}"
        if answer is None:
            raise FetchError(missing, f"{where}: manifest unknown")
        digest = _checked_digest(answer, expected, where)
        media_type = _media_type(answer)
        if media_type not in MANIFEST_TYPES:
            media_type = self._body_media_type(answer.body) or media_type
        return Manifest(media_type=media_type, body=answer.body, digest=digest)

    @staticmethod
    def _body_media_type(body: bytes) -> str | None:
        try:
            document = load_json_object(body, "manifest")
        except EvidenceError:
            return None
        value = document.get("mediaType")
        return value if isinstance(value, str) else None

    def _get_blob(self, target: _Target, digest: Digest, *, max_bytes: int) -> bytes:
        answer = self._request(target, f"/blobs/{digest}", method="GET", kind="blob", max_bytes=max_bytes)
        where = f"{target.name}@{digest}"
        if answer is None:
            raise FetchError(Reason.IMAGE_NOT_FOUND, f"{where}: blob unknown")
        if not digest.matches(answer.body):
            raise EvidenceError(Reason.DIGEST_MISMATCH, f"{where}: blob content does not hash to its digest")
        return answer.body

    def _get_sized_blob(self, target: _Target, descriptor: Descriptor, where: str) -> bytes:
        """A layer blob, honouring its descriptor's size (bounded by ``max_blob_bytes``)."""
        if descriptor.size > self.limits.max_blob_bytes:
            raise LimitError(
                f"{where}: size {descriptor.size} exceeds the {self.limits.max_blob_bytes}-byte limit"
            )
        body = self._get_blob(target, descriptor.digest, max_bytes=descriptor.size)
        if len(body) != descriptor.size:
            raise EvidenceError(
                Reason.MANIFEST_INVALID, f"{where}: descriptor size {descriptor.size} is wrong"
            )
        return body

    def _referrer_bundles(self, target: _Target, entry: Descriptor, subject: Digest) -> list[Signature]:
        where = f"{target.name}@{entry.digest}"
        if entry.size > self.limits.max_manifest_bytes:
            raise LimitError(f"{where}: manifest size {entry.size} exceeds the limit")
        manifest_bytes = self._get_manifest(
            target, str(entry.digest), entry.digest, accept=OCI_MANIFEST, missing=Reason.IMAGE_NOT_FOUND
        ).body
        manifest = parse_image_manifest(
            manifest_bytes, max_layers=self.limits.max_signature_layers, what=where
        )
        if manifest.subject is None or manifest.subject.digest != subject:
            log.info("%s: referrer whose subject is not %s, skipped", where, subject)
            return []
        annotations: Mapping[str, str] = {**entry.annotations, **manifest.annotations}
        out: list[Signature] = []
        for index, layer in enumerate(manifest.layers):
            if layer.media_type not in SIGSTORE_BUNDLE_TYPES:
                continue
            payload = self._get_sized_blob(target, layer, f"{where} layer {index}")
            out.append(
                Signature(
                    kind="bundle",
                    payload=payload,
                    annotations=dict(annotations),
                    layer_digest=layer.digest,
                    source=f"{where} layer {index}",
                    media_type=layer.media_type,
                )
            )
        return out
