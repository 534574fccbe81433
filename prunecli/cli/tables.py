"""Rich tables of the training summary and of evaluation metrics (what finetune, prune and evaluate print)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if value != value else f"{value:.4f}"
    return str(value)


def render_summary(results: dict[str, Any], title: str = "Training summary", console: Console | None = None,
                   extra: dict[str, Any] | None = None) -> None:
    """A rich table of per-epoch metrics, then throughput, time and `extra` rows (e.g. sparsity, output folder)."""
    from rich.table import Table

    console = console or _console()
    epochs = results.get("epochs", [])
    names = list(results.get("final_metrics", {}))
    table = Table(title=title, title_justify="left")
    table.add_column("epoch", justify="right")
    table.add_column("step", justify="right")
    for name in names:
        table.add_column(name, justify="right")
    for entry in epochs:
        table.add_row(str(entry["epoch"]), str(entry["step"]), *(_fmt(entry["metrics"].get(n, "")) for n in names))
    table.add_row("final", str(results.get("completed_steps", "")),
                  *(f"[bold]{_fmt(results['final_metrics'][n])}[/bold]" for n in names), end_section=True)
    console.print(table)
    facts = Table(show_header=False, box=None, pad_edge=False)
    facts.add_column(style="dim")
    facts.add_column()
    facts.add_row("train throughput", f"{results.get('train_examples_per_second', 0.0):.1f} examples/s")
    train_s, wall_s = results.get("train_seconds", 0.0), results.get("wall_seconds", 0.0)
    facts.add_row("train time", f"{train_s:.1f} s (wall {wall_s:.1f} s)")
    facts.add_row("processes", str(results.get("num_processes", 1)))
    for key, value in (extra or {}).items():
        facts.add_row(key, _fmt(value))
    console.print(facts)


def render_metrics(result: dict[str, Any], console: Console | None = None) -> None:
    """The `evaluate` table: one row per metric."""
    from rich.table import Table

    console = console or _console()
    table = Table(title=f"{result.get('task_name') or 'evaluation'}: {result['checkpoint']}", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in result["metrics"].items():
        table.add_row(name, _fmt(value))
    console.print(table)
    sizes = ", ".join(f"{k} {v}" for k, v in result.get("num_examples", {}).items())
    console.print(f"[dim]{result.get('data', '')}; examples: {sizes}[/dim]", highlight=False)


def plan_table(plan: list[dict[str, Any]], excluded_heads: list[str]):
    """The pruning plan `prune` prints before training: per group, its layers, pattern, type, scope, target, steps."""
    from rich.table import Table

    table = Table(title="Pruning plan", title_justify="left")
    for col in ("group", "layers", "pattern", "type", "scope", "target", "steps (start-end/every)"):
        table.add_column(col)
    for group in plan:
        layers = group["layers"]
        shown = "\n".join(layers) if len(layers) <= 8 else "\n".join(layers[:6] + [f"... {len(layers) - 6} more"])
        table.add_row(
            str(group["index"]),
            shown,
            str(group["pattern"]),
            str(group["pruning_type"]),
            str(group["pruning_scope"]),
            f"{group['target_sparsity']:.2f}",
            f"{group['start_step']}-{group['end_step']}/{group['pruning_frequency']}",
        )
    if excluded_heads:
        table.caption = f"Not pruned (classification head): {', '.join(excluded_heads)}"
    return table
