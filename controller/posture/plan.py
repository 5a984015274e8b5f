"""What one cycle checks, in which order, and how much uncached work each namespace may ask for.

A tenant controls its own Pods and workloads: many objects, huge image lists, slow registries. So:

* each namespace contributes at most ``max_images_per_namespace`` distinct images to a cycle (the
  rest are reported ``LimitExceeded`` for that cycle, never silently dropped);
* the distinct (namespace, image) pairs are visited **round-robin across namespaces**, so a
  namespace with 10,000 images cannot push another's 3 to the end of the cycle;
* cached verdicts cost nothing; an uncached one spends one unit of the cycle's budget
  (``max_uncached``) and of its namespace's share (``max_uncached_per_namespace``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from controller.posture.findings import WorkloadImages

DEFAULT_MAX_IMAGES_PER_NAMESPACE: Final = 5000
DEFAULT_MAX_UNCACHED: Final = 500
DEFAULT_MAX_UNCACHED_PER_NAMESPACE: Final = 50


@dataclass(frozen=True, slots=True)
class PlanLimits:
    max_images_per_namespace: int = DEFAULT_MAX_IMAGES_PER_NAMESPACE
    max_uncached: int = DEFAULT_MAX_UNCACHED
    max_uncached_per_namespace: int = DEFAULT_MAX_UNCACHED_PER_NAMESPACE


@dataclass(slots=True)
class CyclePlan:
    """``order``: the (namespace, image) pairs to decide, interleaved across namespaces;
    ``over``: pairs beyond their namespace's share of images, with why."""

    order: list[tuple[str, str]]
    over: dict[tuple[str, str], str]
    limits: PlanLimits
    _spent: int = 0
    _spent_by_ns: dict[str, int] = field(default_factory=dict)

    def spend(self, namespace: str) -> str | None:
        """Take one unit of uncached work for ``namespace``: None if granted, else why not."""
        if self._spent >= self.limits.max_uncached:
            return f"the cycle's budget of {self.limits.max_uncached} uncached images is spent"
        used = self._spent_by_ns.get(namespace, 0)
        if used >= self.limits.max_uncached_per_namespace:
            return (
                f"namespace {namespace} used its share of {self.limits.max_uncached_per_namespace} "
                "uncached images this cycle"
            )
        self._spent += 1
        self._spent_by_ns[namespace] = used + 1
        return None

    @property
    def spent(self) -> int:
        return self._spent


def plan_cycle(workloads: Iterable[WorkloadImages], limits: PlanLimits | None = None) -> CyclePlan:
    limits = limits or PlanLimits()
    per_ns: dict[str, dict[str, None]] = {}
    over: dict[tuple[str, str], str] = {}
    for item in workloads:
        namespace = item.workload.namespace
        images = per_ns.setdefault(namespace, {})
        for image in item.images:
            if image in images or (namespace, image) in over:
                continue
            if len(images) >= limits.max_images_per_namespace:
                over[(namespace, image)] = (
                    f"namespace {namespace} has more than {limits.max_images_per_namespace} distinct images"
                )
                continue
            images[image] = None
    queues = [list(images) for _, images in sorted(per_ns.items())]
    names = sorted(per_ns)
    order: list[tuple[str, str]] = []
    depth = max((len(q) for q in queues), default=0)
    for i in range(depth):
        for namespace, queue in zip(names, queues, strict=True):
            if i < len(queue):
                order.append((namespace, queue[i]))
    return CyclePlan(order, over, limits)
