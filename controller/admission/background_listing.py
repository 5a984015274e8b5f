"""What runs: Pods and workload templates listed in bounded, paced pages, kept as (workload, images).

Skipped: the namespaces the webhook never sees (the caller's ``excluded``), finished Pods and
ReplicaSets scaled to zero (nothing of them runs), and objects whose images cannot be read (a hostile
or malformed spec is logged, never fatal). At most ``max_objects`` per kind are read; a cut, or a
failed page, makes the listing incomplete, which keeps stale reports and flip memory as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from controller.admission.background_pace import Pacer
from controller.admission.posture_kube import ObjectLister, WorkloadKind
from controller.config import BackgroundSettings
from controller.errors import ImprimaturError, InputError
from controller.posture import WorkloadImages, WorkloadRef
from controller.workload import images_of

log = logging.getLogger(__name__)

EXCLUDE_LABEL: Final = "imprimatur.dev/exclude"
MAX_NAME: Final = 253


@dataclass(slots=True)
class Listing:
    workloads: list[WorkloadImages] = field(default_factory=list)
    objects: int = 0
    complete: bool = True


def _ref(kind: WorkloadKind, obj: Mapping[str, object]) -> WorkloadRef | None:
    metadata = obj.get("metadata")
    if not isinstance(metadata, Mapping):
        return None
    namespace, name, uid = metadata.get("namespace"), metadata.get("name"), metadata.get("uid")
    if not isinstance(namespace, str) or not isinstance(name, str) or not namespace or not name:
        return None
    return WorkloadRef(
        namespace[:MAX_NAME],
        kind.kind,
        name[:MAX_NAME],
        kind.api_version,
        uid[:64] if isinstance(uid, str) else "",
    )


def _inactive(kind: WorkloadKind, obj: Mapping[str, object]) -> bool:
    """A finished Pod, or a ReplicaSet scaled to zero (an old rollout): nothing of it runs."""
    if kind.kind == "Pod":
        status = obj.get("status")
        return isinstance(status, Mapping) and status.get("phase") in ("Succeeded", "Failed")
    if kind.kind == "ReplicaSet":
        spec = obj.get("spec")
        return isinstance(spec, Mapping) and spec.get("replicas") == 0
    return False


def _images(kind: WorkloadKind, obj: Mapping[str, object], ref: WorkloadRef) -> tuple[str, ...]:
    typed = {**obj, "apiVersion": kind.api_version, "kind": kind.kind}  # list items lack both
    try:
        return tuple(dict.fromkeys(c.image for c in images_of(typed)))
    except InputError as e:
        log.debug("background: %s: %s", ref, e.detail)
        return ()


async def collect(
    lister: ObjectLister,
    kinds: Sequence[WorkloadKind],
    settings: BackgroundSettings,
    excluded: Callable[[str], bool],
    pace: Pacer,
) -> Listing:
    """Every kind, page by page (the wait for a page is not a slice; each object is a tick)."""
    listing = Listing()
    for kind in kinds:
        token: str | None = None
        seen = 0
        while True:
            try:
                async with pace.away():
                    page = await lister.list_page(kind, limit=settings.page_size, token=token)
            except ImprimaturError as e:
                log.warning("background: listing %s failed: %s", kind.plural, e.message())
                listing.complete = False
                break
            for obj in page.items:
                await pace.tick()  # admission first
                seen += 1
                if seen > settings.max_objects:
                    break
                ref = _ref(kind, obj)
                if ref is None or excluded(ref.namespace) or _inactive(kind, obj):
                    continue
                images = _images(kind, obj, ref)
                if images:
                    listing.workloads.append(WorkloadImages(ref, images))
            listing.objects += min(len(page.items), max(0, settings.max_objects - (seen - len(page.items))))
            if seen > settings.max_objects:
                log.warning(
                    "background: more than %d %s: the rest wait for a later cycle",
                    settings.max_objects,
                    kind.plural,
                )
                listing.complete = False
                break
            if page.token is None:
                break
            token = page.token
    return listing
