"""One registry request, endpoint by endpoint, authenticated as each endpoint asks.

A request for a registry walks that registry's endpoints (its mirrors in order, then the upstream) and
moves on after a connection failure, a 5xx/429, or an "absent" status (404 by default); the last
endpoint's answer decides. Authentication follows the distribution token flow (``401`` +
``WWW-Authenticate: Bearer realm=...`` -> token endpoint) or Basic; tokens are cached per
(host, scope, credential), and the challenge each host last sent is remembered so that later requests
authenticate up front. Every exchange, token fetches included, is charged to the caller's budget.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlencode, urlsplit

import requests

from controller.errors import FetchError, Reason
from controller.registry.auth import (
    Challenge,
    Credential,
    Keychain,
    Token,
    TokenCache,
    parse_challenges,
    parse_token_response,
)
from controller.registry.budget import Budget
from controller.registry.config import Endpoint, RegistryConfig
from controller.registry.failures import short_url
from controller.registry.limits import Limits
from controller.registry.transport import Answer, RequestKind, Transport, host_of

log = logging.getLogger(__name__)

TOKEN_CLIENT_ID = "imprimatur"  # noqa: S105 - an OAuth2 client name, not a secret

RETRY_ELSEWHERE_STATUSES = frozenset({429})
"""Besides 5xx, the statuses that send a request on to the next endpoint (as 404 does)."""

NOT_FOUND = frozenset({404})


@dataclass(frozen=True, slots=True)
class Target:
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


class Shared:
    """What clients derived by ``RegistryClient.with_keychain`` share: session, tokens, challenges."""

    def __init__(self, session: requests.Session, config: RegistryConfig, limits: Limits) -> None:
        self.session = session
        self.config = config
        self.limits = limits
        self.transport = Transport(session, config, limits)
        self.tokens = TokenCache()
        self.challenges: dict[tuple[str, str], _KnownChallenge] = {}
        self.lock = threading.Lock()


class Requester:
    """Sends requests for one client: its shared state and its keychains (most recent first)."""

    def __init__(self, shared: Shared, keychains: tuple[Keychain, ...]) -> None:
        self.shared = shared
        self.keychains = keychains

    @property
    def limits(self) -> Limits:
        return self.shared.limits

    def request(
        self,
        target: Target,
        path: str,
        *,
        method: Literal["GET", "HEAD"],
        kind: RequestKind,
        max_bytes: int,
        accept: str | None = None,
        budget: Budget | None = None,
        absent: frozenset[int] = NOT_FOUND,
        skip: Callable[[Endpoint], bool] | None = None,
        on_absent: Callable[[Endpoint, Answer], None] | None = None,
    ) -> Answer | None:
        """Try each endpoint in order (but those ``skip`` names). None when the last said ``absent``."""
        failure: FetchError | None = None
        for endpoint in self.shared.config.endpoints(target.registry):
            if skip is not None and skip(endpoint):
                continue
            try:
                answer = self._authorized(
                    endpoint, target, path, method=method, kind=kind, accept=accept, max_bytes=max_bytes,
                    budget=budget,
                )  # fmt: skip
            except FetchError as e:
                if e.reason is not Reason.REGISTRY_UNAVAILABLE:
                    raise
                log.info("registry endpoint %s unavailable for %s: %s", endpoint.url, target.name, e.detail)
                failure = e
                continue
            if answer.status in absent:
                log.debug("%s%s: HTTP %d at %s", target.name, path, answer.status, endpoint.url)
                if on_absent is not None:
                    on_absent(endpoint, answer)
                failure = None
                continue
            what = f"{method} {short_url(answer.url)}"
            if answer.status >= 500 or answer.status in RETRY_ELSEWHERE_STATUSES:
                failure = FetchError(Reason.REGISTRY_UNAVAILABLE, f"{what}: HTTP {answer.status}")
                log.info(
                    "registry endpoint %s failed for %s: HTTP %d", endpoint.url, target.name, answer.status
                )
                continue
            if answer.status != 200:
                raise FetchError(Reason.REGISTRY_UNAVAILABLE, f"{what}: unexpected HTTP {answer.status}")
            return answer
        if failure is not None:
            raise failure
        return None

    def _credential(self, endpoint: Endpoint) -> Credential | None:
        """Pull secrets (most recent first), then the ``configs`` entry of the endpoint's host."""
        for keychain in self.keychains:
            credential = keychain.lookup(endpoint.host)
            if credential is not None:
                return credential
        host_config = self.shared.config.host_config(endpoint.host)
        return host_config.credential if host_config is not None else None

    def _authorized(
        self,
        endpoint: Endpoint,
        target: Target,
        path: str,
        *,
        method: Literal["GET", "HEAD"],
        kind: RequestKind,
        accept: str | None,
        max_bytes: int,
        budget: Budget | None,
    ) -> Answer:
        """One request on one endpoint, authenticating as the endpoint asks."""
        url = f"{endpoint.url}/{target.repository}{path}"
        if endpoint.mirror:
            url += "?" + urlencode({"ns": target.registry})
        what = f"{method} {short_url(url)}"
        headers = {"Accept": accept} if accept else {}
        credential = self._credential(endpoint)
        authorization = self._prepared_authorization(endpoint, target, credential, budget)
        transport = self.shared.transport
        answer = transport.exchange(
            method, url, kind=kind, max_bytes=max_bytes, headers=headers, authorization=authorization,
            budget=budget,
        )  # fmt: skip
        if answer.status == 401:
            challenge = self._pick_challenge(answer)
            if challenge is None:
                raise FetchError(Reason.REGISTRY_AUTH_FAILED, f"{what}: 401 without a usable challenge")
            self._remember(endpoint, challenge)
            fresh = self._authorization_for(
                endpoint, target, credential, challenge, renew=authorization is not None, budget=budget
            )
            if fresh is None or fresh == authorization:
                raise FetchError(Reason.REGISTRY_AUTH_FAILED, f"{what}: 401 and no credential to offer")
            answer = transport.exchange(
                method, url, kind=kind, max_bytes=max_bytes, headers=headers, authorization=fresh,
                budget=budget,
            )  # fmt: skip
        if answer.status in (401, 403):
            raise FetchError(
                Reason.REGISTRY_AUTH_FAILED, f"{what}: HTTP {answer.status} after authenticating"
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
        with self.shared.lock:
            if known is None:
                self.shared.challenges.pop(key, None)
            else:
                self.shared.challenges[key] = known

    def _prepared_authorization(
        self, endpoint: Endpoint, target: Target, credential: Credential | None, budget: Budget | None
    ) -> str | None:
        """Authorization to send up front, when this host already told us how it authenticates."""
        with self.shared.lock:
            known = self.shared.challenges.get((endpoint.scheme, endpoint.host))
        if known is None:
            return None
        if known.scheme == "basic":
            return credential.basic_header() if credential is not None else None
        params = {"realm": known.realm} | ({"service": known.service} if known.service else {})
        return self._authorization_for(
            endpoint, target, credential, Challenge("bearer", params), renew=False, budget=budget
        )

    def _authorization_for(
        self,
        endpoint: Endpoint,
        target: Target,
        credential: Credential | None,
        challenge: Challenge,
        *,
        renew: bool,
        budget: Budget | None,
    ) -> str | None:
        if challenge.scheme == "basic":
            return credential.basic_header() if credential is not None else None
        key = (endpoint.host, target.scope, credential.fingerprint if credential is not None else "")
        tokens = self.shared.tokens
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
        token = self._fetch_token(endpoint, challenge, scopes, credential, budget)
        tokens.put(key, token)
        return f"Bearer {token.value}"

    def _fetch_token(
        self,
        endpoint: Endpoint,
        challenge: Challenge,
        scopes: Sequence[str],
        credential: Credential | None,
        budget: Budget | None,
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
        transport = self.shared.transport
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
            answer = transport.exchange(
                "POST", realm, kind="token", max_bytes=max_bytes, data=form, budget=budget
            )
        else:
            query: list[tuple[str, str]] = [("service", service)] if service else []
            query.extend(("scope", scope) for scope in scopes)
            separator = "&" if parts.query else "?"
            url = realm + (separator + urlencode(query) if query else "")
            basic = credential.basic_header() if credential is not None else None
            answer = transport.exchange(
                "GET", url, kind="token", max_bytes=max_bytes, authorization=basic, budget=budget
            )
        host = host_of(realm)
        if answer.status in (401, 403):
            raise FetchError(
                Reason.REGISTRY_AUTH_FAILED, f"token endpoint {host} refused: HTTP {answer.status}"
            )
        if answer.status >= 500 or answer.status == 429:
            raise FetchError(
                Reason.REGISTRY_UNAVAILABLE, f"token endpoint {host} failed: HTTP {answer.status}"
            )
        if answer.status != 200:
            raise FetchError(
                Reason.REGISTRY_AUTH_FAILED, f"token endpoint {host} answered HTTP {answer.status}"
            )
        return parse_token_response(answer.body)
