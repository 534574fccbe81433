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
    path: Annotated[str, typer.Argument(help="Checkpoint folder, .safetensors file, sharded folder or .bin file.")],
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
