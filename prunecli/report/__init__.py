"""Sparsity reports of saved checkpoints: read tensors (no model is built), measure, render.

`sparsity_report(path_or_state_dict)` is the report `prunecli inspect --json` prints and `prune`
writes as `sparsity_report.json`; its schema is `prunecli.report.schema.REPORT_SCHEMA`. Importing this
package costs numpy only: torch is imported to read torch files or convert in-memory torch tensors, and
the renderers (`render_report`, `render_comparison`, `markdown_table`) are loaded on first use, so
`inspect --json` never loads the table code.
"""

from __future__ import annotations

import importlib

from prunecli.report.compare import compare_reports
from prunecli.report.load import load_tensors
from prunecli.report.stats import (
    pattern_sparsity,
    select_layers,
    sparsity_report,
    tensor_kind,
    tensor_structure,
)

_LAZY = {"markdown_table": "prunecli.report.render", "render_comparison": "prunecli.report.render",
         "render_report": "prunecli.report.render"}

__all__ = [
    "compare_reports",
    "load_tensors",
    "markdown_table",
    "pattern_sparsity",
    "render_comparison",
    "render_report",
    "select_layers",
    "sparsity_report",
    "tensor_kind",
    "tensor_structure",
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'prunecli.report' has no attribute {name!r}")
