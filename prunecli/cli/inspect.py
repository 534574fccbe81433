"""`prunecli inspect PATH`: per-layer sparsity and structure of saved checkpoints, as tables, JSON or a chart.

All statistics come from `prunecli.report` (the same report `prune` writes as `sparsity_report.json`);
this module only chooses what to show and how. Every problem a user can cause (bad path, bad option,
missing matplotlib) is raised as a `UserError`, which the CLI turns into one message and exit code 2.

A safetensors checkpoint is inspected with numpy alone (no torch, transformers or safetensors import),
so the whole command takes a fraction of a second; tables are fitted to the terminal's width (80
columns when stdout is a pipe), while `--json` always lists every layer.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from prunecli.errors import UserError

NAME = "inspect"


def command(
    path: Annotated[str, typer.Argument(help="Checkpoint folder, .safetensors file, sharded folder, .bin file or "
                                        "exported ONNX folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON (stable schema).")] = False,
    filter: Annotated[str | None, typer.Option("--filter", help="Only layers whose name matches this regex.")] = None,
    sort: Annotated[str, typer.Option("--sort", help="Order layers by `name` or `sparsity`.")] = "name",
    plot: Annotated[str | None, typer.Option("--plot", help="Draw per-layer sparsity to this PNG file.")] = None,
    compare: Annotated[
        str | None, typer.Option("--compare", help="Another checkpoint to show side by side, per layer.")
    ] = None,
) -> None:
    """Report per-layer sparsity and structure of a saved checkpoint (reads tensors, builds no model)."""
    run(path, as_json=as_json, filter=filter, sort=sort, plot=plot, compare=compare)


def run(
    path: str,
    as_json: bool = False,
    filter: str | None = None,
    sort: str = "name",
    plot: str | None = None,
    compare: str | None = None,
) -> dict:
    """Inspect `path` (or compare it with `compare`), print the result, optionally plot it; returns what was shown.

    Options are checked before any checkpoint is read, so a typo fails fast. `--filter` and `--sort` act on
    the listed layers; model-level figures always describe the whole checkpoint.
    """
    from prunecli import report as rep
    from prunecli.report.plot import check_plot_target, plot_sparsity

    if sort not in ("name", "sparsity"):
        raise UserError(f"unknown --sort {sort!r}", "Use --sort name or --sort sparsity.")
    from prunecli.inference.runtime import is_exported

    exported = [p for p in (path, compare) if p and is_exported(p)]
    if exported and (compare or plot):
        raise UserError(f"{exported[0]} is an exported ONNX folder: --compare and --plot read checkpoints.",
                        hint="inspect the checkpoint it was exported from (its export.json names it).")
    if exported:
        return _inspect_export(path, as_json)
    if plot:
        check_plot_target(plot)
    # numpy's element-wise and reduction kernels are single-threaded, so no thread setting is needed (the
    # report uses no BLAS); torch is imported only if a checkpoint is a torch file.
    result = rep.compare_reports(path, compare) if compare else rep.sparsity_report(path)
    result = rep.select_layers(result, filter, sort)
    if plot:
        plot_sparsity(result, plot)
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        sys.stdout.flush()
        return result
    from rich.console import Console

    from prunecli.report import render

    console = Console(highlight=False)
    if compare:
        render.render_comparison(result, console)
    else:
        render.render_report(result, console)
    if plot:
        console.print(f"Plot written to {plot}", markup=False)
    return result


def _inspect_export(path: str, as_json: bool) -> dict:
    """An exported folder: what it is (ONNX, fp32 or int8), its checks, and the source's recorded sparsity."""
    from prunecli.inference.runtime import describe_export

    described = describe_export(path)
    if as_json:
        sys.stdout.write(json.dumps(described, indent=2) + "\n")
        sys.stdout.flush()
        return described
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False)
    what = {"int8": "INT8 (dynamic quantization)", "fp32": "float32"}.get(described["precision"] or "", "unknown")
    console.print(f"[bold]{escape(path)}[/bold]: exported ONNX model, {what}, model.onnx "
                  f"{described['file_mb']:.3g} MB", soft_wrap=True)
    if described["problem"]:
        console.print(f"[yellow]{escape(described['problem'])}[/yellow]", soft_wrap=True)
        return described
    console.print(f"from {escape(str(described['source']))} ({described['exporter']} exporter, opset "
                  f"{described['opset']})", soft_wrap=True)
    checks = described["checks"]
    if "float32" in checks:
        console.print(f"float32 check: largest logit difference {checks['float32']['max_abs_diff']:.2g} on "
                      f"{escape(str(described['checked_on']))}", soft_wrap=True)
    if "int8" in checks and checks["int8"].get("argmax_agreement") is not None:
        console.print(f"int8 check: largest logit difference {checks['int8']['max_abs_diff']:.3g}, same class on "
                      f"{checks['int8']['argmax_agreement']:.1%} of {checks['int8']['examples']} examples",
                      soft_wrap=True)
    if described["compact"]:
        c = described["compact"]
        console.print(f"compacted source: {c['heads_removed']} heads and {c['neurons_removed']} neurons removed, "
                      f"{c['params_before']:,} -> {c['params_after']:,} parameters", soft_wrap=True)
    sparsity = described["source_sparsity"]
    if isinstance(sparsity, dict):
        parts = [f"{key} {value['sparsity']:.3f}" for key, value in sparsity.items()
                 if isinstance(value, dict) and isinstance(value.get("sparsity"), int | float)]
        if parts:
            console.print("source sparsity (recorded): " + ", ".join(parts), soft_wrap=True)
    else:
        console.print("[dim]no sparsity report recorded for the source; inspect the source checkpoint for "
                      "layers.[/dim]", soft_wrap=True)
    return described
