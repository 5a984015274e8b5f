"""Manifests and blobs: fetched through a :class:`Requester`, bounded, and checked against their digests.

Failures, by reason: a manifest or blob that is not there -> FetchError(ImageNotFound, unless the caller
says otherwise); a body that does not hash to its digest -> EvidenceError(DigestMismatch); a descriptor
whose size is wrong -> EvidenceError(ManifestInvalid); any bound -> LimitError(LimitExceeded).

Details name the repository only when asked to (``where``): the engine puts the image reference in
front of every detail, so a detail about the image's own repository need not repeat it.
"""

from __future__ import annotations

from controller.errors import EvidenceError, FetchError, InputError, LimitError, Reason
from controller.model import Digest
from controller.registry.budget import Budget
from controller.registry.endpoints import Requester, Target
from controller.registry.manifest import MANIFEST_TYPES, Descriptor, Manifest, load_json_object
from controller.registry.reference import check_tag
from controller.registry.transport import Answer

DIGEST_HEADER = "Docker-Content-Digest"


def _media_type(answer: Answer) -> str:
    content_type = answer.headers.get("Content-Type", "")
    return content_type.split(";", 1)[0].strip().lower()


def header_digest(answer: Answer, what: str) -> Digest | None:
    """The digest the registry claims in ``Docker-Content-Digest``, if any (malformed: an error)."""
    value = answer.headers.get(DIGEST_HEADER)
    if value is None:
        return None
    try:
        return Digest.parse(value.strip())
    except InputError as e:
        raise EvidenceError(Reason.MANIFEST_INVALID, f"{what}: bad {DIGEST_HEADER} {value[:100]!r}") from e


def checked_digest(answer: Answer, expected: Digest | None, what: str) -> Digest:
    """The digest of ``answer.body``, checked against ``expected`` and the digest header."""
    header = header_digest(answer, what)
    for claimed in (expected, header):
        if claimed is not None and not claimed.matches(answer.body):
            raise EvidenceError(Reason.DIGEST_MISMATCH, f"{what}: content does not hash to {claimed}")
    if expected is not None:
        return expected
    if header is not None:
        return header
    return Digest.of(answer.body)


def _body_media_type(body: bytes) -> str | None:
    try:
        document = load_json_object(body, "manifest")
    except EvidenceError:
        return None
    value = document.get("mediaType")
    return value if isinstance(value, str) else None


def _manifest_answer(
    requester: Requester, target: Target, reference: str, *, accept: str, budget: Budget | None
) -> Answer | None:
    """GET the manifest ``reference`` (a checked tag or a digest), bounded; None on 404."""
    return requester.request(
        target,
        f"/manifests/{reference}",
        method="GET",
        kind="manifest",
        accept=accept,
        max_bytes=requester.limits.max_manifest_bytes,
        budget=budget,
    )


def optional_tagged_manifest(
    requester: Requester, target: Target, tag: str, *, accept: str, budget: Budget | None
) -> bytes | None:
    """The manifest at ``tag``, size-bounded and checked against its digest header; None on 404.

    For lookups whose absence is an answer (no ``.sig``, no referrers index), not an error.
    """
    answer = _manifest_answer(requester, target, check_tag(tag), accept=accept, budget=budget)
    if answer is None:
        return None
    checked_digest(answer, None, f"{target.name}:{tag}")
    return answer.body


def get_manifest(
    requester: Requester,
    target: Target,
    reference: str,
    expected: Digest | None,
    *,
    accept: str,
    missing: Reason,
    where: str,
    budget: Budget | None,
) -> Manifest:
    """The manifest ``reference`` (tag or digest) in ``target``; ``where`` prefixes every detail."""
    answer = _manifest_answer(requester, target, reference, accept=accept, budget=budget)
    if answer is None:
        raise FetchError(missing, f"{where}manifest unknown")
    digest = checked_digest(answer, expected, f"{where}manifest")
    media_type = _media_type(answer)
    if media_type not in MANIFEST_TYPES:
        media_type = _body_media_type(answer.body) or media_type
    return Manifest(media_type=media_type, body=answer.body, digest=digest)


def get_blob(
    requester: Requester, target: Target, digest: Digest, *, max_bytes: int, where: str, budget: Budget | None
) -> bytes:
    """The blob ``digest`` in ``target``: at most ``max_bytes``, digest verified."""
    answer = requester.request(
        target, f"/blobs/{digest}", method="GET", kind="blob", max_bytes=max_bytes, budget=budget
    )
    if answer is None:
        raise FetchError(Reason.IMAGE_NOT_FOUND, f"{where}blob {digest} unknown")
    if not digest.matches(answer.body):
        raise EvidenceError(Reason.DIGEST_MISMATCH, f"{where}blob {digest}: content does not hash to it")
    return answer.body


def get_sized_blob(
    requester: Requester, target: Target, descriptor: Descriptor, where: str, budget: Budget | None
) -> bytes:
    """A layer blob, honouring its descriptor's size (bounded by ``max_blob_bytes``)."""
    limit = requester.limits.max_blob_bytes
    if descriptor.size > limit:
        raise LimitError(f"{where}: size {descriptor.size} exceeds the {limit}-byte limit")
    body = get_blob(
        requester, target, descriptor.digest, max_bytes=descriptor.size, where=f"{where}: ", budget=budget
    )
    if len(body) != descriptor.size:
        raise EvidenceError(Reason.MANIFEST_INVALID, f"{where}: descriptor size {descriptor.size} is wrong")
    return body
