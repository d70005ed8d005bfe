"""Check a loaded document against its JSON Schema (goal, config, rulepack or measurements)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

import jsonschema
from referencing import Registry, Resource

from .errors import InputError, nearest, quote
from .load import Document

SCHEMAS = ("goal", "config", "rulepack", "measurements")


@cache
def schema(name: str) -> dict:
    return json.loads((resources.files("tplan.schemas") / f"{name}.schema.json").read_text(encoding="utf-8"))


@cache
def _registry() -> Registry:
    return Registry().with_resources((f"{name}.schema.json", Resource.from_contents(schema(name))) for name in SCHEMAS)


def validate(document: Document, name: str) -> None:
    """Raise InputError at the most relevant schema violation, naming its key path and line."""
    validator = jsonschema.Draft202012Validator(schema(name), registry=_registry())
    error = jsonschema.exceptions.best_match(validator.iter_errors(document.data))
    while error is not None and error.parent is not None and error.parent.absolute_path == error.absolute_path:
        error = error.parent  # a failed alternative of a oneOf: describe the whole key instead
    if error is None:
        return
    error = _intended_alternative(error)
    unknown = _unknown_keys(error)
    if unknown:  # a misspelt key is reported as itself, not as the required key it hides
        known = error.schema["properties"]
        raise InputError(document.path, document.where((*error.absolute_path, unknown[0])),
                         f"a known key ({', '.join(sorted(known))}), not {quote(unknown[0])}{nearest(unknown[0], known)}")
    raise InputError(document.path, document.where(error.absolute_path), _describe(error))


def _intended_alternative(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """A mapping that fits none of a oneOf's alternatives is meant as the object alternative whose
    properties name most of its keys (an explicit shape, not {hf_config}): report what that one lacks."""
    if error.validator != "oneOf" or not isinstance(error.instance, dict) or not error.instance:
        return error
    by_branch: dict[int, list] = {}
    for suberror in error.context:
        by_branch.setdefault(suberror.relative_schema_path[0], []).append(suberror)

    def overlap(errors: list) -> int:
        named = set().union(*(suberror.schema.get("properties", {}) for suberror in errors
                              if not suberror.relative_path))
        return len(named & set(error.instance))

    scored = sorted(((overlap(errors), branch) for branch, errors in by_branch.items()), reverse=True)
    if not scored or scored[0][0] == 0 or (len(scored) > 1 and scored[1][0] == scored[0][0]):
        return error
    return jsonschema.exceptions.best_match(by_branch[scored[0][1]])


def _unknown_keys(error: jsonschema.ValidationError) -> list[str]:
    if error.validator not in ("required", "additionalProperties") or not isinstance(error.instance, dict):
        return []
    if error.schema.get("additionalProperties") is not False:
        return []
    return [key for key in error.instance if key not in error.schema.get("properties", {})]


def _describe(error: jsonschema.ValidationError) -> str:
    if error.validator == "enum":
        return (f"one of {', '.join(map(json.dumps, error.validator_value))}, not {quote(error.instance)}"
                f"{nearest(error.instance, error.validator_value)}")
    if error.validator == "type":
        return f"a value of type {error.validator_value}, not {quote(error.instance)}"
    if error.validator == "oneOf" and error.schema.get("description"):
        description = error.schema["description"].rstrip(".")
        return f"{description[:1].lower()}{description[1:]} (got {quote(error.instance)})"
    if error.validator == "anyOf" and all(set(choice) == {"required"} for choice in error.validator_value):
        keys = [choice["required"][0] for choice in error.validator_value]
        return f"the key {keys[0]!r} (or {' or '.join(map(repr, keys[1:]))})"
    if error.validator == "required":
        missing = [key for key in error.validator_value if key not in error.instance]
        return f"the required key {missing[0]!r}"
    description = error.schema.get("description", "a valid value").rstrip(".")
    return f"{description} ({error.validator} {quote(error.validator_value)}, not {quote(error.instance)})"
