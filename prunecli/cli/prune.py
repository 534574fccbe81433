"""`prunecli prune`: parse the options, run the prune pipeline (`prunecli.pipelines.prune`), render its events."""

from __future__ import annotations

from typing import Any

import typer

from prunecli.cli.options import (
    DATA_OPTIONS,
    DISTILL_OPTIONS,
    OUTPUT_OPTIONS,
    PRUNING_OPTIONS,
    TRAINING_OPTIONS,
    DoPrune,
    ModelPath,
    WithTracking,
    with_options,
)

NAME = "prune"


@with_options(PRUNING_OPTIONS, DISTILL_OPTIONS, DATA_OPTIONS, TRAINING_OPTIONS, OUTPUT_OPTIONS,
              {"do_prune": DoPrune, "with_tracking": WithTracking})
def command(ctx: typer.Context, model_name_or_path: ModelPath, **options: Any) -> None:
    """Train a sparse model from a dense fine-tuned one (snip-momentum, NxM / N:M / channel, distillation)."""
    from prunecli.cli.app import explicit_options, run_config
    from prunecli.pipelines.prune import prune

    cfg = run_config({"model_name_or_path": model_name_or_path, **options})
    prune(cfg, explicit=explicit_options(ctx, options), on_event=Renderer())


class Renderer:
    """Shows the prune pipeline's events on the console: the plan, notes, the sparsity and compaction reports."""

    def __init__(self, console=None):
        from rich.console import Console

        self.console = console or Console()

    def __call__(self, kind: str, payload: Any) -> None:
        console = self.console
        if kind == "plan":
            from prunecli.cli.tables import plan_table

            console.print(plan_table(payload["plan"], payload["excluded_heads"]))
        elif kind == "note":
            console.print(payload, highlight=False, soft_wrap=True)
        elif kind == "report":
            from prunecli.report.render import render_report

            render_report(payload, console)
        elif kind == "compact":
            from prunecli.cli import compact

            compact.render(payload, console)
        elif kind == "export":
            from prunecli.cli import export

            export.render(payload, console)
        elif kind == "compact_skipped":
            from rich.markup import escape

            console.print(f"[yellow]--compact:[/yellow] {escape(payload)}", highlight=False)
