"""CEL conditions over in-toto statements: compiled once, evaluated with a bounded cost.

The engine is ``common-expression-language`` (the Rust ``cel`` crate): measured against ``cel-python``
in ``benchmarks/cel_engines.py``, it is 10-1000x faster, matches regexes in linear time (cel-python uses
Python's backtracking ``re``), refuses deep nesting with an error instead of a ``RecursionError``, and
never crashes on deep data. Neither engine has a cost limit of its own, so we bound the cost ourselves,
as Kubernetes does, in three layers:

1. **At compile time** (:func:`compile_condition`, a :class:`CelError` is ``PolicyInvalid``): the source
   is at most :data:`MAX_EXPRESSION_LENGTH` characters, brackets nest at most :data:`MAX_NESTING` deep,
   comprehension macros (``all``, ``exists``, ``exists_one``, ``map``, ``filter``) nest at most as far as
   :data:`MAX_LOOP_EXPONENT` allows (``map``/``filter`` count twice: the engine builds their result by
   copying, in time quadratic in the list), only the native functions in :data:`ALLOWED_FUNCTIONS` are
   called, and only ``predicate``, ``predicateType``, ``subject``, ``statement`` and macro-bound names
   are read.
2. **Per statement** (:func:`parse_statement`): JSON at most :data:`MAX_STATEMENT_BYTES`, nested at most
   :data:`MAX_STATEMENT_DEPTH` deep, parsed once per verdict; its size and longest list are measured.
3. **Before each evaluation** (:meth:`CelCondition.estimate`): an upper bound on the work, from the
   expression's shape and the statement's measured size, must be at most :data:`COST_LIMIT`; otherwise
   the condition fails without running, and without converting the statement into the engine's values.
   The bound is ``steps * loops * (1 + (plus + 1)**2 * string / 16 + (in + plus) * list) + 4000 * nodes``:
   ``steps`` is the token count, ``loops`` the longest list raised to the macro nesting exponent,
   ``string`` the longest string (string operations, and ``+``, whose left-nested chains copy
   quadratically), ``list`` the longest list (``in``, list ``+``), and the last term the conversion of
   the statement's JSON values. One unit is about 2.5 ns of the engine's time
   (``benchmarks/cel_engines.py``). Not covered: ``==`` between two whole maps or lists inside a
   macro, which compares up to the statement's size per step.

Evaluation never raises: every engine error becomes a :class:`ConditionOutcome` that did not pass.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import cel as _engine

MAX_EXPRESSION_LENGTH: Final = 1024
MAX_MESSAGE_LENGTH: Final = 256
MAX_NESTING: Final = 32  # brackets of any kind, in the source
MAX_LOOP_EXPONENT: Final = 4  # e.g. all() inside map(), or map() inside map(): L**4 at most
MAX_STATEMENT_BYTES: Final = 4 * 1024 * 1024  # verify/ bounds a DSSE payload the same way
MAX_STATEMENT_DEPTH: Final = 64
COST_LIMIT: Final = 20_000_000  # about 50 ms of the engine's time at worst (benchmarks/cel_engines.py)
BYTES_PER_STEP: Final = 16  # bytes the engine copies or compares in the time of one cost unit
UNITS_PER_NODE: Final = 4000  # converting one JSON value into the engine's values (measured: 3-10 us)

ROOT_VARIABLES: Final = frozenset({"predicate", "predicateType", "subject", "statement"})
_LARGE_ROOTS: Final = frozenset({"predicate", "statement"})
# Type names read as identifiers (``type(x) == string``).
_TYPE_NAMES: Final = frozenset(
    {"bool", "bytes", "double", "duration", "int", "list", "map", "null_type", "string", "timestamp", "type"}
)
_MACROS: Final = {"all": 1, "exists": 1, "exists_one": 1, "map": 2, "filter": 2}
ALLOWED_FUNCTIONS: Final = frozenset(
    {
        "size",
        "contains",
        "startsWith",
        "endsWith",
        "matches",
        "int",
        "uint",
        "double",
        "string",
        "bytes",
        "bool",
        "timestamp",
        "duration",
        "dyn",
        "type",
        "getFullYear",
        "getMonth",
        "getDayOfMonth",
        "getDayOfWeek",
        "getDayOfYear",
        "getHours",
        "getMinutes",
        "getSeconds",
        "getMilliseconds",
    }
)


class CelError(ValueError):
    """Raised by :func:`compile_condition` and :func:`parse_statement` for an unusable input."""


@dataclass(frozen=True, slots=True)
class _Shape:
    """What the tokenizer learned of an expression: its size, loops and concatenations."""

    steps: int
    loop_exponent: int
    concatenations: int
    bound_names: frozenset[str]
    memberships: int = 0  # ``in`` operators: linear in a list's length


@dataclass(frozen=True, slots=True)
class Statement:
    """A parsed in-toto statement: the CEL variables, and the sizes the cost bound needs."""

    variables: Mapping[str, object]
    size: int  # bytes of JSON
    longest_list: int  # the most entries of any list or map in it
    nodes: int  # JSON values in it
    longest_string: int = 0  # the most characters of any string in it


@dataclass(frozen=True, slots=True)
class ConditionOutcome:
    """One condition evaluated: passed, or why not (``false``, an error, or over the cost limit)."""

    passed: bool
    problem: str = ""


@dataclass(frozen=True, slots=True)
class CelCondition:
    """A compiled condition: evaluate it with :meth:`evaluate`; immutable and shareable."""

    expression: str
    message: str
    program: _engine.Program
    shape: _Shape
    roots: frozenset[str] = ROOT_VARIABLES  # the variables it reads: only those are converted

    def estimate(self, statement: Statement) -> int:
        """An upper bound on the work of evaluating this condition over ``statement``."""
        shape = self.shape
        longest = max(statement.longest_list, shape.steps, 1)  # a literal list has < steps entries
        loops = int(longest**shape.loop_exponent)
        longest_value = max(statement.longest_string, len(self.expression))  # literals are in the source
        linear = (
            1
            + (shape.concatenations + 1) ** 2 * math.ceil(longest_value / BYTES_PER_STEP)
            + (shape.memberships + shape.concatenations) * longest
        )
        converted = len(self.roots & _LARGE_ROOTS)  # predicateType and subject are small
        return shape.steps * loops * linear + UNITS_PER_NODE * statement.nodes * converted

    def evaluate(self, statement: Statement, context: _engine.Context | None = None) -> ConditionOutcome:
        """True only when the expression is exactly ``true``. Never raises.

        ``context`` is :func:`context_for` the same statement, built once for several conditions.
        """
        cost = self.estimate(statement)
        if cost > COST_LIMIT:
            return ConditionOutcome(False, f"estimated cost {cost} exceeds the limit of {COST_LIMIT}")
        try:
            result = self.program.execute(
                context if context is not None else context_for(statement, self.roots)
            )
        except Exception as e:  # noqa: BLE001 - an engine error is a failed condition, never a crash
            return ConditionOutcome(False, f"evaluation error: {type(e).__name__}: {str(e)[:200]}")
        if result is True:
            return ConditionOutcome(True)
        if isinstance(result, bool):
            return ConditionOutcome(False, "evaluated to false")
        return ConditionOutcome(False, f"evaluated to a {type(result).__name__}, not a bool")


def compile_condition(expression: str, message: str = "") -> CelCondition:
    """Compile one condition; raises :class:`CelError` (the caller makes it ``PolicyInvalid``)."""
    if not expression.strip():
        raise CelError("the expression is empty")
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise CelError(f"the expression has {len(expression)} characters; at most {MAX_EXPRESSION_LENGTH}")
    if len(message) > MAX_MESSAGE_LENGTH:
        raise CelError(f"the message has {len(message)} characters; at most {MAX_MESSAGE_LENGTH}")
    shape = _scan(expression)
    try:
        program = _engine.compile(expression)
        functions = program.functions()
        variables = program.variables()
    except Exception as e:
        raise CelError(f"does not compile: {str(e)[:300]}") from e
    unknown = sorted(
        f for f in functions if f not in ALLOWED_FUNCTIONS and not f.startswith(("_", "@", "!_", "-_"))
    )
    if unknown:
        raise CelError(f"unknown function(s) {', '.join(unknown[:5])}")
    allowed_names = ROOT_VARIABLES | _TYPE_NAMES | shape.bound_names
    strangers = sorted(v for v in variables if v not in allowed_names)
    if strangers:
        raise CelError(
            f"unknown variable(s) {', '.join(strangers[:5])}; "
            f"use {', '.join(sorted(ROOT_VARIABLES))} or a macro's variable"
        )
    return CelCondition(expression, message, program, shape, frozenset(variables) & ROOT_VARIABLES)


def _scan(expression: str) -> _Shape:
    """Tokenize just enough to bound the cost: strings skipped, brackets, macros and ``+`` counted."""
    steps = concatenations = memberships = exponent = worst = 0
    bound: set[str] = set()
    stack: list[int] = []  # the loop exponent outside each open bracket
    i, n, previous = 0, len(expression), ""
    while i < n:
        ch = expression[i]
        i += 1
        if ch.isspace():
            continue
        steps += 1
        if ch in "\"'" or (ch in "rRbB" and i < n and expression[i] in "\"'"):
            i, previous = _skip_string(expression, i - 1), '"'
            continue
        if ch.isalpha() or ch == "_":
            word, i = _word(expression, i - 1)
            k = _skip_space(expression, i)
            if not (previous == "." and word in _MACROS and k < n and expression[k] == "("):
                memberships += word == "in"
                previous = word
                continue
            # a macro call: its brackets multiply the cost of what they hold by a list's length
            bound.add(_word(expression, _skip_space(expression, k + 1))[0])
            stack.append(exponent)
            exponent += _MACROS[word]
            worst = max(worst, exponent)
            i, ch = k + 1, "("
        elif ch in "([{":
            stack.append(exponent)
        elif ch in ")]}":
            if not stack:
                raise CelError("unbalanced brackets")
            exponent = stack.pop()
        elif ch == "+":
            concatenations += 1
        if len(stack) > MAX_NESTING:
            raise CelError(f"brackets nest deeper than {MAX_NESTING}")
        previous = ch
    if worst > MAX_LOOP_EXPONENT:
        raise CelError(
            f"comprehension macros nest too deeply (cost grows as a list's length to the power {worst}; "
            f"at most {MAX_LOOP_EXPONENT}, where map and filter count 2 and all, exists, exists_one 1)"
        )
    return _Shape(steps, worst, concatenations, frozenset(bound - {""}), memberships)


def _word(expression: str, i: int) -> tuple[str, int]:
    """The identifier starting at ``i`` (possibly empty) and the index after it."""
    j = i
    while j < len(expression) and (expression[j].isalnum() or expression[j] == "_"):
        j += 1
    return expression[i:j], j


def _skip_space(expression: str, i: int) -> int:
    while i < len(expression) and expression[i].isspace():
        i += 1
    return i


def _skip_string(expression: str, i: int) -> int:
    """The index just past the string literal starting at ``i`` (with its r/b prefix, if any)."""
    raw = False
    while expression[i] in "rRbB":
        raw = raw or expression[i] in "rR"
        i += 1
    quote = expression[i]
    triple = expression.startswith(quote * 3, i)
    delimiter = quote * 3 if triple else quote
    i += len(delimiter)
    n = len(expression)
    while i < n:
        if not raw and expression[i] == "\\":
            i += 2
            continue
        if expression.startswith(delimiter, i):
            return i + len(delimiter)
        if not triple and expression[i] == "\n":
            break
        i += 1
    raise CelError("unterminated string literal")


def parse_statement(data: bytes) -> Statement:
    """Parse an in-toto statement for conditions; raises :class:`CelError` when it is not usable.

    Bounded: at most :data:`MAX_STATEMENT_BYTES` bytes and :data:`MAX_STATEMENT_DEPTH` levels deep.
    The variables are ``statement`` (the whole), ``predicate``, ``predicateType`` and ``subject``.
    """
    if len(data) > MAX_STATEMENT_BYTES:
        raise CelError(f"the statement has {len(data)} bytes; at most {MAX_STATEMENT_BYTES}")
    if _json_depth(data) > MAX_STATEMENT_DEPTH:
        raise CelError(f"the statement nests deeper than {MAX_STATEMENT_DEPTH}")
    try:
        value = json.loads(data, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as e:
        raise CelError(f"the statement is not JSON: {str(e)[:200]}") from e
    if not isinstance(value, dict):
        raise CelError("the statement is not a JSON object")
    predicate = value.get("predicate", {})
    subject = value.get("subject", [])
    predicate_type = value.get("predicateType", "")
    if not isinstance(subject, list) or not isinstance(predicate_type, str):
        raise CelError("the statement's subject is not a list or its predicateType not a string")
    variables = {
        "statement": value,
        "predicate": predicate if predicate is not None else {},
        "predicateType": predicate_type,
        "subject": subject,
    }
    longest, nodes, longest_string = _measure(value)
    return Statement(variables, len(data), longest, nodes, longest_string)


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _json_depth(data: bytes) -> int:
    """The deepest bracket nesting of JSON text, strings skipped; linear and without recursion."""
    depth = worst = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            worst = max(worst, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return worst


def _measure(value: object) -> tuple[int, int, int]:
    """The most entries of any list or map, the number of values, and the longest string (iterative)."""
    longest = nodes = longest_string = 0
    pending: list[object] = [value]
    while pending:
        item = pending.pop()
        nodes += 1
        if isinstance(item, dict):
            longest = max(longest, len(item))
            pending.extend(item.values())
        elif isinstance(item, list):
            longest = max(longest, len(item))
            pending.extend(item)
        elif isinstance(item, str):
            longest_string = max(longest_string, len(item))
    return longest, nodes, longest_string


def context_for(statement: Statement, roots: Iterable[str] = ROOT_VARIABLES) -> _engine.Context:
    """The engine's variables ``roots`` of ``statement``, converted once. Not thread-safe: one per caller."""
    return _engine.Context({name: statement.variables[name] for name in roots if name in statement.variables})


def roots_of(conditions: Sequence[CelCondition]) -> frozenset[str]:
    """The variables any of ``conditions`` reads."""
    return frozenset(name for condition in conditions for name in condition.roots)


def evaluate_all(conditions: Sequence[CelCondition], statement: Statement) -> tuple[int, ConditionOutcome]:
    """The first condition that does not pass, by index, or ``(-1, passed)`` when all pass. Never raises."""
    context: _engine.Context | None = None
    for index, condition in enumerate(conditions):
        cost = condition.estimate(statement)
        if cost > COST_LIMIT:  # refused before the statement is converted
            return index, ConditionOutcome(False, f"estimated cost {cost} exceeds the limit of {COST_LIMIT}")
        if context is None:
            try:
                context = context_for(statement, roots_of(conditions))
            except Exception as e:  # noqa: BLE001 - a value the engine cannot convert fails the condition
                return index, ConditionOutcome(
                    False, f"statement not usable: {type(e).__name__}: {str(e)[:200]}"
                )
        outcome = condition.evaluate(statement, context)
        if not outcome.passed:
            return index, outcome
    return -1, ConditionOutcome(True)
