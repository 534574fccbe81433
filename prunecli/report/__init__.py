"""Sparsity reports of saved checkpoints: read tensors (no model is built), measure, render.

`sparsity_report(path_or_state_dict)` is the report `prunecli inspect --json` prints and `prune`
writes as `sparsity_report.json`; its schema is `prunecli.report.schema.REPORT_SCHEMA`.
"""

from __future__ import annotations

from prunecli.report.stats import compare_reports, select_layers, sparsity_report

__all__ = ["compare_reports", "select_layers", "sparsity_report"]
