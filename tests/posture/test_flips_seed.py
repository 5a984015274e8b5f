"""FlipTracker.seed: outcomes read back from earlier reports count as the previous check."""

from __future__ import annotations

from controller.errors import Reason
from controller.model import ImageVerdict
from controller.posture import Finding, FlipTracker, WorkloadRef, finding_of

APP = WorkloadRef("a", "Deployment", "app", "apps/v1", "uid-1")


def _fail(image: str) -> Finding:
    return finding_of(APP, ImageVerdict(image, False, Reason.IDENTITY_MISMATCH, "wrong signer"))


def test_a_seeded_pass_then_a_fail_is_a_flip() -> None:
    tracker = FlipTracker()
    assert tracker.seed([(APP, "img", "pass")]) == 1
    assert [f.finding.image for f in tracker.observe([_fail("img")])] == ["img"]


def test_seeding_never_overrides_what_this_process_saw_and_skips_unknown_outcomes() -> None:
    tracker = FlipTracker()
    tracker.observe([_fail("img")])
    assert (
        tracker.seed([(APP, "img", "pass"), (APP, "x", "error"), (APP, "y", "bogus"), (APP, "z", "warn")])
        == 1
    )
    assert tracker.observe([_fail("img")]) == []  # it was failing already here


def test_seeding_is_bounded() -> None:
    tracker = FlipTracker(max_entries=10)
    assert tracker.seed((APP, f"i{n}", "pass") for n in range(1000)) == 10
    assert len(tracker) == 10
