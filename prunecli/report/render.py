"""Rendering reports for people: rich tables for the terminal and Markdown for model cards."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prunecli.report.stats import KIND_TITLES, PRUNED_MIN_SPARSITY

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _shape(shape: list[int] | None) -> str:
    return "-" if shape is None else "x".join(str(d) for d in shape)


def _by_kind(layers: list[dict]) -> list[tuple[str, list[dict]]]:
    return [(kind, [layer for layer in layers if layer["kind"] == kind]) for kind in KIND_TITLES
            if any(layer["kind"] == kind for layer in layers)]


def _model_rows(model: dict) -> list[tuple[str, str, str, str, str]]:
    """(figure, ratio, zeros, elements, tensors) rows of the model-level figures, for tables and Markdown."""
    rows = []
    for label, key in (("Element-wise over matmul/Gemm/conv weights", "matmul"),
                       ("Element-wise over all parameters", "all"), ("Element-wise over pruned layers", "pruned")):
        agg = model[key]
        rows.append((label, _ratio(agg["sparsity"]), f"{agg['zeros']:,}", f"{agg['numel']:,}", str(agg["tensors"])))
    if model.get("blockwise_matmul") is not None:
        rows.append(("Block-wise (recipe patterns) over matmul/Gemm/conv", _ratio(model["blockwise_matmul"]),
                     "", "", ""))
    return rows


def render_report(report: dict, console: Console, *, title: str | None = None, show_others: bool = True) -> None:
    """Print a report as rich tables: layers grouped by kind with a totals row over the shown layers, the other
    tensors summarised, the model-level ratios and the recipe groups' achieved vs target sparsity."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title or f"Sparsity of {report['source'] or 'the model'}"), title_justify="left",
                  show_footer=False, header_style="bold")
    table.add_column("Layer", overflow="fold")
    table.add_column("Shape", justify="right")
    table.add_column("Zeros", justify="right")
    table.add_column("Sparsity", justify="right")
    table.add_column("Structure")
    table.add_column("2:4 conf.", justify="right")
    table.add_column("Empty rows/cols", justify="right")
    shown = report["layers"]
    for kind, layers in _by_kind(shown):
        table.add_row(f"[bold cyan]{KIND_TITLES[kind]}[/bold cyan] ({len(layers)})")
        for layer in layers:
            mark = " [magenta]*[/magenta]" if layer["pruned"] else ""
            table.add_row(
                f"{escape(layer['name'])}{mark}", _shape(layer["shape"]), f"{layer['zeros']:,}",
                _pct(layer["sparsity"]), layer["structure"], _pct(layer["nm_conformance"]),
                f"{layer['empty_rows']}/{layer['empty_cols']}",
            )
        table.add_section()
    numel = sum(layer["numel"] for layer in shown)
    zeros = sum(layer["zeros"] for layer in shown)
    table.add_row(f"[bold]Total ({len(shown)} layers{', filtered' if report.get('filter') else ''})[/bold]",
                  f"{numel:,}", f"{zeros:,}", f"[bold]{_pct(zeros / numel if numel else 0.0)}[/bold]", "", "", "")
    console.print(table)
    if report["layers"] and any(layer["pruned"] for layer in shown):
        rule = "in the recipe" if report["pruned_rule"] == "recipe" else f"at least {PRUNED_MIN_SPARSITY:.0%} zeros"
        console.print(f"[magenta]*[/magenta] pruned layer ({rule})", highlight=False)
    if show_others and report["others"]:
        others = Table(title="Other tensors", title_justify="left", header_style="bold")
        for col in ("Kind", "Tensors", "Elements", "Zeros", "Sparsity"):
            others.add_column(col, justify="left" if col == "Kind" else "right")
        for row in report["others"]:
            others.add_row(row["kind"], str(row["tensors"]), f"{row['numel']:,}", f"{row['zeros']:,}",
                           _pct(row["sparsity"]))
        console.print(others)
    summary = Table(title="Model (whole checkpoint)", title_justify="left", header_style="bold")
    for col in ("Figure", "Sparsity", "Zeros", "Elements", "Tensors"):
        summary.add_column(col, justify="left" if col == "Figure" else "right")
    for row in _model_rows(report["model"]):
        summary.add_row(*row)
    console.print(summary)
    if report.get("recipe"):
        groups = Table(title="Recipe groups", title_justify="left", header_style="bold")
        for col in ("Group", "Pattern", "Layers", "Target", "Achieved", "Block-wise", "Missing"):
            groups.add_column(col, justify="left" if col in ("Group", "Pattern") else "right")
        for g in report["recipe"]["groups"]:
            groups.add_row(escape(g["name"] or str(g["index"])), escape(g["pattern"] or "-"), str(g["layers"]),
                           _ratio(g["target_sparsity"]), _ratio(g["sparsity"]), _ratio(g["blockwise_sparsity"]),
                           str(len(g["missing"])))
        console.print(groups)
    for warning in report.get("warnings", []):
        console.print(f"[yellow]Warning:[/yellow] {escape(warning)}", highlight=False)


def render_comparison(comparison: dict, console: Console) -> None:
    """Print a comparison: per layer, sparsity in A and B and the number of changed weights, plus totals."""
    from rich.markup import escape
    from rich.table import Table

    a, b = comparison["a"], comparison["b"]
    table = Table(title=escape(f"A: {a['source']}\nB: {b['source']}"), title_justify="left", header_style="bold")
    table.add_column("Layer", overflow="fold")
    table.add_column("Shape", justify="right")
    table.add_column("Sparsity A", justify="right")
    table.add_column("Sparsity B", justify="right")
    table.add_column("Structure A -> B")
    table.add_column("Changed", justify="right")
    for kind, layers in _by_kind(comparison["layers"]):
        table.add_row(f"[bold cyan]{KIND_TITLES[kind]}[/bold cyan] ({len(layers)})")
        for row in layers:
            shape = _shape(row["shape_a"]) if row["shape_a"] == row["shape_b"] else \
                f"{_shape(row['shape_a'])} / {_shape(row['shape_b'])}"
            changed = "-" if row["changed"] is None else f"{row['changed']:,}"
            table.add_row(escape(row["name"]), shape, _pct(row["sparsity_a"]), _pct(row["sparsity_b"]),
                          f"{row['structure_a'] or '-'} -> {row['structure_b'] or '-'}", changed)
        table.add_section()
    changed = sum(row["changed"] or 0 for row in comparison["layers"])
    table.add_row(f"[bold]Total ({len(comparison['layers'])} layers)[/bold]", "",
                  _ratio(a["model"]["matmul"]["sparsity"]), _ratio(b["model"]["matmul"]["sparsity"]),
                  "matmul element-wise", f"[bold]{changed:,}[/bold]")
    console.print(table)
    for warning in comparison.get("warnings", []):
        console.print(f"[yellow]Warning:[/yellow] {escape(warning)}", highlight=False)


def markdown_table(report: dict) -> str:
    """The report as Markdown for a model card: model-level ratios, recipe groups, then one row per layer."""
    lines = ["| Figure | Sparsity | Zeros | Elements |", "|---|---:|---:|---:|"]
    for label, ratio, zeros, numel, _ in _model_rows(report["model"]):
        lines.append(f"| {label} | {ratio} | {zeros} | {numel} |")
    if report.get("recipe"):
        lines += ["", "| Group | Pattern | Layers | Target | Achieved | Block-wise |", "|---|---|---:|---:|---:|---:|"]
        for g in report["recipe"]["groups"]:
            lines.append(f"| {g['name'] or g['index']} | {g['pattern'] or '-'} | {g['layers']} | "
                         f"{_ratio(g['target_sparsity'])} | {_ratio(g['sparsity'])} | "
                         f"{_ratio(g['blockwise_sparsity'])} |")
    lines += ["", "| Layer | Kind | Shape | Sparsity | Structure | Pruned |", "|---|---|---:|---:|---|:---:|"]
    for layer in report["layers"]:
        lines.append(f"| `{layer['name']}` | {KIND_TITLES[layer['kind']]} | {_shape(layer['shape'])} | "
                     f"{_pct(layer['sparsity'])} | {layer['structure']} | {'yes' if layer['pruned'] else ''} |")
    return "\n".join(lines) + "\n"
