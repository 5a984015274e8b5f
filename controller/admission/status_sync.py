"""Bringing the status of our objects up to date when something *other* than the object changed.

kopf hands a ``patch`` only to the handler of the object whose event it is. When a TrustRoot is
created, deleted or its data edited, the Ready condition of every policy naming it changes too (and a
refreshed TrustRoot's own). :class:`StatusSync` remembers the last status seen of each object and
merge-patches ``/status`` through the API where it no longer tells the truth. A patch produces a new
event, whose handler then finds nothing to do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Final

from controller.admission.kube import StatusWriter
from controller.admission.objects import ObjectKey, PolicyEntry, TrustRootEntry
from controller.admission.status import status_differs
from controller.errors import ImprimaturError

log = logging.getLogger(__name__)

PLURALS: Final = {
    "ClusterImagePolicy": "clusterimagepolicies",
    "ImagePolicy": "imagepolicies",
    "TrustRoot": "trustroots",
}
MAX_STATUS_PATCHES: Final = 1000  # per sync: bounded; the next sync continues

DesiredStatus = Callable[[Mapping[str, object], PolicyEntry | TrustRootEntry], dict[str, object]]


class StatusSync:
    """The last status seen of each object, and the patches that bring it up to date."""

    def __init__(self, writer: object) -> None:
        self._writer = writer if isinstance(writer, StatusWriter) else None
        self._seen: dict[ObjectKey, Mapping[str, object]] = {}

    def seen(self, key: ObjectKey, body: Mapping[str, object]) -> None:
        status = body.get("status")
        self._seen[key] = status if isinstance(status, Mapping) else {}

    def forget(self, key: ObjectKey) -> None:
        self._seen.pop(key, None)

    async def sync(
        self,
        entries: Iterable[PolicyEntry | TrustRootEntry],
        desired_of: DesiredStatus,
        *,
        skip: ObjectKey | None = None,
    ) -> int:
        """Patch each entry's object whose last seen status differs from ``desired_of``. Returns how many.

        Objects not seen yet are left to their own event handler, and so is ``skip``.
        """
        if self._writer is None:
            return 0
        patched = 0
        for entry in entries:
            seen = self._seen.get(entry.key)
            if entry.key == skip or seen is None or entry.key.kind not in PLURALS:
                continue
            desired = desired_of({"status": seen}, entry)
            if not status_differs({"status": seen}, desired):
                continue
            if patched >= MAX_STATUS_PATCHES:
                log.warning("more than %d statuses to update: the rest wait for the next change", patched)
                break
            try:
                found = await self._writer.patch_status(
                    PLURALS[entry.key.kind], entry.key.namespace, entry.key.name, desired
                )
            except ImprimaturError as e:
                log.warning("could not update the status of %s: %s", entry.key, e.detail)
                continue
            if found:
                self._seen[entry.key] = {**seen, **desired}
                patched += 1
        return patched
