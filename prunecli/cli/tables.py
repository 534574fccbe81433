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
    from prunecli.tasks.ner import is_per_type_metric

    names = [n for n in results.get("final_metrics", {}) if not is_per_type_metric(n)]  # per type: --json, files
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


def fit_path(path: str, width: int) -> str:
    """`path` whole if it fits in `width` columns, else its tail from a `/` on, after `…/` (never cut mid-name
    unless its last part alone is too long)."""
    if len(path) <= width:
        return path
    parts = path.split("/")
    for start in range(1, len(parts)):
        tail = "…/" + "/".join(parts[start:])
        if len(tail) <= width:
            return tail
    return "…" + path[-max(width - 1, 1):]


def render_metrics(result: dict[str, Any], console: Console | None = None) -> None:
    """The `evaluate` table: one row per metric."""
    from rich.markup import escape
    from rich.table import Table

    console = console or _console()
    # The path is a line of its own, not the title: rich wraps a title to the table's width (a metric and a
    # value, about 30 columns), which broke paths mid-name at any terminal width.
    label = f"{result.get('task_name') or 'evaluation'}: "
    path = fit_path(str(result["checkpoint"]), console.width - len(label))
    console.print(f"[bold]{escape(label)}[/bold]{escape(path)}", highlight=False, soft_wrap=True)
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in result["metrics"].items():
        table.add_row(name, _fmt(value))
    console.print(table)
    sizes = ", ".join(f"{k} {v}" for k, v in result.get("num_examples", {}).items())
    runtime = f"; {result['runtime']}, {result['precision']} ONNX file" if result.get("runtime") else ""
    console.print(f"[dim]{result.get('data', '')}; examples: {sizes}{runtime}[/dim]", highlight=False)


def plan_table(plan: list[dict[str, Any]], excluded_heads: list[str]):
    """The pruning plan `prune` prints before training: per group, its layers, pattern, type, scope, target, steps.

    Returns a renderable laid out for the width it is printed at (`render.FitToWidth`). Short lists of
    layers (at most 8 per group, each fitting on a line) are shown in full; longer ones as groups without
    the common prefix (`encoder.layer.{0-5}.attention.self.{query,key,value}`, `prunecli.report.names`),
    so every layer is accounted for. When the table would not fit, the schedule columns (type, scope,
    steps) move to a second table beside the group number, keeping the layer names on one line.
    """
    from rich.console import Group
    from rich.markup import escape

    from prunecli.report.names import common_prefix, group_names, wrap_dotted
    from prunecli.report.render import FitToWidth, fit_columns, new_table

    headers = ["group", "layers", "pattern", "type", "scope", "target", "steps (start-end/every)"]
    rows = [[str(g["index"]), "", str(g["pattern"]), str(g["pruning_type"]), str(g["pruning_scope"]),
             f"{g['target_sparsity']:.2f}", f"{g['start_step']}-{g['end_step']}/{g['pruning_frequency']}"]
            for g in plan]
    all_layers = [name for g in plan for name in g["layers"]]
    prefix = common_prefix(all_layers)

    def layer_texts(width: int) -> tuple[list[list[str]], bool]:
        """Per plan group, the names to show in `width` columns, and whether they are grouped."""
        if all(len(g["layers"]) <= 8 for g in plan) and all(len(n) <= width for n in all_layers):
            return [list(g["layers"]) for g in plan], False
        return [[grp.text for grp in group_names([n.removeprefix(prefix) for n in g["layers"]], max_len=width)]
                for g in plan], True

    def build(width: int):
        widths: list[int | None] = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
        widths[1] = None  # the layer names

        def fits(avail: int) -> bool:
            return avail >= len("layers") and all(len(t) <= avail for ts in layer_texts(avail)[0] for t in ts)

        compact, shown, avail = fit_columns(widths, [0, 0, 0, 1, 1, 0, 1], fits, width)
        texts, grouped = layer_texts(max(avail, 12))
        lines = [[line for text in ts for line in wrap_dotted(text, max(avail, 12))] for ts in texts]
        table = new_table(compact, "Pruning plan")
        for i in shown:
            table.add_column(headers[i], overflow="ellipsis")
        for row, cell in zip(rows, lines, strict=True):
            row = [escape(c) for c in row]
            row[1] = "\n".join(escape(line) for line in cell)
            table.add_row(*(row[i] for i in shown), end_section=compact)
        notes = []
        if grouped and prefix:
            notes.append(f"Layer names without the prefix {prefix}; {{…}} stands for several layers.")
        elif grouped:
            notes.append("{…} in a layer name stands for several layers.")
        if excluded_heads:
            notes.append(f"Not pruned (task head): {', '.join(excluded_heads)}")
        moved = [i for i in (3, 4, 6) if i not in shown]
        if not moved:
            table.caption, table.caption_justify = escape("\n".join(notes)) or None, "left"
            return table
        schedule = new_table(True, None)
        for i in [0, *moved]:
            schedule.add_column(headers[i])
        for row in rows:
            schedule.add_row(*(escape(row[i]) for i in [0, *moved]))
        return Group(table, *(escape(n) for n in notes), "", schedule)

    return FitToWidth(build)
