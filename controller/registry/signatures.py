"""Signature material: cosign's legacy ``.sig`` tag and Sigstore bundles attached as OCI 1.1 referrers.

* ``.sig``: the layers of manifest ``<alg>-<hex>.sig`` (in the image's repository or cosign's
  ``COSIGN_REPOSITORY``); layers of another media type than simple signing are skipped.
* ``.att``: cosign ≤ 2's attestations, one DSSE envelope per layer of manifest ``<alg>-<hex>.att``
  (same place, same bounds as ``.sig``); layers of another media type than DSSE are skipped.
* Referrers: the referrers API (``GET /v2/<name>/referrers/<digest>``), else the referrers tag schema
  (an index at tag ``<alg>-<hex>``). A registry without the API (distribution 2.8 answers
  ``404 page not found`` in plain text; others say 400, 405 or 501) falls back quietly, and the
  endpoint is remembered as API-less for :data:`REFERRERS_ABSENT_TTL_SECONDS` so that later calls skip
  the round trip. A real failure (other 5xx, connection) still raises. cosign v3 stores signatures
  and attestations alike as bundle referrers (an attestation's manifest says
  ``dev.sigstore.bundle.content: dsse-envelope`` and names its ``dev.sigstore.bundle.predicateType``):
  both are fetched, and verification tells them apart.

Within one call a blob digest is fetched once and its bytes reused, and the layers taken from all the
manifests of the call count against one bound: a referrers index of many manifests that all list the
same big blob costs one fetch, not one per layer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

from controller.errors import LimitError, Reason
from controller.model import Digest, Signature, SignatureKind
from controller.registry.budget import Budget
from controller.registry.config import Endpoint
from controller.registry.content import get_manifest, get_sized_blob, optional_tagged_manifest
from controller.registry.endpoints import Requester, Target
from controller.registry.manifest import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    SIGSTORE_BUNDLE_TYPES,
    SIMPLESIGNING,
    Descriptor,
    parse_image_manifest,
    parse_index,
)
from controller.registry.transport import Answer

log = logging.getLogger(__name__)

IMAGE_MANIFEST_ACCEPT = ", ".join((OCI_MANIFEST, DOCKER_MANIFEST))
INDEX_ACCEPT = ", ".join((OCI_INDEX, DOCKER_MANIFEST_LIST))

REFERRERS_TAG_HEX_CHARS = 64
"""The referrers tag schema truncates the digest's hex to 64 characters (distribution-spec)."""

SIGNATURE_TAG_SUFFIX = "sig"
"""cosign's legacy signature tag: ``<alg>-<hex>.sig`` in the image's (or COSIGN_REPOSITORY's) repo."""

ATTESTATION_TAG_SUFFIX = "att"
"""cosign's legacy attestation tag: ``<alg>-<hex>.att``, beside the ``.sig`` tag."""

DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
"""The layer media type of a cosign attestation on a ``.att`` manifest (one DSSE envelope per layer)."""

REFERRERS_UNSUPPORTED_STATUSES = frozenset({400, 404, 405, 406, 501})
"""Answers to the referrers API that mean "no such API here". distribution-spec: a registry that
supports it must not answer 404; distribution 2.8 answers ``404 page not found`` (text/plain)."""

REFERRERS_ABSENT_TTL_SECONDS = 600.0
MAX_REFERRERS_ABSENT_HOSTS = 1024


class ReferrersMemory:
    """Endpoints known to lack the referrers API, each remembered for a while (bounded, thread-safe)."""

    def __init__(
        self,
        ttl: float = REFERRERS_ABSENT_TTL_SECONDS,
        max_entries: int = MAX_REFERRERS_ABSENT_HOSTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._until: OrderedDict[tuple[str, str, str], float] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(endpoint: Endpoint) -> tuple[str, str, str]:
        return endpoint.scheme, endpoint.host, endpoint.api_root

    def absent(self, endpoint: Endpoint) -> bool:
        """True while ``endpoint`` is remembered as lacking the referrers API."""
        key = self._key(endpoint)
        with self._lock:
            until = self._until.get(key)
            if until is None:
                return False
            if until <= self._clock():
                del self._until[key]
                return False
            return True

    def remember(self, endpoint: Endpoint, answer: Answer) -> None:
        log.debug("%s has no referrers API (HTTP %d): using the tag schema", endpoint.url, answer.status)
        key = self._key(endpoint)
        with self._lock:
            self._until.pop(key, None)
            self._until[key] = self._clock() + self._ttl
            while len(self._until) > self._max:
                self._until.popitem(last=False)


class _Call:
    """What one fetch call shares: the blobs fetched so far (by digest) and the layers taken."""

    def __init__(self, requester: Requester, target: Target, budget: Budget | None) -> None:
        self.requester = requester
        self.target = target
        self.budget = budget
        self.blobs: dict[Digest, bytes] = {}
        self.layers = 0

    def take_layers(self, count: int, where: str) -> None:
        bound = self.requester.limits.max_signature_layers
        self.layers += count
        if self.layers > bound:
            raise LimitError(f"{where}: more than {bound} signature layers in one lookup")

    def blob(self, layer: Descriptor, where: str) -> bytes:
        cached = self.blobs.get(layer.digest)
        if cached is not None and len(cached) == layer.size:
            return cached
        body = get_sized_blob(self.requester, self.target, layer, where, self.budget)
        self.blobs[layer.digest] = body
        return body


def fetch_signatures(
    requester: Requester, target: Target, digest: Digest, *, budget: Budget | None
) -> list[Signature]:
    """cosign's legacy signatures in ``target``: the layers of ``<alg>-<hex>.sig``; [] when absent."""
    return _tagged_layers(
        requester,
        target,
        digest,
        suffix=SIGNATURE_TAG_SUFFIX,
        media_type=SIMPLESIGNING,
        kind="simplesigning",
        budget=budget,
    )


def fetch_attestations(
    requester: Requester, target: Target, digest: Digest, *, budget: Budget | None
) -> list[Signature]:
    """cosign's legacy attestations in ``target``: the DSSE layers of ``<alg>-<hex>.att``; [] when absent.

    Each layer's annotations (``predicateType``, ``dev.sigstore.cosign/certificate``, ``.../chain``,
    ``.../bundle``) are kept as they are; the same layer, byte and deadline bounds as ``.sig`` apply.
    """
    return _tagged_layers(
        requester,
        target,
        digest,
        suffix=ATTESTATION_TAG_SUFFIX,
        media_type=DSSE_ENVELOPE,
        kind="attestation",
        budget=budget,
    )


def _tagged_layers(
    requester: Requester,
    target: Target,
    digest: Digest,
    *,
    suffix: str,
    media_type: str,
    kind: SignatureKind,
    budget: Budget | None,
) -> list[Signature]:
    """The layers of ``media_type`` on manifest ``<alg>-<hex>.<suffix>``, fetched and digest-checked."""
    tag = f"{digest.algorithm}-{digest.hex}.{suffix}"
    body = optional_tagged_manifest(requester, target, tag, accept=IMAGE_MANIFEST_ACCEPT, budget=budget)
    if body is None:
        return []
    where = f"{target.name}:{tag}"
    manifest = parse_image_manifest(body, max_layers=requester.limits.max_signature_layers, what=where)
    call = _Call(requester, target, budget)
    found: list[Signature] = []
    for index, layer in enumerate(manifest.layers):
        if layer.media_type != media_type:
            log.debug("%s layer %d: skipping media type %s", where, index, layer.media_type)
            continue
        call.take_layers(1, where)
        found.append(
            Signature(
                kind=kind,
                payload=call.blob(layer, f"{where} layer {index}"),
                annotations=dict(layer.annotations),
                layer_digest=layer.digest,
                source=f"{where} layer {index}",
                media_type=media_type,
            )
        )
    return found


def fetch_referrer_bundles(
    requester: Requester,
    target: Target,
    digest: Digest,
    *,
    memory: ReferrersMemory,
    budget: Budget | None,
) -> list[Signature]:
    """Sigstore bundles attached as OCI 1.1 referrers of ``digest`` in ``target``; [] when none.

    Keeps index entries whose ``artifactType`` is a Sigstore bundle, fetches each manifest (digest
    checked; its ``subject`` must be ``digest``) and its bundle layers (digest and size checked).
    """
    limits = requester.limits
    index_answer = requester.request(
        target,
        f"/referrers/{digest}",
        method="GET",
        kind="manifest",
        accept=OCI_INDEX,
        max_bytes=limits.max_manifest_bytes,
        budget=budget,
        absent=REFERRERS_UNSUPPORTED_STATUSES,
        skip=memory.absent,
        on_absent=memory.remember,
    )
    where = f"{target.name} referrers of {digest}"
    if index_answer is not None:
        index_body = index_answer.body
    else:
        tag = f"{digest.algorithm}-{digest.hex[:REFERRERS_TAG_HEX_CHARS]}"
        where = f"{target.name}:{tag}"
        fallback = optional_tagged_manifest(requester, target, tag, accept=INDEX_ACCEPT, budget=budget)
        if fallback is None:
            return []
        index_body = fallback
    index = parse_index(index_body, max_children=limits.max_index_children, what=where)
    call = _Call(requester, target, budget)
    bundles: list[Signature] = []
    for entry in index.manifests:
        if entry.artifact_type not in SIGSTORE_BUNDLE_TYPES or entry.media_type != OCI_MANIFEST:
            continue
        bundles.extend(_referrer_bundles(call, entry, digest))
    return bundles


def _referrer_bundles(call: _Call, entry: Descriptor, subject: Digest) -> list[Signature]:
    limits = call.requester.limits
    where = f"{call.target.name}@{entry.digest}"
    if entry.size > limits.max_manifest_bytes:
        raise LimitError(f"{where}: manifest size {entry.size} exceeds the limit")
    manifest_bytes = get_manifest(
        call.requester,
        call.target,
        str(entry.digest),
        entry.digest,
        accept=OCI_MANIFEST,
        missing=Reason.IMAGE_NOT_FOUND,
        where=f"{where}: ",
        budget=call.budget,
    ).body
    manifest = parse_image_manifest(manifest_bytes, max_layers=limits.max_signature_layers, what=where)
    if manifest.subject is None or manifest.subject.digest != subject:
        log.info("%s: referrer whose subject is not %s, skipped", where, subject)
        return []
    bundle_layers = [
        (index, layer)
        for index, layer in enumerate(manifest.layers)
        if layer.media_type in SIGSTORE_BUNDLE_TYPES
    ]
    call.take_layers(len(bundle_layers), where)
    annotations: Mapping[str, str] = {**entry.annotations, **manifest.annotations}
    return [
        Signature(
            kind="bundle",
            payload=call.blob(layer, f"{where} layer {index}"),
            annotations=dict(annotations),
            layer_digest=layer.digest,
            source=f"{where} layer {index}",
            media_type=layer.media_type,
        )
        for index, layer in bundle_layers
    ]
