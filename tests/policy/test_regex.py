"""Tests for controller/policy/regex.py: Go's RE2 syntax and meaning, full-match, linear time."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.errors import PolicyError, Reason
from controller.policy.compiled import MAX_MATCHED_VALUE_LENGTH, compile_policy
from controller.policy.regex import Regexp, RegexpError, compile_regexp
from tests.policy._builders import GITHUB_OAUTH, PHBELITZ, policy_doc, signature

PATHOLOGICAL_BUDGET_SECONDS = 0.05


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        # \z is Go's (and RE2's) end of text; Python calls it \Z
        (r"https://github\.com/acme/.+\z", "https://github.com/acme/app", True),
        # \d, \w, \s and \b are ASCII only in Go
        (r"\d+", "123", True),
        (r"\d+", "١٢٣", False),  # Arabic-Indic digits: Python's re says yes, Go says no
        (r"\w+", "é", False),
        (r"\pL+", "é", True),  # Unicode classes are spelled explicitly
        (r"(?i)ACME@EXAMPLE\.COM", "acme@example.com", True),
        (r"ACME", "acme", False),  # case-sensitive unless (?i)
        # . does not match a newline unless (?s)
        (r"a.b", "a\nb", False),
        (r"(?s)a.b", "a\nb", True),
        # $ is the end of the text, not "before a final newline" as in Python
        (r"a$", "a\n", False),
        (r"(?P<org>acme)/(?<repo>app)", "acme/app", True),  # both named-group spellings, as Go 1.22
        (r"\Qa.b\E", "a.b", True),
        (r"\Qa.b\E", "axb", False),
        (r"[[:alpha:]]+", "acme", True),
        (r"\x{1F512}", "\N{LOCK}", True),
        # full match, never search
        (r"acme", "xacmex", False),
        (r"gmail", "gmail.attacker.com", False),
        (r"a|ab", "ab", True),  # leftmost-first still finds the full match
    ],
)
def test_go_syntax_and_meaning(pattern: str, text: str, matches: bool) -> None:
    assert compile_regexp(pattern).fullmatch(text) is matches


@pytest.mark.parametrize(
    "pattern",
    [
        r"a\Z",  # Python's end of text; Go spells it \z
        r"(?=a)a",  # look-ahead
        r"(?!b)a",
        r"(?<=a)b",  # look-behind
        r"(a)\1",  # backreference
        r"(?P<x>a)(?P=x)",
        r"(?x)a b",  # verbose mode
        r"(?#comment)a",
        r"a*+",  # possessive
        r"a{1001}",  # Go's repeat limit is 1000
        r"(a{1000}){1000}",
        r"\C",  # RE2 has it, Go does not
        r"[\C]",
        r"(unclosed",
        r"[z-a]",
    ],
)
def test_syntax_go_refuses_is_refused(pattern: str) -> None:
    with pytest.raises(RegexpError):
        compile_regexp(pattern)


def test_backslash_c_inside_quoted_literal_is_literal() -> None:
    assert compile_regexp(r"\Qa\C\E").fullmatch("a\\C")
    assert compile_regexp(r"a\\C").fullmatch("a\\C")  # an escaped backslash, then C


@pytest.mark.parametrize(
    "identity",
    [
        {"issuer": GITHUB_OAUTH, "subjectRegExp": r"(?=x).*"},
        {"issuerRegExp": r"https://github\.com/.*\Z", "subject": PHBELITZ},
        {"issuer": GITHUB_OAUTH, "subject": PHBELITZ, "claims": {"githubWorkflowRef": {"regExp": r"(a)\1"}}},
    ],
)
def test_python_only_syntax_makes_the_policy_invalid(identity: dict[str, object]) -> None:
    with pytest.raises(PolicyError) as e:
        compile_policy(policy_doc(identities=[identity]))
    assert e.value.reason == Reason.POLICY_INVALID


def test_go_end_of_text_in_a_policy_compiles_and_matches() -> None:
    policy = compile_policy(
        policy_doc(identities=[{"issuerRegExp": r"https://github\.com/login/oauth\z", "subject": PHBELITZ}])
    )
    assert policy.identities[0].matches(signature(PHBELITZ, GITHUB_OAUTH))


def test_lone_surrogate_text_matches_nothing() -> None:
    assert compile_regexp(".*").fullmatch("a\ud800b") is False


def test_regexp_compares_by_pattern() -> None:
    assert compile_regexp("a+") == compile_regexp("a+")
    assert isinstance(compile_regexp("a+"), Regexp)


def _best_of_three(regexp: Regexp, text: str) -> float:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        regexp.fullmatch(text)
        times.append(time.perf_counter() - start)
    return min(times)


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        # Python's re backtracks for seconds to ages on each of these
        (r"ht(?:.|.)*!", "ht" + "x" * (MAX_MATCHED_VALUE_LENGTH - 2), False),
        (r"(a+)+$", "a" * (MAX_MATCHED_VALUE_LENGTH - 1) + "b", False),
        (r"(a|aa)*c", "a" * MAX_MATCHED_VALUE_LENGTH, False),
        (r"(.*a){20}b", "a" * MAX_MATCHED_VALUE_LENGTH, False),
        (r"(.*a){20}", "a" * MAX_MATCHED_VALUE_LENGTH, True),
    ],
)
def test_pathological_pattern_decides_in_milliseconds(pattern: str, text: str, matches: bool) -> None:
    regexp = compile_regexp(pattern)
    assert regexp.fullmatch(text) is matches
    assert _best_of_three(regexp, text) < PATHOLOGICAL_BUDGET_SECONDS


def test_pathological_issuer_through_the_policy_decides_in_milliseconds() -> None:
    policy = compile_policy(policy_doc(identities=[{"issuerRegExp": r"ht(?:.|.)*!", "subject": PHBELITZ}]))
    sig = signature(PHBELITZ, "ht" + "x" * (MAX_MATCHED_VALUE_LENGTH - 2))
    start = time.perf_counter()
    assert not policy.identities[0].matches(sig)
    assert time.perf_counter() - start < PATHOLOGICAL_BUDGET_SECONDS


# any text without backslashes (\\E ends a quote) or surrogates (not UTF-8)
_QUOTABLE = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\\"), max_size=64
)


@given(_QUOTABLE)
def test_quoted_text_matches_only_itself(literal: str) -> None:
    regexp = compile_regexp(r"\Q" + literal + r"\E")
    assert regexp.fullmatch(literal)
    assert not regexp.fullmatch(literal + "x")


@given(st.text(max_size=200), st.text(max_size=200))
def test_any_pattern_compiles_or_is_refused_and_matching_gives_a_bool(pattern: str, text: str) -> None:
    try:
        regexp = compile_regexp(pattern)
    except RegexpError:
        return
    assert regexp.fullmatch(text) in (True, False)
