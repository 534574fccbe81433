"""Rendering reports for people: rich tables for the terminal and Markdown for model cards."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prunecli.report.names import common_prefix, group_names, wrap_dotted
from prunecli.report.stats import KIND_TITLES, PRUNED_MIN_SPARSITY

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console
    from rich.table import Table


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


# ---- terminal tables that read at any width ---------------------------------------------------------------
#
# Layer names are the widest cells, and rich folds a cell that does not fit into fragments of a few
# characters ("classifi / er.weigh / t"). So the tables below are laid out for the console's width:
# the common prefix of the names is left out and layers with identical statistics share a row
# (`encoder.layer.{0-5}.attention.self.{query,key,value}`, see `prunecli.report.names`); if the names
# do not fit beside every column, a compact style and then fewer columns are tried (a group may split
# along its last component to fit, never into a row per layer), and only a name that still does not
# fit is broken, after a dot. `--json` keeps the full per-layer list.

def fit_columns(widths: list[int | None], drops: list[int], fits: Callable[[int], bool], width: int
                ) -> tuple[bool, list[int], int]:
    """Lay out a table with one column of names: (compact, shown columns, width left for the names).

    `widths[i]`: the widest cell of column i, None for the names column; `drops[i]` > 0 marks an optional
    column, the highest rank dropped first (equal ranks together); `fits(avail)` says whether the names
    can be shown in `avail` characters without breaking any. Layouts are tried from the fullest: the
    usual heavy box with every column, then the compact style (no vertical rules, two spaces between
    columns) dropping optional columns; the first whose names fit wins, else the one with most room.
    """
    def left(shown: list[int], compact: bool) -> int:
        chrome = 2 * len(shown) if compact else 3 * len(shown) + 1
        return width - chrome - sum(widths[i] or 0 for i in shown)

    shown = list(range(len(widths)))
    candidates = [(False, shown), (True, shown)]
    for rank in sorted({d for d in drops if d}, reverse=True):
        shown = [i for i in shown if drops[i] != rank]
        candidates.append((True, shown))
    for compact, columns in candidates:
        if fits(left(columns, compact)):
            return compact, columns, left(columns, compact)
    return True, shown, left(shown, True)


def new_table(compact: bool, title: str | None = None) -> Table:
    """A table in the style `fit_columns` chose: the heavy-head box, or compact (a header rule only)."""
    from rich import box
    from rich.table import Table

    if not compact:
        return Table(title=title, title_justify="left", header_style="bold")
    return Table(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD, show_edge=False,
                 pad_edge=False, collapse_padding=True)


class FitToWidth:
    """A renderable built for the width it is printed at: rich passes that width at render time, so a table
    made before the console is known (`plan_table`) still fits a narrow terminal or a log file."""

    def __init__(self, build: Callable[[int], Any]):
        self.build = build

    def __rich_console__(self, console: Console, options: Any):
        yield self.build(options.max_width)


@dataclass
class _Column:
    """A column of a layer table; `drop` > 0 marks it optional, the highest dropped first when too narrow."""

    header: str
    justify: str = "right"
    drop: int = 0


@dataclass
class _Entry:
    """One layer: its displayed name, the cells of the other columns, and the key rows may merge on."""

    name: str
    cells: list[str]
    key: str
    mark: str = ""  # markup after the name (the pruned star)


@dataclass
class _Row:
    """A table row: the displayed name (a single name or a group's text), cells and mark of its layers."""

    names: tuple[str, ...]
    text: str
    cells: list[str]
    mark: str


@dataclass
class _Layout:
    """A fitted table and the notes to print under it."""

    table: Table
    notes: list[str] = field(default_factory=list)


def _cell_width(cell: str) -> int:
    from rich.text import Text

    return max((Text.from_markup(line).cell_len for line in cell.split("\n")), default=0)


def display_prefix(names: list[str], kinds: list[str]) -> str:
    """The prefix a table leaves out: common to every name outside the task head (the base model's prefix,
    e.g. `bert.`), as `prunecli.report.names.common_prefix` allows; names without it are shown in full.
    Empty when leaving it out would make two names look the same (`bert.classifier` and `classifier`)."""
    body = [name for name, kind in zip(names, kinds, strict=True) if kind != "head"]
    prefix = common_prefix(body or names)
    distinct = set(names)
    return prefix if len({name.removeprefix(prefix) for name in distinct}) == len(distinct) else ""


def _layer_table(title: str, columns: list[_Column], sections: list[tuple[str, list[_Entry]]],
                 total: list[str], width: int) -> _Layout:
    """A rich table of layer rows grouped in titled sections, fitted to `width` (see the comment above).

    `total` is the last row, one cell per column (its first the label); `notes` say what the reader needs to
    know about the layout (merged rows, dropped columns)."""
    from rich.markup import escape
    from rich.text import Text

    entries = [e for _, group in sections for e in group]
    mark_width = max((Text.from_markup(e.mark).cell_len for e in entries), default=0)

    def fits(avail: int) -> bool:
        rows = [row for _, group in sections for row in _merge_rows(group, avail - mark_width)]
        return avail >= len(columns[0].header) and all(len(row.text) + mark_width <= avail for row in rows)

    widths: list[int | None] = [None] + [
        max([len(c.header)] + [_cell_width(e.cells[i - 1]) for e in entries] + [_cell_width(total[i])])
        for i, c in enumerate(columns) if i]
    compact, shown, avail = fit_columns(widths, [c.drop for c in columns], fits, width)
    avail = max(avail, len(columns[0].header))

    table = new_table(compact, escape(title))
    table.add_column(columns[0].header, overflow="ellipsis")
    for i in shown[1:]:
        table.add_column(columns[i].header, justify=columns[i].justify, no_wrap=True)
    merged = False
    for section, group in sections:
        table.add_row(section)
        for row in _merge_rows(group, avail - mark_width):
            merged = merged or len(row.names) > 1
            lines = [escape(line) for line in wrap_dotted(row.text, avail - mark_width)]
            lines[-1] += row.mark
            table.add_row("\n".join(lines), *(row.cells[i - 1] for i in shown[1:]))
        table.add_section()
    table.add_row(*(total[i] for i in shown))
    notes = []
    if merged:
        notes.append("{…} in a name: one row stands for several layers, each with the figures shown.")
    dropped = [columns[i].header for i in range(len(columns)) if i not in shown]
    if dropped:
        notes.append(f"Not shown at this width: {', '.join(dropped)} (widen the terminal or use --json).")
    return _Layout(table, notes)


def _merge_rows(entries: list[_Entry], max_len: int) -> list[_Row]:
    """The rows of a section: entries with equal keys grouped by name (`names.group_names`, texts of at
    most `max_len` where possible), ordered by their first entry."""
    by_key: dict[str, list[_Entry]] = {}
    for entry in entries:
        by_key.setdefault(entry.key, []).append(entry)
    position = {entry.name: i for i, entry in enumerate(entries)}
    rows = [_Row(group.names, group.text, same[0].cells, same[0].mark)
            for same in by_key.values() for group in group_names([e.name for e in same], max_len=max_len)]
    return sorted(rows, key=lambda row: position[row.names[0]])


def render_report(report: dict, console: Console, *, title: str | None = None, show_others: bool = True) -> None:
    """Print a report as rich tables, fitted to the console's width: layers grouped by kind with a totals row
    over the shown layers, the other tensors summarised, the model-level ratios and the recipe groups'
    achieved vs target sparsity. Layers with identical statistics share a row at any width."""
    from rich.markup import escape
    from rich.table import Table

    shown = report["layers"]
    modules = [layer["module"] for layer in shown]
    prefix = display_prefix(modules, [layer["kind"] for layer in shown])
    columns = [_Column("Layer", "left"), _Column("Shape"), _Column("Zeros", drop=1), _Column("Sparsity"),
               _Column("Structure", "left"), _Column("2:4 conf.", drop=2), _Column("Empty rows/cols", drop=3)]
    sections = []
    for kind, layers in _by_kind(shown):
        entries = []
        for layer in layers:
            cells = [_shape(layer["shape"]), f"{layer['zeros']:,}", _pct(layer["sparsity"]), layer["structure"],
                     _pct(layer["nm_conformance"]), f"{layer['empty_rows']}/{layer['empty_cols']}"]
            key = repr([layer[k] for k in ("shape", "zeros", "structure", "block", "nm_conformance", "empty_rows",
                                           "empty_cols", "pruned")])  # exact figures, not their rounded text
            entries.append(_Entry(layer["module"].removeprefix(prefix), cells, key,
                                  " [magenta]*[/magenta]" if layer["pruned"] else ""))
        sections.append((f"[bold cyan]{KIND_TITLES[kind]}[/bold cyan] ({len(layers)})", entries))
    numel = sum(layer["numel"] for layer in shown)
    zeros = sum(layer["zeros"] for layer in shown)
    total = [f"[bold]Total ({len(shown)} layers{', filtered' if report.get('filter') else ''})[/bold]",
             f"{numel:,}", f"{zeros:,}", f"[bold]{_pct(zeros / numel if numel else 0.0)}[/bold]", "", "", ""]
    layout = _layer_table(title or f"Sparsity of {report['source'] or 'the model'}", columns, sections, total,
                          console.width)
    console.print(layout.table)
    notes = []
    if report["layers"] and any(layer["pruned"] for layer in shown):
        rule = "in the recipe" if report["pruned_rule"] == "recipe" else f"at least {PRUNED_MIN_SPARSITY:.0%} zeros"
        notes.append(f"[magenta]*[/magenta] pruned layer ({rule})")
    if prefix:
        notes.append(f"Layers named by module (MODULE.weight), without the prefix {escape(prefix)}")
    for note in notes + [escape(n) for n in layout.notes]:
        console.print(note, highlight=False)
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
        summary.add_column(col, justify="left" if col == "Figure" else "right", no_wrap=col != "Figure")
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
    units = unit_rows(report)
    if units:
        table = Table(title="Heads and neurons", title_justify="left", header_style="bold")
        for col in ("Blocks", "Unit", "Kept"):
            table.add_column(col, justify="right" if col == "Kept" else "left")
        for blocks, unit, kept in units:
            table.add_row(escape(blocks), unit, kept)
        console.print(table)
    for warning in report.get("warnings", []):
        console.print(f"[yellow]Warning:[/yellow] {escape(warning)}", highlight=False)


def unit_rows(report: dict) -> list[tuple[str, str, str]]:
    """(blocks, unit, kept) rows of the heads and neurons per layer, blocks with equal counts grouped; empty when
    none was removed (a dense or element-pruned model)."""
    from prunecli.report.names import common_prefix, group_names

    units = report.get("units")
    if not units or not (units["heads_removed"] or units["neurons_removed"]):
        return []
    prefix = common_prefix([u["block"] for u in units["layers"]])
    by_count: dict[tuple[str, str], list[str]] = {}
    for u in units["layers"]:
        by_count.setdefault((u["unit"], f"{u['kept']} of {u['of']}"), []).append(u["block"][len(prefix):])
    return [(", ".join(g.text for g in group_names(blocks)), f"{unit}s", kept)
            for (unit, kept), blocks in by_count.items()]


def render_comparison(comparison: dict, console: Console) -> None:
    """Print a comparison fitted to the console's width: per layer, sparsity in A and B and the number of
    changed weights, plus totals; layers whose figures are all identical share a row."""
    from rich.markup import escape

    a, b = comparison["a"], comparison["b"]
    rows = comparison["layers"]
    prefix = display_prefix([r["name"].removesuffix(".weight") for r in rows], [r["kind"] for r in rows])
    columns = [_Column("Layer", "left"), _Column("Shape", drop=2), _Column("Sparsity A"), _Column("Sparsity B"),
               _Column("Structure A -> B", "left", drop=1), _Column("Changed")]
    sections = []
    for kind, layers in _by_kind(rows):
        entries = []
        for row in layers:
            shape = _shape(row["shape_a"]) if row["shape_a"] == row["shape_b"] else \
                f"{_shape(row['shape_a'])} / {_shape(row['shape_b'])}"
            changed = "-" if row["changed"] is None else f"{row['changed']:,}"
            cells = [shape, _pct(row["sparsity_a"]), _pct(row["sparsity_b"]),
                     f"{row['structure_a'] or '-'} -> {row['structure_b'] or '-'}", changed]
            key = repr([row[k] for k in ("shape_a", "shape_b", "sparsity_a", "sparsity_b", "structure_a",
                                         "structure_b", "changed")])
            entries.append(_Entry(row["name"].removesuffix(".weight").removeprefix(prefix), cells, key))
        sections.append((f"[bold cyan]{KIND_TITLES[kind]}[/bold cyan] ({len(layers)})", entries))
    changed = sum(row["changed"] or 0 for row in rows)
    total = [f"[bold]Total ({len(rows)} layers)[/bold]", "", _ratio(a["model"]["matmul"]["sparsity"]),
             _ratio(b["model"]["matmul"]["sparsity"]), "matmul element-wise", f"[bold]{changed:,}[/bold]"]
    layout = _layer_table(f"A: {a['source']}\nB: {b['source']}", columns, sections, total, console.width)
    console.print(layout.table)
    notes = [f"Layers named by module (MODULE.weight), without the prefix {prefix}"] if prefix else []
    for note in notes + layout.notes:
        console.print(escape(note), highlight=False)
    for warning in comparison.get("warnings", []):
        console.print(f"[yellow]Warning:[/yellow] {escape(warning)}", highlight=False)


def markdown_table(report: dict) -> str:
    """The report as Markdown for a model card: model-level ratios, recipe groups, then one row per layer (named
    as recipes name it, without `.weight`: a BERT-base card stays under 10 KB)."""
    lines = ["| Figure | Sparsity | Zeros | Elements |", "|---|---:|---:|---:|"]
    for label, ratio, zeros, numel, _ in _model_rows(report["model"]):
        lines.append(f"| {label} | {ratio} | {zeros} | {numel} |")
    if report.get("recipe"):
        lines += ["", "| Group | Pattern | Layers | Target | Achieved | Block-wise |", "|---|---|---:|---:|---:|---:|"]
        for g in report["recipe"]["groups"]:
            lines.append(f"| {g['name'] or g['index']} | {g['pattern'] or '-'} | {g['layers']} | "
                         f"{_ratio(g['target_sparsity'])} | {_ratio(g['sparsity'])} | "
                         f"{_ratio(g['blockwise_sparsity'])} |")
    units = unit_rows(report)
    if units:
        lines += ["", "| Blocks | Unit | Kept |", "|---|---|---:|"]
        lines += [f"| `{blocks}` | {unit} | {kept} |" for blocks, unit, kept in units]
    lines += ["", "| Layer | Kind | Shape | Sparsity | Structure | Pruned |", "|---|---|---:|---:|---|:---:|"]
    for layer in report["layers"]:
        lines.append(f"| `{layer['module']}` | {KIND_TITLES[layer['kind']]} | {_shape(layer['shape'])} | "
                     f"{_pct(layer['sparsity'])} | {layer['structure']} | {'yes' if layer['pruned'] else ''} |")
    return "\n".join(lines) + "\n"
