"""The sparsity report's JSON Schema (versioned, stable) and a validator for the subset of JSON Schema it uses."""

from __future__ import annotations

import math
from typing import Any

from prunecli.report.stats import KIND_TITLES, OTHER_KINDS, SCHEMA_VERSION

_NUM = {"type": "number"}
_INT = {"type": "integer"}
_RATIO = {"type": "number", "minimum": 0, "maximum": 1}
_AGG = {
    "type": "object",
    "required": ["tensors", "numel", "zeros", "sparsity"],
    "additionalProperties": False,
    "properties": {"tensors": _INT, "numel": _INT, "zeros": _INT, "sparsity": _RATIO},
}
_NULLABLE_RATIO = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
_SHAPE = {"type": "array", "items": _INT}

REPORT_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "prunecli sparsity report",
    "type": "object",
    "additionalProperties": False,
    "required": ["schema_version", "source", "format", "pruned_rule", "filter", "model", "recipe", "layers",
                 "others", "units", "warnings"],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        # written by `prune`: the task type the model was pruned for (prunecli.tasks.TASK_TYPES); optional
        "task": {"enum": ["classification", "question_answering", "token_classification"]},
        "source": {"type": ["string", "null"]},
        "format": {"enum": ["safetensors", "safetensors-sharded", "torch", "torch-sharded", "memory"]},
        "pruned_rule": {"type": "string"},
        "filter": {"type": ["string", "null"]},
        "model": {
            "type": "object",
            "additionalProperties": False,
            "required": ["matmul", "all", "pruned", "blockwise_matmul"],
            "properties": {"matmul": _AGG, "all": _AGG, "pruned": _AGG, "blockwise_matmul": _NULLABLE_RATIO},
        },
        "recipe": {
            "type": ["object", "null"],
            "additionalProperties": False,
            "required": ["groups"],
            "properties": {"groups": {"type": "array", "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["index", "name", "pattern", "target_sparsity", "layers", "missing", "numel", "zeros",
                             "sparsity", "blockwise_sparsity"],
                "properties": {
                    "index": _INT, "name": {"type": ["string", "null"]}, "pattern": {"type": ["string", "null"]},
                    "target_sparsity": {"type": ["number", "null"]}, "layers": _INT,
                    "missing": {"type": "array", "items": {"type": "string"}}, "numel": _INT, "zeros": _INT,
                    "sparsity": _RATIO, "blockwise_sparsity": _NULLABLE_RATIO,
                },
            }}},
        },
        "layers": {"type": "array", "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "module", "kind", "matmul", "shape", "dtype", "numel", "zeros", "sparsity",
                         "structure", "block", "nm_conformance", "empty_rows", "empty_cols", "pruned", "group"],
            "properties": {
                "name": {"type": "string"}, "module": {"type": "string"}, "kind": {"enum": list(KIND_TITLES)},
                "matmul": {"type": "boolean"}, "shape": _SHAPE, "dtype": {"type": "string"}, "numel": _INT,
                "zeros": _INT, "sparsity": _RATIO, "structure": {"type": "string"},
                "block": {"type": ["array", "null"], "items": _INT}, "nm_conformance": _NULLABLE_RATIO,
                "empty_rows": _INT, "empty_cols": _INT, "pruned": {"type": "boolean"},
                "group": {"type": ["integer", "null"]},
            },
        }},
        "others": {"type": "array", "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["kind", "tensors", "numel", "zeros", "sparsity"],
            "properties": {"kind": {"enum": list(OTHER_KINDS)}, **_AGG["properties"]},
        }},
        "units": {
            "type": ["object", "null"],
            "additionalProperties": False,
            "required": ["source", "layers", "heads_removed", "neurons_removed"],
            "properties": {
                "source": {"enum": ["weights", "compacted", "recipe"]},
                "heads_removed": _INT, "neurons_removed": _INT,
                "layers": {"type": "array", "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["block", "unit", "kept", "of"],
                    "properties": {"block": {"type": "string"}, "unit": {"enum": ["head", "neuron"]},
                                   "kept": _INT, "of": _INT},
                }},
            },
        },
        "warnings": {"type": "array", "items": {"type": "string"}},
    },
}


def validate_report(report: Any, schema: dict | None = None, where: str = "$") -> None:
    """Check a report against `REPORT_SCHEMA` (the subset of JSON Schema it uses); raises ValueError at the
    first mismatch, naming its JSON path. Kept here so tests and consumers need no jsonschema package."""
    schema = REPORT_SCHEMA if schema is None else schema
    if "const" in schema and report != schema["const"]:
        raise ValueError(f"{where}: expected {schema['const']!r}, got {report!r}")
    if "enum" in schema and report not in schema["enum"]:
        raise ValueError(f"{where}: {report!r} is not one of {schema['enum']}")
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        if not any(_is_type(report, t) for t in types):
            raise ValueError(f"{where}: expected {'/'.join(types)}, got {type(report).__name__}")
    if report is None:
        return
    if isinstance(report, int | float) and not isinstance(report, bool):
        if "minimum" in schema and report < schema["minimum"] or "maximum" in schema and report > schema["maximum"]:
            raise ValueError(f"{where}: {report} is out of range")
        if isinstance(report, float) and not math.isfinite(report):
            raise ValueError(f"{where}: {report} is not finite")
    if isinstance(report, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in report:
                raise ValueError(f"{where}: missing {key!r}")
        for key, value in report.items():
            if key in props:
                validate_report(value, props[key], f"{where}.{key}")
            elif schema.get("additionalProperties") is False:
                raise ValueError(f"{where}: unexpected key {key!r}")
    if isinstance(report, list) and "items" in schema:
        for i, item in enumerate(report):
            validate_report(item, schema["items"], f"{where}[{i}]")


def _is_type(value: Any, name: str) -> bool:
    return {
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
        "string": isinstance(value, str),
        "boolean": isinstance(value, bool),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "null": value is None,
    }[name]
