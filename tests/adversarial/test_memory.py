"""Issue 10, attack 5: a referrers bomb cannot take the controller past its memory limit.

The hostile registry's ``same_blob_many_layers`` image has a referrers index of 2 manifests x 64
layers, every layer the same 4 MiB Sigstore-bundle blob (about 512 MiB if each layer were read). A
review of it is denied, the blob is read at most once (or the decision stops with ``LimitExceeded``),
and the controller's RSS (it runs in this process) grows by less than 64 MiB, even with several
concurrent reviews from different namespaces.
"""

from __future__ import annotations

import concurrent.futures
import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.admission.harness import RunningController, cluster_policy, pod, trust_root
from tests.adversarial.support import Lab, admit
from tests.fixtures.hostile import HostileRegistry
from tests.fixtures.registry import TestPKI

MIB = 1024 * 1024
MAX_GROWTH = 64 * MIB
CONCURRENT = 4


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.fixture(scope="module")
def bomb(registry_pki: TestPKI) -> Iterator[HostileRegistry]:
    with HostileRegistry("same_blob_many_layers", tls=registry_pki) as server:
        yield server


@pytest.fixture(scope="module")
def server(lab: Lab, bomb: HostileRegistry) -> Iterator[RunningController]:
    documents = [trust_root(lab.kit.trusted_root_json()), cluster_policy("bomb", [f"{bomb.host}/**"])]
    with lab.serve("memory", documents, hostile=[bomb], decision_timeout_seconds=5.0) as srv:
        yield srv


def test_referrers_bomb_is_denied_within_a_memory_bound(
    server: RunningController, bomb: HostileRegistry, registry_pki: TestPKI
) -> None:
    images = [f"{bomb.host}/bomb/app{i}@{bomb.bomb.image_digest}" for i in range(CONCURRENT)]
    gc.collect()
    before = rss_bytes()
    with concurrent.futures.ThreadPoolExecutor(max_workers=CONCURRENT) as pool:
        answers = list(
            pool.map(
                lambda i: admit(server, pod("p", [images[i]], namespace=f"team-{i}"), registry_pki.ca_file),
                range(CONCURRENT),
            )
        )
    growth = rss_bytes() - before
    blob_reads = bomb.count("/blobs/")
    for image, answer in zip(images, answers, strict=True):
        assert not answer.allowed, image
        assert answer.message.startswith(f"{answer.reason}: {image}: ")
        assert answer.reason == "LimitExceeded" or blob_reads <= CONCURRENT, (answer.message, blob_reads)
    assert blob_reads <= CONCURRENT, "each repository's blob is read at most once"
    assert growth < MAX_GROWTH, f"RSS grew by {growth / MIB:.0f} MiB"
