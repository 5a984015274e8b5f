"""Tests for controller/policy/glob.py: image globs and image-name normalisation."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.errors import InputError, Reason
from controller.policy.glob import (
    MAX_GLOB_LENGTH,
    MAX_WILDCARDS_PER_GLOB,
    GlobError,
    ImageGlob,
    count_wildcards,
    normalize_glob,
    normalize_image_name,
)

MATCHES = [
    ("ghcr.io/acme/**", "ghcr.io/acme/app", True),
    ("ghcr.io/acme/**", "ghcr.io/acme/team/app", True),
    ("ghcr.io/acme/**", "ghcr.io/acmecorp/app", False),
    ("ghcr.io/acme/**", "ghcr.io/acme", False),
    ("ghcr.io/acme/*", "ghcr.io/acme/app", True),
    ("ghcr.io/acme/*", "ghcr.io/acme/team/app", False),
    ("ghcr.io/*/app", "ghcr.io/acme/app", True),
    ("ghcr.io/*/app", "ghcr.io/a/b/app", False),
    ("ghcr.io/**/app", "ghcr.io/a/b/app", True),
    ("ghcr.io/acme/app-?", "ghcr.io/acme/app-1", True),
    ("ghcr.io/acme/app-?", "ghcr.io/acme/app-12", False),
    ("ghcr.io/acme/app?x", "ghcr.io/acme/app/x", False),
    ("ghcr.io/acme/app", "ghcr.io/acme/app", True),
    ("ghcr.io/acme/app", "ghcr.io/acme/app2", False),
    ("ghcr.io/acme/app", "ghcr.io/acme/app:v1", True),  # the tag is not part of the name
    ("ghcr.io/acme/app", "ghcr.io/acme/app@sha256:" + "a" * 64, True),
    ("nginx", "docker.io/library/nginx", True),
    ("nginx", "nginx:1.27", True),
    ("nginx", "index.docker.io/library/nginx", True),
    ("nginx", "ghcr.io/library/nginx", False),
    ("docker.io/nginx", "nginx", True),
    ("acme/*", "docker.io/acme/app", True),
    ("acme/*", "acme/app", True),
    ("acme/*", "ghcr.io/acme/app", False),
    ("*", "redis", True),
    ("*", "acme/redis", False),
    ("**", "registry.example:5000/a/b/c", True),
    ("**", "nginx", True),
    ("localhost:5000/**", "localhost:5000/app", True),
    ("localhost/app", "localhost/app", True),
    ("*.gcr.io/acme/**", "eu.gcr.io/acme/app", True),
    ("*.gcr.io/acme/**", "gcr.io/acme/app", False),
    ("*.gcr.io/acme/**", "evil.io/x.gcr.io/acme/app", False),
    ("**/app", "ghcr.io/acme/app", True),
    ("**/app", "ghcr.io/acme/app2", False),
    ("GHCR.io/acme/**", "ghcr.io/acme/app", True),  # a registry host is case-insensitive
    ("ghcr.io/acme/**", "GHCR.IO/acme/app", True),
    ("registry.example:5000/app", "registry.example:5000/app:v1", True),
]


@pytest.mark.parametrize(("glob", "image", "expected"), MATCHES)
def test_glob_table(glob: str, image: str, expected: bool) -> None:
    assert ImageGlob.compile(glob).matches(image) is expected


NORMALISED = [
    ("nginx", "docker.io/library/nginx"),
    ("acme/*", "docker.io/acme/*"),
    ("docker.io/nginx", "docker.io/library/nginx"),
    ("docker.io/*", "docker.io/library/*"),
    ("docker.io/**", "docker.io/**"),
    ("index.docker.io/acme/app", "docker.io/acme/app"),
    ("ghcr.io/acme/**", "ghcr.io/acme/**"),
    ("**", "**"),
    ("**/app", "**/app"),
]


@pytest.mark.parametrize(("glob", "normalised"), NORMALISED)
def test_normalize_glob(glob: str, normalised: str) -> None:
    assert normalize_glob(glob) == normalised


@pytest.mark.parametrize(
    "glob",
    [
        "",
        "ghcr.io/acme/App",
        "ghcr.io/acme/app:v1",
        "ghcr.io/acme/app@sha256:abc",
        "ghcr.io//app",
        "ghcr.io/acme/",
        "ghcr.io/acme app",
        "ghcr.io/acme/[ab]",
        "ghcr_io.x/acme",
        "a" * (MAX_GLOB_LENGTH + 1),
    ],
)
def test_malformed_glob_raises(glob: str) -> None:
    with pytest.raises(GlobError):
        ImageGlob.compile(glob)


@pytest.mark.parametrize(
    ("reference", "name"),
    [
        ("nginx", "docker.io/library/nginx"),
        ("nginx:1.27", "docker.io/library/nginx"),
        ("acme/app@sha256:" + "b" * 64, "docker.io/acme/app"),
        ("ghcr.io/acme/app:v1@sha256:" + "b" * 64, "ghcr.io/acme/app"),
        ("localhost:5000/app:v1", "localhost:5000/app"),
        ("registry.example:5000/app", "registry.example:5000/app"),
        ("index.docker.io/library/nginx", "docker.io/library/nginx"),
    ],
)
def test_normalize_image_name(reference: str, name: str) -> None:
    assert normalize_image_name(reference) == name
    assert normalize_image_name(name) == name


@pytest.mark.parametrize("reference", ["", "ghcr.io//app", "ghcr.io/", "ghcr.io/a b", "r.io/" + "a" * 300])
def test_malformed_image_name_is_reference_invalid(reference: str) -> None:
    with pytest.raises(InputError) as info:
        normalize_image_name(reference)
    assert info.value.reason == Reason.REFERENCE_INVALID


@pytest.mark.parametrize(
    ("glob", "wildcards"),
    [("r.io/app", 0), ("r.io/a*/b**?", 3), ("r.io/***x?", 2), ("**", 1), ("*.io/**", 2), ("r.io/??", 2)],
)
def test_wildcards_are_runs_of_stars_and_question_marks(glob: str, wildcards: int) -> None:
    assert ImageGlob.compile(glob).wildcards == wildcards == count_wildcards(normalize_glob(glob))


@pytest.mark.parametrize(
    "shape",
    [
        lambda n: "r.io/" + "*a" * n,
        lambda n: "r.io/" + "**a" * n,
        lambda n: "r.io/" + "?" * n,
        lambda n: "*." + "?" * (n - 2) + "/*",
    ],
)
def test_a_glob_past_the_wildcard_bound_is_refused(shape: Callable[[int], str]) -> None:
    assert ImageGlob.compile(shape(MAX_WILDCARDS_PER_GLOB)).wildcards == MAX_WILDCARDS_PER_GLOB
    with pytest.raises(GlobError, match=f"{MAX_WILDCARDS_PER_GLOB + 1} wildcards"):
        ImageGlob.compile(shape(MAX_WILDCARDS_PER_GLOB + 1))


def test_the_worst_allowed_glob_matches_in_about_a_millisecond() -> None:
    # `*a` then 63 `?`: RE2's DFA needs a state per subset of the last 64 characters, so it runs as an
    # NFA; names of random a/b defeat its cache. The state-set matcher took ~4 ms a name here, and
    # `*a` x 253 (allowed before the bound) ~30 ms.
    glob = ImageGlob.compile("r.io/*a" + "?" * (MAX_WILDCARDS_PER_GLOB - 1))
    rng = random.Random(7)
    names = ["r.io/" + "".join(rng.choice("ab") for _ in range(245)) for _ in range(40)]
    glob.matches_normalized(names[0])  # compiled at its first use
    started = time.perf_counter()
    for name in names:
        glob.matches_normalized(name)
    per_name = (time.perf_counter() - started) / len(names)
    print(f"\nworst allowed glob: {per_name * 1000:.3f} ms per name")
    assert per_name < 0.02


def test_pathological_glob_is_linear() -> None:
    # `.*a.*a.*a.*a.*b` takes about ten seconds in `re` against 250 a's.
    glob = ImageGlob.compile("r.io/" + "**a" * 12 + "**b")
    name = "r.io/" + "a" * 240
    started = time.monotonic()
    assert not glob.matches(name)
    assert not ImageGlob.compile("r.io/" + "*a" * 12 + "*b").matches(name)
    assert time.monotonic() - started < 1.0


# --- properties

_segment = st.text(alphabet="abc019._-", min_size=1, max_size=8).filter(
    lambda s: s[0].isalnum() and s[-1].isalnum()
)
_registry = st.sampled_from(["ghcr.io", "r.example:5000", "localhost", "quay.io"])
_names = st.builds(
    lambda registry, path: f"{registry}/{'/'.join(path)}",
    _registry,
    st.lists(_segment, min_size=1, max_size=4),
)


@given(_names, _names)
def test_literal_glob_matches_only_itself(glob: str, name: str) -> None:
    assert ImageGlob.compile(glob).matches(name) is (glob == name)


@given(_names)
def test_double_star_matches_everything(name: str) -> None:
    assert ImageGlob.compile("**").matches(name)
    assert ImageGlob.compile(name.partition("/")[0] + "/**").matches(name)


_glob_segment = st.text(alphabet="ab*?", min_size=1, max_size=4)
_name_segment = st.text(alphabet="ab", min_size=1, max_size=4)


@given(st.lists(_glob_segment.filter(lambda s: "**" not in s), min_size=1, max_size=3), _names)
def test_single_star_never_crosses_a_segment(glob_path: list[str], name: str) -> None:
    glob = ImageGlob.compile("r.io/" + "/".join(glob_path))
    candidate = "r.io/" + name.partition("/")[2]
    if glob.matches(candidate):
        assert candidate.count("/") == glob.normalized.count("/")


def _oracle(glob: str, name: str) -> bool:
    """The textbook translation to a regex, good for short inputs only (it backtracks)."""
    pattern = ""
    for token in re.findall(r"\*\*+|\*|\?|[^*?]", glob):
        if token.startswith("**"):
            pattern += ".*"
        elif token == "*":
            pattern += "[^/]*"
        elif token == "?":
            pattern += "[^/]"
        else:
            pattern += re.escape(token)
    return re.fullmatch(pattern, name) is not None


@given(
    st.lists(_glob_segment, min_size=1, max_size=4),
    st.lists(_name_segment, min_size=1, max_size=5),
)
def test_matching_agrees_with_regex_oracle(glob_path: list[str], name_path: list[str]) -> None:
    glob = "r.io/" + "/".join(glob_path)
    name = "r.io/" + "/".join(name_path)
    assert ImageGlob.compile(glob).matches(name) is _oracle(glob, name)
