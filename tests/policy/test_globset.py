"""controller/policy/globset.py: one RE2 program answers exactly as each ImageGlob, and stays fast on
the globs that are slowest for the state-set matcher."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.policy.glob import GlobError, ImageGlob
from controller.policy.globset import compile_glob_set, glob_pattern, wildcards

_SEGMENT = st.text(alphabet="ab.-_*?", min_size=1, max_size=8)
_NAME_SEGMENT = st.text(alphabet="ab.-_", min_size=1, max_size=8)


def _glob(segments: list[str]) -> ImageGlob | None:
    try:
        return ImageGlob.compile("/".join(["reg.example", *segments]))
    except GlobError:
        return None


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.lists(_SEGMENT, min_size=1, max_size=4), min_size=1, max_size=4),
    st.lists(_NAME_SEGMENT, min_size=1, max_size=5),
)
def test_the_set_answers_as_each_glob(glob_segments: list[list[str]], name_segments: list[str]) -> None:
    globs = [g for g in (_glob(s) for s in glob_segments) if g is not None]
    name = "/".join(["reg.example", *name_segments])
    expected = any(g.matches_normalized(name) for g in globs)
    assert compile_glob_set(globs).matches_normalized(name) == expected
    for g in globs:
        assert compile_glob_set([g]).matches_normalized(name) == g.matches_normalized(name)


def test_the_wildcards_and_specials() -> None:
    assert glob_pattern("**") == ".*"
    assert glob_pattern("reg.example/a*/b**?") == r"reg\.example/a[^/]*/b.*[^/]"
    assert wildcards(ImageGlob.compile("reg.example/a*/b**?")) == 3
    assert wildcards(ImageGlob.compile("reg.example/app")) == 0
    matcher = compile_glob_set([ImageGlob.compile("reg.example/a*")])
    assert matcher.matches_normalized("reg.example/abc")
    assert not matcher.matches_normalized("reg.example/a/b")  # one star never crosses a '/'
    assert not matcher.matches_normalized("regxexample/abc")  # a dot is literal
    assert not compile_glob_set([]).matches_normalized("reg.example/a")


def test_the_costliest_allowed_globs_match_in_well_under_a_millisecond() -> None:
    globs = [ImageGlob.compile("reg.example/" + "*a" * 8 + f"z{j}") for j in range(8)]  # 64 wildcards
    matcher = compile_glob_set(globs)
    name = "reg.example/" + "a" * 240
    started = time.perf_counter()
    for _ in range(100):
        assert not matcher.matches_normalized(name)
    assert (time.perf_counter() - started) / 100 < 0.002


def test_long_literal_globs_are_split_so_that_re2_stays_in_its_dfa() -> None:
    # 64 globs `*aaaa...` of 512 characters (one wildcard each: within an exception's 64): in one
    # program RE2's DFA overflows and its NFA took 17 to 28 ms a name; in groups of 2,048 characters, ~1 ms
    globs = [ImageGlob.compile("r.io/*" + "a" * (505 - len(str(j))) + str(j)) for j in range(64)]
    matcher = compile_glob_set(globs)
    assert matcher.programs == 22  # three ~515-character patterns per program
    names = [f"r.io/{'a' * n}b" for n in range(150, 250)]
    started = time.perf_counter()
    for name in names:
        assert not matcher.matches_normalized(name)
    per_name = (time.perf_counter() - started) / len(names)
    print(f"\n64 long-literal globs: {per_name * 1000:.2f} ms per name in {matcher.programs} programs")
    assert per_name < 0.008


def test_a_new_program_starts_past_the_wildcard_bound() -> None:
    globs = [ImageGlob.compile(f"r.io/{j}/" + "*a" * 40) for j in range(3)]  # 40 + 40 > 64
    assert compile_glob_set(globs).programs == 3
    assert compile_glob_set([ImageGlob.compile(f"r.io/{j}/*") for j in range(64)]).programs == 1
