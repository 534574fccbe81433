"""`inspect --compare`: two checkpoints side by side per layer (sparsity in each, weights that differ)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from prunecli.report.arrays import Array, as_array, values
from prunecli.report.load import load_tensors
from prunecli.report.stats import SCHEMA_VERSION, natural_key, sparsity_report


def compare_reports(source_a: str | Path | Mapping, source_b: str | Path | Mapping) -> dict:
    """Two checkpoints side by side per layer: sparsity in each and the number of weights that differ.

    `changed` is null when a layer is missing from one side or the shapes differ. JSON-ready, with
    `schema_version` and `"kind": "compare"` (see docs/inspect.md).
    """
    report_a, report_b = sparsity_report(source_a), sparsity_report(source_b)
    tensors_a = source_a if isinstance(source_a, Mapping) else load_tensors(source_a)
    tensors_b = source_b if isinstance(source_b, Mapping) else load_tensors(source_b)
    by_name_a = {layer["name"]: layer for layer in report_a["layers"]}
    by_name_b = {layer["name"]: layer for layer in report_b["layers"]}
    rows, changed_total, compared = [], 0, 0
    for name in sorted(by_name_a.keys() | by_name_b.keys(), key=natural_key):
        a, b = by_name_a.get(name), by_name_b.get(name)
        changed = None
        if a is not None and b is not None and a["shape"] == b["shape"]:
            changed = _count_changed(as_array(tensors_a[name]), as_array(tensors_b[name]))
            changed_total += changed
            compared += a["numel"]
        rows.append({
            "name": name,
            "kind": (a or b)["kind"],
            "shape_a": a["shape"] if a else None,
            "shape_b": b["shape"] if b else None,
            "sparsity_a": a["sparsity"] if a else None,
            "sparsity_b": b["sparsity"] if b else None,
            "structure_a": a["structure"] if a else None,
            "structure_b": b["structure"] if b else None,
            "changed": changed,
        })
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "compare",
        "filter": None,
        "a": {"source": report_a["source"], "format": report_a["format"], "model": report_a["model"]},
        "b": {"source": report_b["source"], "format": report_b["format"], "model": report_b["model"]},
        "layers": rows,
        "changed": {"weights": changed_total, "compared": compared},
        "warnings": [f"a: {w}" for w in report_a["warnings"]] + [f"b: {w}" for w in report_b["warnings"]],
    }


def _count_changed(a: Array, b: Array) -> int:
    """Weights whose values differ (NaN differs from everything; +0 equals -0), dtypes promoted as needed."""
    return int(np.count_nonzero(values(a) != values(b)))
