"""CEL engines for attestation conditions: common-expression-language (Rust) against cel-python.

    python3 -m benchmarks.cel_engines [--hostile-timeout SECONDS]

Prints, for each engine: correctness on Kubernetes-style expressions over a SLSA provenance statement,
compile and evaluation time per condition, and what each does with hostile expressions (deep nesting,
huge lists, string growth, catastrophic regexes). Hostile runs go to a child process with a timeout, so
a hang or a crash is reported, never suffered. Then the cost bound of controller.policy.cel: for each
hostile expression, whether it is refused at compile time, refused by the cost estimate, or run (and
how long that took). Neither engine has a cost limit of its own; the last table is ours.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import time
from collections.abc import Callable
from typing import Any

GHA = "https://actions.github.io/buildtypes/workflow/v1"
STATEMENT: dict[str, Any] = {
    "_type": "https://in-toto.io/Statement/v1",
    "subject": [{"name": "ghcr.io/acme/app", "digest": {"sha256": "ab" * 32}}],
    "predicateType": "https://slsa.dev/provenance/v1",
    "predicate": {
        "buildDefinition": {
            "buildType": GHA,
            "externalParameters": {
                "workflow": {"ref": "refs/tags/v1.2.3", "repository": "https://github.com/acme/app"}
            },
            "resolvedDependencies": [
                {"uri": f"git+https://github.com/acme/lib{i}@refs/tags/v1"} for i in range(20)
            ],
        },
        "runDetails": {"builder": {"id": "https://github.com/actions/runner/github-hosted"}},
    },
}
CORRECTNESS: list[tuple[str, object]] = [
    (f'predicate.buildDefinition.buildType == "{GHA}"', True),
    ('predicateType.startsWith("https://slsa.dev/")', True),
    ('subject.exists(s, s.digest.sha256 == "' + "ab" * 32 + '")', True),
    (
        "predicate.buildDefinition.resolvedDependencies.all(d, d.uri.startsWith('git+https://github.com/acme/'))",
        True,
    ),
    ("size(predicate.buildDefinition.resolvedDependencies) == 20", True),
    ("predicate.buildDefinition.resolvedDependencies.filter(d, d.uri.contains('lib1')).size() == 11", True),
    ("predicate.buildDefinition.resolvedDependencies.exists_one(d, d.uri.contains('lib13'))", True),
    ('predicate.buildDefinition.externalParameters.workflow.ref.matches("^refs/tags/v[0-9.]+$")', True),
    ("has(predicate.runDetails.builder.id) && !has(predicate.runDetails.metadata)", True),
    ("statement.predicate.runDetails.builder.id.endsWith('github-hosted')", True),
    ("int('42') + 1 == 43 && string(1) == '1' && 3u > 2u", True),
    ("timestamp('2024-01-01T00:00:00Z') < timestamp('2025-01-01T00:00:00Z')", True),
    ("duration('1h') > duration('30m')", True),
    ("[1, 2, 3].map(x, x * 2) == [2, 4, 6]", True),
    ("{'a': 1}.a == 1 && 'a' in {'a': 1}", True),
    ("type(predicate) == map", True),
    ("predicate.nope == 1", "error"),
    ("1 / 0 == 0", "error"),
]
HOSTILE: list[tuple[str, str, dict[str, Any]]] = [
    ("deep parentheses (1000)", "(" * 1000 + "true" + ")" * 1000, {}),
    ("catastrophic regex (a+)+$ on 28 chars", "'" + "a" * 28 + "!'.matches('^(a+)+$')", {}),
    ("map over 20k list", "predicate.l.map(x, x).size() > 0", {"l": list(range(20_000))}),
    ("all over 200k list", "predicate.l.all(x, x >= 0)", {"l": list(range(200_000))}),
    (
        "nested map over 2k list",
        "predicate.l.map(a, predicate.l.map(b, a)).size() > 0",
        {"l": list(range(2_000))},
    ),
    ("string growth: 60 x 1 MiB concat", " + ".join(["predicate.s"] * 60) + " == ''", {"s": "a" * (1 << 20)}),
    ("deep data (5000 levels)", "size(predicate) > 0", {"d": "deep"}),
]


# Within the bound: the largest inputs it admits, to compare each estimate with the time it took.
ADMITTED: list[tuple[str, str, dict[str, Any]]] = [
    (
        "all over 2k-package SBOM",
        "predicate.p.all(x, x.license != 'GPL-3.0')",
        {"p": [{"license": "MIT"}] * 2000},
    ),
    ("map over 400 list", "predicate.l.map(x, x).size() > 0", {"l": list(range(400))}),
    (
        "exists in exists over 150 list",
        "predicate.l.all(a, predicate.l.exists(b, b == a))",
        {"l": list(range(150))},
    ),
    ("2 x 256 KiB concat", "size(predicate.s + predicate.s) > 0", {"s": "a" * (1 << 18)}),
    ("regex over 256 KiB", "predicate.s.matches('^(a+)+b$')", {"s": "a" * (1 << 18)}),
]


def _deep() -> dict[str, Any]:
    d: dict[str, Any] = {"x": 1}
    for _ in range(5000):
        d = {"a": d}
    return d


def _variables(predicate: dict[str, Any]) -> dict[str, Any]:
    statement = {**STATEMENT, "predicate": predicate}
    return {
        "statement": statement,
        "predicate": predicate,
        "predicateType": statement["predicateType"],
        "subject": statement["subject"],
    }


# --- the two engines behind one shape: compile(expr) -> run(variables) -> result


def rust_compile(expression: str) -> Callable[[dict[str, Any]], object]:
    import cel  # each engine is imported where it is measured

    program = cel.compile(expression)
    return lambda variables: program.execute(cel.Context(variables))


def python_compile(expression: str) -> Callable[[dict[str, Any]], object]:
    import celpy

    env = celpy.Environment()
    program = env.program(env.compile(expression))

    def run(variables: dict[str, Any]) -> object:
        result = program.evaluate({k: celpy.json_to_cel(v) for k, v in variables.items()})
        if isinstance(result, Exception):
            raise result
        return bool(result) if isinstance(result, celpy.celtypes.BoolType) else result

    return run


ENGINES: dict[str, Callable[[str], Callable[[dict[str, Any]], object]]] = {
    "common-expression-language 0.10 (Rust)": rust_compile,
    "cel-python 0.5": python_compile,
}


def correctness(name: str) -> None:
    compile_ = ENGINES[name]
    variables = _variables(STATEMENT["predicate"])
    ok, compile_ms, eval_ms, wrong = 0, [], [], []
    for expression, expected in CORRECTNESS:
        try:
            started = time.perf_counter()
            run = compile_(expression)
            compile_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            for _ in range(20):
                result: object = run(variables)
            eval_ms.append((time.perf_counter() - started) * 1000 / 20)
        except Exception:  # noqa: BLE001 - an error is a result here
            result = "error"
        if result == expected or (expected == "error" and result == "error"):
            ok += 1
        else:
            wrong.append(f"{expression[:50]!r} -> {str(result)[:40]}")
    print(f"  correct: {ok}/{len(CORRECTNESS)}")
    print(
        f"  compile per condition: median {statistics.median(compile_ms):.3f} ms, max {max(compile_ms):.3f} ms"
    )
    print(f"  evaluate per condition: median {statistics.median(eval_ms):.4f} ms, max {max(eval_ms):.3f} ms")
    for line in wrong:
        print(f"  wrong: {line}")


def _hostile_child(name: str, index: int, queue: Any) -> None:
    _, expression, predicate = HOSTILE[index]
    if predicate.get("d") == "deep":
        predicate = {"d": _deep()}
    started = time.perf_counter()
    try:
        result: object = ENGINES[name](expression)(_variables(predicate))
        outcome = f"result {str(result)[:20]}"
    except BaseException as e:  # noqa: BLE001 - RecursionError and the like are what we measure
        outcome = f"{type(e).__name__}"
    queue.put(f"{outcome} in {(time.perf_counter() - started) * 1000:.0f} ms")


def hostile(name: str, timeout: float) -> None:
    for index, (label, _, _) in enumerate(HOSTILE):
        queue: Any = multiprocessing.Queue()
        child = multiprocessing.Process(target=_hostile_child, args=(name, index, queue), daemon=True)
        child.start()
        child.join(timeout)
        if child.is_alive():
            child.kill()
            child.join()
            outcome = f"still running after {timeout:.0f} s (killed)"
        elif child.exitcode != 0:
            outcome = f"crashed, exit code {child.exitcode}"
        else:
            outcome = queue.get(timeout=5)
        print(f"  {label:40} {outcome}")


def bounded() -> None:
    from controller.policy.cel import COST_LIMIT, CelError, compile_condition, evaluate_all, parse_statement

    print(f"controller.policy.cel with its cost bound (limit {COST_LIMIT}):")
    for label, expression, predicate in HOSTILE + ADMITTED:
        if predicate.get("d") == "deep":
            data = b'{"predicate": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5001
        else:
            data = json.dumps({**STATEMENT, "predicate": predicate}).encode()
        try:
            condition = compile_condition(expression)
        except CelError as e:
            print(f"  {label:40} refused at compile time: {str(e)[:60]}")
            continue
        try:
            statement = parse_statement(data)
        except CelError as e:
            print(f"  {label:40} statement refused: {str(e)[:60]}")
            continue
        started = time.perf_counter()
        _, outcome = evaluate_all([condition], statement)
        elapsed = (time.perf_counter() - started) * 1000
        what = "passed" if outcome.passed else outcome.problem[:60]
        print(f"  {label:40} {elapsed:7.1f} ms  estimate {condition.estimate(statement):.2e}: {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hostile-timeout", type=float, default=10.0)
    args = parser.parse_args()
    for name in ENGINES:
        print(f"{name}:")
        correctness(name)
        hostile(name, args.hostile_timeout)
    bounded()


if __name__ == "__main__":
    main()
