"""The cosign simple-signing payload (checklist step 2).

The payload is the "atomic container signature" format of containers/image
(https://github.com/containers/image/blob/main/docs/containers-signature.5.md), as cosign writes it::

    {"critical": {"identity": {"docker-reference": "..."},
                  "image": {"docker-manifest-digest": "sha256:..."},
                  "type": "cosign container image signature"},
     "optional": null | {...}}

The exact bytes are parsed once, strictly (:mod:`controller.verify.jsonstrict`). The format says
consumers must reject unknown fields in ``critical``; we also reject unknown top-level fields.
``optional`` entries become annotations: strings verbatim, any other value as its compact JSON
(``1``, ``true``, ``null``, ``{"a":1}``), which is how cosign's ``-a key=value`` flags compare them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

from controller.errors import EvidenceError, Reason
from controller.model import Digest
from controller.verify import jsonstrict
from controller.verify.jsonstrict import StrictJsonError

COSIGN_SIGNATURE_TYPE: Final = "cosign container image signature"
# The fields of each object of the format (built once, not per signature).
_TOP_REQUIRED: Final = frozenset({"critical"})
_TOP_OPTIONAL: Final = frozenset({"optional"})
_CRITICAL_FIELDS: Final = frozenset({"identity", "image", "type"})
_IDENTITY_FIELDS: Final = frozenset({"docker-reference"})
_IMAGE_FIELDS: Final = frozenset({"docker-manifest-digest"})


@dataclass(frozen=True, slots=True)
class SimpleSigningPayload:
    """What a cosign payload claims: the image digest, the reference it was signed as, annotations."""

    docker_manifest_digest: str
    docker_reference: str
    annotations: dict[str, str]


def _stringify(value: object) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def parse_payload(data: bytes) -> SimpleSigningPayload:
    """Parse the exact payload bytes. Anything malformed -> ``PayloadInvalid``."""
    try:
        doc = jsonstrict.fields(
            jsonstrict.loads(data),
            "payload",
            required=_TOP_REQUIRED,
            optional=_TOP_OPTIONAL,
        )
        critical = jsonstrict.fields(doc["critical"], "critical", required=_CRITICAL_FIELDS)
        kind = jsonstrict.get_str(critical, "type", "critical")
        identity = jsonstrict.fields(critical["identity"], "critical.identity", required=_IDENTITY_FIELDS)
        image = jsonstrict.fields(critical["image"], "critical.image", required=_IMAGE_FIELDS)
        reference = jsonstrict.get_str(identity, "docker-reference", "critical.identity")
        manifest_digest = jsonstrict.get_str(image, "docker-manifest-digest", "critical.image")
        optional = doc.get("optional")
        annotations = (
            {}
            if optional is None
            else {k: _stringify(v) for k, v in jsonstrict.as_object(optional, "optional").items()}
        )
    except StrictJsonError as e:
        raise EvidenceError(Reason.PAYLOAD_INVALID, f"simple-signing payload: {e}") from e
    if kind != COSIGN_SIGNATURE_TYPE:
        raise EvidenceError(Reason.PAYLOAD_INVALID, f"payload type is {kind[:100]!r}")
    return SimpleSigningPayload(
        docker_manifest_digest=manifest_digest, docker_reference=reference, annotations=annotations
    )


def check_payload_digest(payload: SimpleSigningPayload, digest: Digest) -> None:
    """The payload must name exactly this image digest -> else ``PayloadDigestMismatch``."""
    if payload.docker_manifest_digest != str(digest):
        raise EvidenceError(
            Reason.PAYLOAD_DIGEST_MISMATCH,
            f"payload signs {payload.docker_manifest_digest[:80]!r}, not {digest}",
        )
