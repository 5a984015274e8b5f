"""Pass -> fail flips: the last outcome of each (workload, image), so an Event is raised once per flip.

Bounded: at most ``max_entries`` outcomes are remembered (the oldest are forgotten first), and after a
complete cycle everything that cycle did not see is dropped. An outcome of ``error`` (undecided now)
keeps the previous one: a registry outage is not a flip, and the pass -> fail after it still is.
Memory is per process, so on start it is *seeded* from the reports already in the cluster
(:meth:`FlipTracker.seed`, with what was read back): a restart between a pass and the next fail
still raises the Event.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from controller.posture.findings import Finding, Outcome, WorkloadRef

DEFAULT_MAX_ENTRIES: Final = 100_000

_Key = tuple[WorkloadRef, str]
_SEEDABLE: Final[dict[str, Outcome]] = {"pass": "pass", "fail": "fail", "warn": "warn"}


@dataclass(frozen=True, slots=True)
class Flip:
    """A workload's image that passed last time and fails now."""

    finding: Finding
    previous: Outcome


class FlipTracker:
    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._last: dict[_Key, Outcome] = {}

    def __len__(self) -> int:
        return len(self._last)

    def observe(self, findings: Iterable[Finding]) -> list[Flip]:
        """Record ``findings``; return those that flipped from pass to fail."""
        flips: list[Flip] = []
        for finding in findings:
            key = (finding.workload, finding.image)
            previous = self._last.pop(key, None)
            if finding.outcome == "error":
                if previous is not None:
                    self._last[key] = previous
                continue
            if previous == "pass" and finding.outcome == "fail":
                flips.append(Flip(finding, previous))
            self._last[key] = finding.outcome  # re-inserted: the newest
            while len(self._last) > self.max_entries:
                del self._last[next(iter(self._last))]
        return flips

    def seed(self, outcomes: Iterable[tuple[WorkloadRef, str, str]]) -> int:
        """Remember outcomes read back from earlier reports, under what is already known (never over
        it). Only pass, fail and warn count; anything else is skipped. Returns how many were taken."""
        taken = 0
        for workload, image, outcome in outcomes:
            if len(self._last) >= self.max_entries:
                break
            key = (workload, image)
            if key in self._last:
                continue
            known = _SEEDABLE.get(outcome)
            if known is not None:
                self._last[key] = known
                taken += 1
        return taken

    def retain(self, seen: Iterable[tuple[WorkloadRef, str]]) -> int:
        """After a complete cycle: forget every (workload, image) not in ``seen``. Returns how many."""
        keep = set(seen)
        gone = [key for key in self._last if key not in keep]
        for key in gone:
            del self._last[key]
        return len(gone)
