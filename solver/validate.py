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
    unknown = _unknown_keys(error)
    if unknown:  # a misspelt key is reported as itself, not as the required key it hides
        known = error.schema["properties"]
        raise InputError(document.path, document.where((*error.absolute_path, unknown[0])),
                         f"a known key ({', '.join(sorted(known))}), not {quote(unknown[0])}{nearest(unknown[0], known)}")
    raise InputError(document.path, document.where(error.absolute_path), _describe(error))


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
        return f"{error.schema['description']} (got {quote(error.instance)})"
    if error.validator == "anyOf" and all(set(choice) == {"required"} for choice in error.validator_value):
        keys = [choice["required"][0] for choice in error.validator_value]
        return f"the key {keys[0]!r} (or {' or '.join(map(repr, keys[1:]))})"
    if error.validator == "required":
        missing = [key for key in error.validator_value if key not in error.instance]
        return f"the required key {missing[0]!r}"
    description = error.schema.get("description", "a valid value").rstrip(".")
    return f"{description} ({error.validator} {quote(error.validator_value)}, not {quote(error.instance)})"
