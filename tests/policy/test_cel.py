"""CEL conditions: compile-time refusals, evaluation, and the cost bound under hostile input."""

from __future__ import annotations

import contextlib
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.policy import cel
from controller.policy.cel import CelError, compile_condition, evaluate_all, parse_statement

DIGEST_HEX = "31dc72a1" + "0" * 56
GHA = "https://actions.github.io/buildtypes/workflow/v1"


def statement(predicate: object, predicate_type: str = "https://slsa.dev/provenance/v1") -> bytes:
    return json.dumps(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "ghcr.io/acme/app", "digest": {"sha256": DIGEST_HEX}}],
            "predicateType": predicate_type,
            "predicate": predicate,
        }
    ).encode()


PROVENANCE = statement(
    {
        "buildDefinition": {
            "buildType": GHA,
            "externalParameters": {
                "workflow": {"repository": "https://github.com/acme/app", "ref": "refs/tags/v1"}
            },
            "resolvedDependencies": [
                {"uri": f"git+https://github.com/acme/app@refs/tags/v{i}"} for i in range(5)
            ],
        },
        "runDetails": {"builder": {"id": "https://github.com/actions/runner/github-hosted"}},
    }
)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        (f'predicate.buildDefinition.buildType == "{GHA}"', True),
        ('predicate.buildDefinition.buildType == "other"', False),
        ('predicateType == "https://slsa.dev/provenance/v1"', True),
        (f'subject.exists(s, s.digest.sha256 == "{DIGEST_HEX}")', True),
        ('statement._type.startsWith("https://in-toto.io/")', True),
        ("has(predicate.runDetails.builder.id) && !has(predicate.runDetails.metadata)", True),
        (
            "predicate.buildDefinition.resolvedDependencies.all(d, d.uri.startsWith('git+https://github.com/acme/'))",
            True,
        ),
        ("size(predicate.buildDefinition.resolvedDependencies) == 5", True),
        ("predicate.buildDefinition.resolvedDependencies.filter(d, d.uri.endsWith('v1')).size() == 1", True),
        ('predicate.buildDefinition.externalParameters.workflow.ref.matches("^refs/tags/v[0-9]+$")', True),
        (
            "predicate.buildDefinition.resolvedDependencies.exists_one(d, d.uri.contains('@refs/tags/v3'))",
            True,
        ),
    ],
)
def test_kubernetes_style_expressions(expression: str, expected: bool) -> None:
    condition = compile_condition(expression, "m")
    index, outcome = evaluate_all([condition], parse_statement(PROVENANCE))
    assert outcome.passed is expected
    assert index == (-1 if expected else 0)


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("predicate.nope == 1", "evaluation error"),  # a missing field is an error, not a crash
        ("1 / 0 == 1", "evaluation error"),
        ('"a" + 1 == "a1"', "evaluation error"),
        ("predicate.buildDefinition.buildType", "not a bool"),
        ("predicate.buildDefinition.buildType == 'x'", "evaluated to false"),
    ],
)
def test_evaluation_never_raises(expression: str, problem: str) -> None:
    _, outcome = evaluate_all([compile_condition(expression)], parse_statement(PROVENANCE))
    assert not outcome.passed
    assert problem in outcome.problem


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("", "empty"),
        ("1 +", "does not compile"),
        ("foo(predicate)", "unknown function"),
        ("predicate.lowerAscii() == 'x'", "unknown function"),  # not native: not registered
        ("request.object == 1", "unknown variable"),
        ("x.all(y, y) == true", "unknown variable"),
        ("a" * (cel.MAX_EXPRESSION_LENGTH + 1), "characters"),
        ("(" * 40 + "true" + ")" * 40, "nest deeper"),
        ("predicate.l.map(a, predicate.l.map(b, predicate.l.map(c, 1)))", "nest too deeply"),
        ("predicate.l.map(a, predicate.l.map(b, predicate.l.all(c, true)))", "nest too deeply"),
        ("'unterminated", "unterminated"),
        (")(", "unbalanced"),
    ],
)
def test_compile_refusals(expression: str, problem: str) -> None:
    with pytest.raises(CelError, match=problem):
        compile_condition(expression)


def test_a_quoted_bracket_or_macro_name_does_not_count() -> None:
    condition = compile_condition("""predicate.x == "(((.map(" && predicateType.matches(r'\\d[(]') && true""")
    assert condition.shape.loop_exponent == 0


# --- hostile expressions over huge statements: each is refused, by cost or at compile time, or fast

HUGE_LIST = statement({"l": list(range(200_000))})
HUGE_STRING = statement({"s": "a" * (3 * 1024 * 1024)})
HOSTILE = [
    "predicate.l.map(a, predicate.l.map(b, a + b)).size() > 0",  # quadratic, nested
    "predicate.l.filter(a, a > 0).size() > 0",  # quadratic in the engine
    "predicate.l.all(a, predicate.l.exists(b, b == a))",
    " + ".join(["predicate.s"] * 60) + " == ''",  # string growth by concatenation
    "predicate.s.matches('(a+)+$')",  # catastrophic backtracking in a backtracking engine
    "[" + ",".join(["predicate.s"] * 70) + "].all(x, x.contains('b'))",
]


@pytest.mark.parametrize("data", [HUGE_LIST, HUGE_STRING], ids=["200k-list", "3MiB-string"])
@pytest.mark.parametrize("expression", HOSTILE)
def test_hostile_expressions_are_bounded(expression: str, data: bytes) -> None:
    parsed = parse_statement(data)
    condition = compile_condition(expression)
    started = time.perf_counter()
    _, outcome = evaluate_all([condition], parsed)
    elapsed = time.perf_counter() - started
    # either refused by the cost bound before running, or run within the bound's time
    assert elapsed < 1.0, (expression, outcome)
    if condition.estimate(parsed) > cel.COST_LIMIT:
        assert not outcome.passed
        assert "exceeds the limit" in outcome.problem


def test_a_linear_check_over_a_large_sbom_runs() -> None:
    sbom = statement({"packages": [{"name": f"p{i}", "license": "MIT"} for i in range(1000)]})
    condition = compile_condition("predicate.packages.all(p, p.license != 'GPL-3.0')")
    _, outcome = evaluate_all([condition], parse_statement(sbom))
    assert outcome.passed


# --- statements


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"[]", "not a JSON object"),
        (b"{", "not JSON"),
        (b'{"x": NaN}', "not JSON"),
        (b"[" * 100 + b"]" * 100, "nests deeper"),
        (b'{"subject": {}}', "subject"),
        (b" " * (cel.MAX_STATEMENT_BYTES + 1), "bytes"),
    ],
)
def test_unusable_statements(data: bytes, problem: str) -> None:
    with pytest.raises(CelError, match=problem):
        parse_statement(data)


def test_statement_measures_its_longest_list() -> None:
    parsed = parse_statement(statement({"a": [[1, 2, 3], list(range(7))]}))
    assert parsed.longest_list == 7
    assert parsed.size > 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_parse_statement_only_raises_cel_error(data: bytes) -> None:
    with contextlib.suppress(CelError):
        parse_statement(data)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_compile_only_raises_cel_error(expression: str) -> None:
    try:
        condition = compile_condition(expression)
    except CelError:
        return
    _, outcome = evaluate_all([condition], parse_statement(PROVENANCE))  # never raises
    assert isinstance(outcome.passed, bool)
