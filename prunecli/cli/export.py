"""`prunecli export MODEL --output_dir OUT [--quantize int8]`: a checked, self-contained ONNX deployment folder.

The work is `prunecli.pipelines.export.export_model` (the float32 logit check, the INT8 quantization and its
agreement check, the atomic write, the model card); this module parses the options and renders the record.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from prunecli.cli.options import OPTIONS, DataDir, MaxLength, OutputDir, Overwrite, TaskName, ValidationFile, _opt
from prunecli.pipelines.export import CHECK_EXAMPLES
from prunecli.settings import DATA

NAME = "export"
Quantize = OPTIONS["quantize"]


def command(
    model: Annotated[str, typer.Argument(help="A checkpoint folder (dense, sparse or compacted) or the alias "
                                         "minilm.")],
    output_dir: OutputDir = None,
    quantize: Quantize = None,
    overwrite_output_dir: Overwrite = False,
    task_name: TaskName = None,
    data_dir: DataDir = None,
    validation_file: ValidationFile = None,
    max_length: MaxLength = 128,
    check_examples: Annotated[int, _opt("check_examples", "Examples on which the export is checked against "
                                                         "PyTorch.", DATA)] = CHECK_EXAMPLES,
) -> None:
    """Export a checkpoint to ONNX (float32 or INT8), checked against PyTorch, ready to serve."""
    from rich.console import Console
    from rich.markup import escape

    from prunecli.config import DataConfig
    from prunecli.pipelines.export import export_model

    data = DataConfig(task_name=task_name, data_dir=data_dir, validation_file=validation_file, max_length=max_length)
    err = Console(stderr=True, highlight=False)
    record = export_model(model, output_dir or "", quantize=quantize, data=data, check_examples=check_examples,
                          overwrite=overwrite_output_dir,
                          progress=lambda line: err.print(f"[dim]{escape(line)} ...[/dim]", soft_wrap=True))
    render(record, Console(highlight=False), output_dir or "")


def render(record: dict[str, Any], console, folder: str | None = None) -> None:
    """A few lines: what was written, its size, and the checks against PyTorch."""
    from rich.markup import escape

    where = f" to {escape(str(folder))}" if folder else ""
    size = f"{record['file_mb']:.1f} MB"
    if record["precision"] == "int8":
        size += f" (float32 {record['float32_file_mb']:.1f} MB)"
    console.print(f"Exported {escape(record['source'])}{where}: {record['precision']} model.onnx, {size}",
                  soft_wrap=True)
    checks = record["checks"]
    console.print(f"float32 check: largest logit difference {checks['float32']['max_abs_diff']:.2g} (tolerance "
                  f"{checks['float32']['tolerance']:g}) on {escape(record['checked_on'])}", soft_wrap=True)
    if "int8" in checks:
        q8 = checks["int8"]
        agreement = q8["argmax_agreement"]
        console.print(f"int8 check: largest logit difference {q8['max_abs_diff']:.3g}"
                      + (f", same class on {agreement:.1%} of {q8['examples']} examples" if agreement is not None
                         else ""), soft_wrap=True)
