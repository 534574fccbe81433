"""`prunecli compact CHECKPOINT --output_dir OUT`: remove pruned heads and neurons, keep the function.

The work is `prunecli.pipelines.compact.compact_checkpoint` (the logit check, the atomic write, the ONNX export
and the model card); this module parses the options and renders the report.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from prunecli.cli.options import DataDir, MaxLength, OutputDir, Overwrite, TaskName, ValidationFile, _opt
from prunecli.errors import UserError
from prunecli.pipelines.compact import CHECK_EXAMPLES

NAME = "compact"


def command(
    checkpoint: Annotated[str, typer.Argument(help="A pruned checkpoint folder (any sequence classifier).")],
    output_dir: OutputDir = None,
    overwrite_output_dir: Overwrite = False,
    onnx: Annotated[bool, typer.Option("--onnx", help="Also write the float32 ONNX export (prunecli export) "
                                       "to OUTPUT_DIR/onnx.")]
    = False,
    task_name: TaskName = None,
    data_dir: DataDir = None,
    validation_file: ValidationFile = None,
    max_length: MaxLength = 128,
    check_examples: Annotated[int, _opt("check_examples", "Examples on which the logits are compared.", "Data")]
    = CHECK_EXAMPLES,
) -> None:
    """Remove pruned attention heads and FFN neurons: a smaller, faster model with the same outputs."""
    from rich.console import Console

    from prunecli.config import DataConfig
    from prunecli.pipelines.compact import compact_checkpoint

    if not output_dir:
        raise UserError("--output_dir is required: where the compacted checkpoint is written.")
    data = DataConfig(task_name=task_name, data_dir=data_dir, validation_file=validation_file, max_length=max_length)
    report = compact_checkpoint(checkpoint, output_dir, overwrite=overwrite_output_dir, data=data,
                                check_examples=check_examples, onnx=onnx)
    render(report, Console())


def render(report: dict[str, Any], console) -> None:
    """The compaction summary: units kept per block, parameters and file size before and after."""
    from rich.table import Table

    from prunecli.report.names import group_names

    table = Table(title="Compaction", title_justify="left", header_style="bold")
    for col in ("blocks", "unit", "kept"):
        table.add_column(col, justify="left" if col != "kept" else "right")
    by_kept: dict[tuple[str, str], list[str]] = {}
    for p in report["plan"]:
        by_kept.setdefault((p["unit"], f"{p['kept']} of {p['of']}"), []).append(p["block"])
    for (unit, kept), blocks in by_kept.items():
        table.add_row("\n".join(group.text for group in group_names(blocks)), f"{unit}s", kept)
    console.print(table)
    mb = ""
    if report.get("file_mb_before") and report.get("file_mb_after"):
        mb = f", weights {report['file_mb_before']:.1f} MB -> {report['file_mb_after']:.1f} MB"
    console.print(f"parameters {report['params_before']:,} -> {report['params_after']:,}{mb}; largest logit "
                  f"difference {report['max_logit_difference']:.2g} on {report.get('checked_on', 'the check')}",
                  highlight=False)
    if report.get("onnx"):
        o = report["onnx"]
        console.print(f"ONNX: {o['file']}, float32 (max difference vs PyTorch "
                      f"{o.get('max_abs_diff', float('nan')):.2g}); prunecli export --quantize int8 for INT8",
                      highlight=False)
