"""controller/policy/glob.py matches with RE2 now; this holds it to the Python state-set matcher it
replaced (kept here, verbatim in behaviour, as the reference), on single globs and on glob sets."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.policy.glob import GlobError, ImageGlob
from controller.policy.globset import MAX_PROGRAM_CHARACTERS, compile_glob_set

_LITERAL, _ONE, _STAR, _DOUBLE_STAR = range(4)
_Instruction = tuple[int, str]


def _reference_compile(glob: str) -> tuple[_Instruction, ...]:
    program: list[_Instruction] = []
    i = 0
    while i < len(glob):
        char = glob[i]
        if char == "*":
            run = len(glob[i:]) - len(glob[i:].lstrip("*"))
            program.append((_DOUBLE_STAR, "") if run >= 2 else (_STAR, ""))
            i += run
            continue
        program.append((_ONE, "") if char == "?" else (_LITERAL, char))
        i += 1
    return tuple(program)


def _closure(program: tuple[_Instruction, ...], states: set[int]) -> set[int]:
    pending = list(states)
    while pending:
        state = pending.pop()
        if state < len(program) and program[state][0] in (_STAR, _DOUBLE_STAR) and state + 1 not in states:
            states.add(state + 1)
            pending.append(state + 1)
    return states


def reference_matches(normalized_glob: str, name: str) -> bool:
    """The state-set matcher glob.py used before RE2 (commit 636fcd5 and earlier)."""
    program = _reference_compile(normalized_glob)
    end = len(program)
    states = _closure(program, {0})
    for char in name:
        following: set[int] = set()
        for state in states:
            if state == end:
                continue
            op, literal = program[state]
            if op == _LITERAL:
                if char == literal:
                    following.add(state + 1)
            elif op == _ONE:
                if char != "/":
                    following.add(state + 1)
            elif op == _STAR:
                if char != "/":
                    following.add(state)
            else:
                following.add(state)
        if not following:
            return False
        states = _closure(program, following)
    return end in states


# globs over a small alphabet so that matches are frequent; registries with '*', '**' and ':' too
_glob_segment = st.text(alphabet="ab.-_*?", min_size=1, max_size=6)
_name_segment = st.text(alphabet="ab.-_", min_size=1, max_size=6)
_glob_registry = st.sampled_from(["r.io", "*.io", "r.io:5000", "**", "localhost", "r?io"])
_name_registry = st.sampled_from(["r.io", "a.io", "r.io:5000", "localhost", "rxio"])


def _glob(registry: str, segments: list[str]) -> ImageGlob | None:
    try:
        return ImageGlob.compile("/".join([registry, *segments]))
    except GlobError:
        return None


@settings(max_examples=1500, deadline=None)
@given(
    _glob_registry,
    st.lists(_glob_segment, min_size=1, max_size=4),
    _name_registry,
    st.lists(_name_segment, min_size=1, max_size=5),
)
def test_re2_answers_as_the_state_set_matcher(
    registry: str, glob_path: list[str], name_registry: str, name_path: list[str]
) -> None:
    glob = _glob(registry, glob_path)
    if glob is None:
        return
    name = "/".join([name_registry, *name_path])
    expected = reference_matches(glob.normalized, name)
    assert glob.matches_normalized(name) is expected
    assert compile_glob_set([glob]).matches_normalized(name) is expected


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(_glob_registry, st.lists(_glob_segment, min_size=1, max_size=3)), max_size=12),
    st.lists(_name_segment, min_size=1, max_size=4),
)
def test_a_set_answers_as_any_of_its_globs(globs: list[tuple[str, list[str]]], name_path: list[str]) -> None:
    compiled = [g for g in (_glob(r, s) for r, s in globs) if g is not None]
    name = "/".join(["r.io", *name_path])
    expected = any(reference_matches(g.normalized, name) for g in compiled)
    assert compile_glob_set(compiled).matches_normalized(name) is expected


@settings(max_examples=60, deadline=None)
@given(st.lists(_name_segment, min_size=1, max_size=3), st.integers(min_value=0, max_value=39))
def test_a_set_split_into_many_programs_still_answers_as_its_globs(name_path: list[str], which: int) -> None:
    # 40 long globs (8 wildcards each) cannot share one program: each group is its own RE2 program
    filler = "c" * 400
    globs = [ImageGlob.compile(f"r.io/{filler}{j}/" + "*" * (j % 2 + 1) + "a?" * 7) for j in range(40)]
    matcher = compile_glob_set(globs)
    assert matcher.programs > len(globs) * 400 // MAX_PROGRAM_CHARACTERS
    name = f"r.io/{filler}{which}/" + "/".join(name_path)
    expected = any(reference_matches(g.normalized, name) for g in globs)
    assert matcher.matches_normalized(name) is expected
