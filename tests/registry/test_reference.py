"""Image reference parsing: the distribution grammar, Docker normalisation, and property tests."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.errors import InputError, Reason
from controller.model import Digest, ImageRef
from controller.registry.reference import (
    api_host,
    canonical_registry,
    check_registry,
    check_repository,
    check_tag,
    parse_reference,
    parse_repository,
)

SHA = "sha256:" + "ab" * 32
SHA512 = "sha512:" + "cd" * 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nginx", ImageRef("docker.io", "library/nginx", "latest", None)),
        ("nginx:1.25", ImageRef("docker.io", "library/nginx", "1.25", None)),
        ("user/app", ImageRef("docker.io", "user/app", "latest", None)),
        ("docker.io/nginx", ImageRef("docker.io", "library/nginx", "latest", None)),
        ("index.docker.io/library/nginx:x", ImageRef("docker.io", "library/nginx", "x", None)),
        ("registry-1.docker.io/user/app", ImageRef("docker.io", "user/app", "latest", None)),
        ("Docker.IO/user/app", ImageRef("docker.io", "user/app", "latest", None)),
        ("ghcr.io/acme/app:v1", ImageRef("ghcr.io", "acme/app", "v1", None)),
        ("GHCR.io/acme/app", ImageRef("ghcr.io", "acme/app", "latest", None)),
        ("localhost/app", ImageRef("localhost", "app", "latest", None)),
        ("localhost:5000/a/b/c:t", ImageRef("localhost:5000", "a/b/c", "t", None)),
        ("127.0.0.1:5000/app", ImageRef("127.0.0.1:5000", "app", "latest", None)),
        ("[::1]:5000/app:t", ImageRef("[::1]:5000", "app", "t", None)),
        ("host:5000/app", ImageRef("host:5000", "app", "latest", None)),
        (f"ghcr.io/acme/app@{SHA}", ImageRef("ghcr.io", "acme/app", None, Digest.parse(SHA))),
        (f"ghcr.io/acme/app:v1@{SHA}", ImageRef("ghcr.io", "acme/app", "v1", Digest.parse(SHA))),
        (f"nginx@{SHA512}", ImageRef("docker.io", "library/nginx", None, Digest.parse(SHA512))),
        ("a.b/c-d__e.f_g---h:Tag_1.-x", ImageRef("a.b", "c-d__e.f_g---h", "Tag_1.-x", None)),
        ("localhost:5000", ImageRef("docker.io", "library/localhost", "5000", None)),
        ("library/nginx", ImageRef("docker.io", "library/nginx", "latest", None)),
    ],
)
def test_parse_reference_table(text: str, expected: ImageRef) -> None:
    assert parse_reference(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Nginx",  # upper case in the repository
        "user/App",
        "Foo/bar",  # an upper-case first component is not a registry: the repository is invalid
        "ghcr.io/",
        "ghcr.io//app",
        "ghcr.io/app/",
        "/app",
        "app:",
        "app:-bad",
        "app:" + "t" * 129,
        "app@sha256:short",
        "app@md5:" + "a" * 32,
        f"app@{SHA}@{SHA}",
        "app@",
        "host:99999/app",
        "host:0/app",
        "-host.io/app",
        "host.io/a..b",
        "host.io/a_-b",
        "host.io/-a",
        "a b",
        "app:tag:more",
        "ghcr.io/" + "a" * 250,  # name over 255 once normalised
        "a" * 240 + "/b" * 5,  # Docker Hub name over 255 once normalised
        "x" * 2000,
        "ghcr.io/app:t\u00e9",  # non-ASCII tag
        "ghcr.io/\u0430pp",  # Cyrillic a
    ],
)
def test_parse_reference_rejects(text: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_reference(text)
    assert caught.value.reason is Reason.REFERENCE_INVALID


def test_name_length_bound_is_on_the_normalised_name() -> None:
    path = "a" * (255 - len("docker.io/library/"))
    assert parse_reference(path).repository == f"library/{path}"
    with pytest.raises(InputError) as caught:
        parse_reference(path + "b")
    assert caught.value.reason is Reason.REFERENCE_INVALID


def test_api_host_maps_docker_hub_only() -> None:
    assert api_host("docker.io") == "index.docker.io"
    assert api_host("index.docker.io") == "index.docker.io"
    assert api_host("ghcr.io") == "ghcr.io"
    assert api_host("127.0.0.1:5000") == "127.0.0.1:5000"
    assert canonical_registry("REGISTRY-1.docker.io") == "docker.io"


def test_parse_repository_refuses_tags_and_digests() -> None:
    assert parse_repository("ghcr.io/acme/sigs") == ("ghcr.io", "acme/sigs")
    assert parse_repository("acme/sigs") == ("docker.io", "acme/sigs")
    assert parse_repository("localhost:5000/sigs") == ("localhost:5000", "sigs")
    for bad in ("ghcr.io/acme/sigs:v1", f"ghcr.io/acme/sigs@{SHA}", "Upper/sigs"):
        with pytest.raises(InputError) as caught:
            parse_repository(bad)
        assert caught.value.reason is Reason.REFERENCE_INVALID


def test_check_guards_reject_path_injection() -> None:
    for repository in ("a/../b", "a?x=1", "a#b", "../../etc"):
        with pytest.raises(InputError) as caught:
            check_repository(repository)
        assert caught.value.reason is Reason.REFERENCE_INVALID
    for registry in ("evil.com/x", "h?x=1", "h:5000:6", "", "user@host"):
        with pytest.raises(InputError) as caught:
            check_registry(registry)
        assert caught.value.reason is Reason.REFERENCE_INVALID
    for tag in ("../x", "a/b", "a?b", ""):
        with pytest.raises(InputError) as caught:
            check_tag(tag)
        assert caught.value.reason is Reason.REFERENCE_INVALID


# --- property tests

_alnum = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
_separator = st.sampled_from([".", "_", "__", "-", "--"])
_path_component = st.builds(
    lambda first, rest: first + "".join(s + a for s, a in rest),
    _alnum,
    st.lists(st.tuples(_separator, _alnum), max_size=2),
)
_path = st.lists(_path_component, min_size=1, max_size=4).map("/".join)
_domain_component = st.from_regex(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?", fullmatch=True)
_domain = st.one_of(
    st.builds(lambda a, b: f"{a}.{b}", _domain_component, _domain_component),
    st.builds(lambda a, p: f"{a}:{p}", _domain_component, st.integers(1, 65535)),
    st.just("localhost"),
    st.just("[::1]:5000"),
)
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
_digest = st.one_of(
    st.binary(min_size=1, max_size=8).map(Digest.of),
    st.binary(min_size=1, max_size=8).map(lambda b: Digest.of(b, "sha512")),
)


def _join(parts: tuple[str | None, str, str | None, Digest | None]) -> str:
    domain, path, tag, digest = parts
    return (
        (f"{domain}/" if domain else "")
        + path
        + (f":{tag}" if tag else "")
        + (f"@{digest}" if digest else "")
    )


def _unambiguous(parts: tuple[str | None, str, str | None, Digest | None]) -> bool:
    """Without a registry, a first component holding a "." would itself be read as one (Docker's rule)."""
    domain, path = parts[0], parts[1]
    return domain is not None or "/" not in path or "." not in path.split("/")[0]


_reference = (
    st.tuples(st.one_of(st.none(), _domain), _path, st.one_of(st.none(), _tag), st.one_of(st.none(), _digest))
    .filter(_unambiguous)
    .map(_join)
)


@settings(max_examples=300, deadline=None)
@given(_reference)
def test_round_trip(text: str) -> None:
    ref = parse_reference(text)
    assert parse_reference(str(ref)) == ref
    assert ref.tag is not None or ref.digest is not None
    assert ref.registry == ref.registry.lower()


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=300), _reference.map(lambda s: s.replace("/", "//", 1)), _reference))
def test_arbitrary_text_only_raises_input_error(text: str) -> None:
    try:
        ref = parse_reference(text)
    except InputError as e:
        assert e.reason is Reason.REFERENCE_INVALID
    else:
        assert parse_reference(str(ref)) == ref
