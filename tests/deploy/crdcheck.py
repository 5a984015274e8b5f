"""An offline stand-in for what the API server does with our CRDs and the objects written against them.

* :func:`structural_problems` checks the rules of a structural schema that the API server enforces
  when the CRD is created (every node typed, no properties beside additionalProperties, list-map
  keys required, the root metadata left alone), plus our own rule that every string, list and map
  is bounded (the API server refuses CEL rules whose cost it cannot bound).
* :func:`validate_object` checks an object the way the API server would on create: defaults
  applied, OpenAPI validation (jsonschema), unknown fields refused (kubectl's strict field
  validation), then every ``x-kubernetes-validations`` CEL rule evaluated with cel-python.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import yaml

from tests.deploy.helmrun import CHART

CRD_DIR = CHART / "crds"
Schema = dict[str, Any]

# Keywords the API server allows only at the root of a CRD schema's metadata: none but type.
_ROOT_METADATA = {"type": "object"}
# Strings the API server itself bounds.
_ROOT_STRINGS = {"$.apiVersion", "$.kind"}


@dataclass(frozen=True)
class Rule:
    """One CEL rule and the schema node it is attached to."""

    path: str
    rule: str
    message: str
    node: Schema


def load_crds(directory: Path = CRD_DIR) -> dict[str, Schema]:
    """Every CRD in ``directory``, keyed by kind."""
    crds: dict[str, Schema] = {}
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                crds[doc["spec"]["names"]["kind"]] = doc
    return crds


def schema_of(crd: Schema, version: str = "v1alpha1") -> Schema:
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            schema: Schema = v["schema"]["openAPIV3Schema"]
            return schema
    raise KeyError(version)


def _untyped_ok(node: Schema) -> bool:
    return bool(node.get("x-kubernetes-preserve-unknown-fields") or node.get("x-kubernetes-int-or-string"))


def structural_problems(root: Schema) -> list[str]:
    """Violations of the structural-schema rules and of our bounds, as readable paths."""
    problems: list[str] = []
    if root.get("properties", {}).get("metadata") not in (None, _ROOT_METADATA):
        problems.append("metadata: only {type: object} is allowed at the root")

    def walk(node: Schema, path: str) -> None:
        kind = node.get("type")
        if kind is None and not _untyped_ok(node):
            problems.append(f"{path}: no type")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: properties and additionalProperties together")
        bounded = "enum" in node or "maxLength" in node or "format" in node
        if kind == "string" and not bounded and path not in _ROOT_STRINGS:
            problems.append(f"{path}: string without maxLength")
        if kind == "array":
            if "maxItems" not in node:
                problems.append(f"{path}: array without maxItems")
            if node.get("x-kubernetes-list-type") == "map":
                item_required = set(node["items"].get("required", []))
                problems.extend(
                    f"{path}: list-map key {key} is not required"
                    for key in node.get("x-kubernetes-list-map-keys", [])
                    if key not in item_required
                )
            walk(node["items"], f"{path}[*]")
        if kind == "object" and "additionalProperties" in node:
            if "maxProperties" not in node:
                problems.append(f"{path}: map without maxProperties")
            extra = node["additionalProperties"]
            if isinstance(extra, dict):
                walk(extra, f"{path}.*")
        for name, child in node.get("properties", {}).items():
            if path == "$" and name == "metadata":
                continue
            walk(child, f"{path}.{name}")

    walk(root, "$")
    return problems


def rules(root: Schema) -> Iterator[Rule]:
    """Every CEL rule in the schema, with the node it validates."""

    def walk(node: Schema, path: str) -> Iterator[Rule]:
        for entry in node.get("x-kubernetes-validations", []):
            yield Rule(path, entry["rule"], entry.get("message", ""), node)
        for name, child in node.get("properties", {}).items():
            yield from walk(child, f"{path}.{name}")
        if isinstance(node.get("items"), dict):
            yield from walk(node["items"], f"{path}[*]")
        if isinstance(node.get("additionalProperties"), dict):
            yield from walk(node["additionalProperties"], f"{path}.*")

    yield from walk(root, "$")


_SELF_FIELD = re.compile(r"\bself\.([A-Za-z_][A-Za-z0-9_]*)")


def cel_visible_fields(node: Schema) -> set[str]:
    """Fields of ``node`` a CEL rule can see: the API server hides untyped preserve-unknown nodes."""
    return {name for name, child in node.get("properties", {}).items() if "type" in child}


def referenced_fields(rule: str) -> set[str]:
    return set(_SELF_FIELD.findall(rule))


_ENV = celpy.Environment()


def evaluate(rule: str, value: Any) -> bool:
    """Evaluate one CEL rule with ``self`` bound to ``value``."""
    program = _ENV.program(_ENV.compile(rule))
    result = program.evaluate({"self": celpy.json_to_cel(value)})
    if not isinstance(result, celpy.celtypes.BoolType):
        raise TypeError(f"rule {rule!r} returned {type(result).__name__}, not bool")
    return bool(result)


def apply_defaults(node: Schema, value: Any) -> Any:
    """Fill in schema defaults the way the API server does before validating."""
    if isinstance(value, dict):
        value = dict(value)
        for name, child in node.get("properties", {}).items():
            if name not in value and "default" in child:
                value[name] = copy.deepcopy(child["default"])
            if name in value:
                value[name] = apply_defaults(child, value[name])
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            for key in value:
                value[key] = apply_defaults(extra, value[key])
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        value = [apply_defaults(node["items"], item) for item in value]
    return value


def _unknown_and_cel(node: Schema, value: Any, path: str, errors: list[str]) -> None:
    if _untyped_ok(node) and "type" not in node:
        return
    for entry in node.get("x-kubernetes-validations", []):
        try:
            ok = evaluate(entry["rule"], value)
        except Exception as e:  # noqa: BLE001 - any evaluation failure is a rejection
            errors.append(f"{path}: rule {entry['rule']!r} failed to evaluate: {e}")
            continue
        if not ok:
            errors.append(f"{path}: {entry.get('message') or entry['rule']}")
    if isinstance(value, dict):
        props = node.get("properties", {})
        extra = node.get("additionalProperties")
        for key, child_value in value.items():
            if key in props:
                if not (path == "$" and key == "metadata"):
                    _unknown_and_cel(props[key], child_value, f"{path}.{key}", errors)
            elif isinstance(extra, dict):
                _unknown_and_cel(extra, child_value, f"{path}.{key}", errors)
            elif not node.get("x-kubernetes-preserve-unknown-fields"):
                errors.append(f"{path}: unknown field {key!r}")
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for i, item in enumerate(value):
            _unknown_and_cel(node["items"], item, f"{path}[{i}]", errors)


def validate_object(crd: Schema, obj: Any) -> list[str]:
    """The reasons the API server would refuse ``obj`` (empty when it would accept it)."""
    schema = schema_of(crd)
    obj = apply_defaults(schema, obj)
    errors = [
        f"$.{'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in jsonschema.Draft4Validator(schema).iter_errors(obj)
    ]
    if errors:
        return errors
    _unknown_and_cel(schema, obj, "$", errors)
    return errors


def defaulted(crd: Schema, obj: Any) -> Any:
    return apply_defaults(schema_of(crd), obj)
