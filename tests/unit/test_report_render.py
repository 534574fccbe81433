"""Terminal tables at any width: the inspect table, the comparison and the pruning plan at 80 columns and less.

Rendered as rich renders to a pipe or a log file (`force_terminal=False`), where the width is 80 unless
told otherwise: names must stay whole (grouped, or broken after a dot), never folded into fragments.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from rich.console import Console

from prunecli.cli.tables import plan_table
from prunecli.report.compare import compare_reports
from prunecli.report.render import render_comparison, render_report
from prunecli.report.stats import sparsity_report
from tests.helpers import expand_text
from tests.unit.test_report import block_pruned, dense, f32_ones, f32_zeros

LINEAR = {"attention.self.query": (32, 32), "attention.self.key": (32, 32), "attention.self.value": (32, 32),
          "attention.output.dense": (32, 32), "intermediate.dense": (64, 32), "output.dense": (32, 64)}


def tiny_bert(layers: int = 6, pruned: bool = False) -> dict[str, np.ndarray]:
    """A BertForSequenceClassification-shaped state dict; `pruned`: every encoder Linear a different 4x1 mask."""
    state = {"bert.embeddings.word_embeddings.weight": dense(100, 32),
             "bert.embeddings.position_embeddings.weight": dense(64, 32),
             "bert.embeddings.token_type_embeddings.weight": dense(2, 32),
             "bert.embeddings.LayerNorm.weight": f32_ones(32)}
    for i in range(layers):
        for j, (module, (out, inp)) in enumerate(LINEAR.items()):
            name = f"bert.encoder.layer.{i}.{module}"
            state[f"{name}.weight"] = (block_pruned(out, inp, 4, 1, zero_blocks=i + j + 1, seed=i * 10 + j)
                                       if pruned else dense(out, inp, seed=i * 10 + j))
            state[f"{name}.bias"] = f32_zeros(out)
    state["bert.pooler.dense.weight"] = dense(32, 32)
    state["classifier.weight"] = dense(2, 32)
    state["classifier.bias"] = f32_zeros(2)
    return state


def render(fn, *args, width: int = 80) -> str:
    out = io.StringIO()
    fn(*args, Console(width=width, file=out, force_terminal=False))
    return out.getvalue()


def assert_readable(text: str, width: int) -> None:
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    # rich's folding left pieces like "classifi", "er.weigh", "t" alone on a line: no such fragment
    for line in lines:
        words = line.split()
        for fragment in ("classifi", "er.weigh", "encod", "ayer.", "ttention"):
            assert fragment not in words, line


def first_cells(text: str) -> list[str]:
    """The first cell of every line of the first table (heavy box or compact), a name broken after a dot
    rejoined, without the pruned mark."""
    cells: list[str] = []
    for line in text.splitlines():
        cell = line.split("│")[1] if "│" in line else line.strip().split("  ")[0]
        cell = cell.strip().removesuffix(" *")
        if cells and cells[-1].endswith("."):
            cells[-1] += cell
        elif cell:
            cells.append(cell)
        if cell.startswith("Total"):
            break
    return cells


def layer_names_shown(text: str) -> list[str]:
    """The (possibly grouped) names in the first column of the first table."""
    return [cell for cell in first_cells(text) if "." in cell or cell == "classifier"]


@pytest.mark.parametrize("width", [80, 60])
def test_dense_tiny_bert_at_80_columns_groups_names_on_one_line(width):
    report = sparsity_report(tiny_bert())
    text = render(render_report, report, width=width)
    assert_readable(text, width)
    if width == 80:
        for group in ("encoder.layer.{0-5}.attention.output.dense", "encoder.layer.{0-5}.intermediate.dense",
                      "encoder.layer.{0-5}.output.dense", "encoder.layer.{0-5}.attention.self.query"):
            assert any(line.split()[:1] == [group] for line in text.splitlines()), group
    assert "without the prefix bert." in " ".join(text.split())
    # Every layer is on the table exactly once: expanding the shown names gives back all 41 modules.
    shown = [n for cell in layer_names_shown(text) for n in expand_text(cell)]
    modules = [layer["module"] for layer in report["layers"]]
    assert sorted(n if n == "classifier" else "bert." + n for n in shown) == sorted(modules)
    assert "Total (41 layers)" in text


def test_pruned_tiny_bert_keeps_one_row_per_layer_with_whole_names():
    report = sparsity_report(tiny_bert(pruned=True))
    text = render(render_report, report)
    assert_readable(text, 80)
    for i in range(6):  # figures differ per layer: no merging, but every name whole on its line
        for module in LINEAR:
            line = next(line for line in text.splitlines() if line.split()[:1] == [f"encoder.layer.{i}.{module}"])
            assert "4x1" in line
    assert "{" not in "".join(layer_names_shown(text)).replace("{…}", "")


@pytest.mark.parametrize(("width", "dropped"), [(200, []), (80, ["2:4 conf.", "Empty rows/cols"]),
                                               (70, ["Zeros", "2:4 conf.", "Empty rows/cols"])])
def test_narrow_table_drops_optional_columns_and_says_so(width, dropped):
    text = render(render_report, sparsity_report(tiny_bert(pruned=True)), width=width)
    assert_readable(text, width)
    header = " ".join(next(line for line in text.splitlines() if "Layer" in line).replace("┃", " ").split())
    for column in ("Layer", "Shape", "Sparsity", "Structure"):  # kept at any width
        assert column in header
    for column in dropped:
        assert column not in header
    if dropped:
        assert f"Not shown at this width: {', '.join(dropped)}" in " ".join(text.split())
    else:
        assert "Not shown" not in text and "Empty rows/cols" in header


def test_rows_merge_only_when_figures_are_identical():
    state = tiny_bert()
    state["bert.encoder.layer.3.attention.self.key.weight"][0, 0] = 0  # one zero: its own row now
    text = render(render_report, sparsity_report(state), width=200)
    rows = layer_names_shown(text)
    assert "encoder.layer.3.attention.self.key" in rows
    assert not any("key" in r and "{" in r and "3" in expand_text(r)[0] for r in rows if r != rows[0])
    shown = sorted(n for r in rows for n in expand_text(r))
    assert len(shown) == len(set(shown)) == 41


def test_comparison_at_80_columns():
    before = tiny_bert()
    masks = tiny_bert(pruned=True)
    after = {name: value * (masks[name] != 0) if name.startswith("bert.encoder") else value
             for name, value in before.items()}
    text = render(render_comparison, compare_reports(before, after))
    assert_readable(text, 80)
    line = next(line for line in text.splitlines() if line.split()[:1] == ["encoder.layer.0.attention.self.query"])
    assert "0.00%" in line and "0.39%" in line and "4" in line.split()  # 1 of 256 4x1 blocks: 4 changed


def plan(layers: int) -> list[dict]:
    """`Pruner.plan()` of a BERT with `layers` layers and the mixed recipe (recipes/mixed.json)."""
    common = {"pruning_type": "snip_momentum", "target_sparsity": 0.9, "start_step": 0, "end_step": 1200,
              "pruning_frequency": 40, "num_params": 0, "sparsity_decay_type": "exp", "num_events": 30,
              "oneshot": False, "progressive": False, "min_sparsity_ratio_per_op": 0.0,
              "max_sparsity_ratio_per_op": 0.98, "path": None}
    ffn = [f"bert.encoder.layer.{i}.{m}" for i in range(layers)
           for m in ("attention.output.dense", "intermediate.dense", "output.dense")]
    qkv = [f"bert.encoder.layer.{i}.attention.self.{m}" for i in range(layers) for m in ("query", "key", "value")]
    return [{**common, "index": 0, "layers": ffn, "pattern": "1x1", "pruning_scope": "local"},
            {**common, "index": 1, "layers": qkv, "pattern": "4x1", "pruning_scope": "global"}]


def print_plan(layers: int, width: int) -> str:
    out = io.StringIO()
    Console(width=width, file=out, force_terminal=False).print(plan_table(plan(layers), ["classifier"]))
    return out.getvalue()


def test_plan_of_a_6_layer_model_at_80_columns():
    text = print_plan(6, 80)
    assert_readable(text, 80)
    for group in ("encoder.layer.{0-5}.attention.output.dense", "encoder.layer.{0-5}.intermediate.dense",
                  "encoder.layer.{0-5}.output.dense", "encoder.layer.{0-5}.attention.self.{query,key,value}"):
        assert any(group in line.split() for line in text.splitlines()), group
    assert "without the prefix bert." in text and "classifier" in text
    # The schedule moved to its own table; nothing is lost.
    assert "snip_momentum" in text and "0-1200/40" in text and "global" in text


@pytest.mark.parametrize("width", [200, 120, 80, 50])
def test_plan_accounts_for_every_layer_at_any_width(width):
    text = print_plan(12, width)
    assert_readable(text, width)
    lines = text.splitlines()
    header = next(line for line in lines if "layers" in line and "pattern" in line)
    start, end = header.index("layers"), header.index("pattern")
    cells: list[str] = []
    for line in lines[lines.index(header) + 1:]:
        cell = line[start:end].strip(" │┃")
        if cells and cells[-1].endswith("."):
            cells[-1] += cell  # a name broken after a dot
        elif cell.startswith("encoder."):
            cells.append(cell)
    shown = [n for cell in cells for n in expand_text(cell)]
    assert sorted(shown) == sorted(n.removeprefix("bert.") for g in plan(12) for n in g["layers"])


def test_short_plan_lists_full_names_when_they_fit():
    text = print_plan(2, 200)
    assert "bert.encoder.layer.0.attention.self.query" in text and "{" not in text
    assert "bert.encoder.layer.1.attention.self.value" in text


@pytest.mark.parametrize("width", [100, 80])
def test_pruned_marks_stay_beside_whole_names(width):
    state = tiny_bert(2, pruned=True)
    encoder = [name.removesuffix(".weight") for name in state if ".encoder." in name and name.endswith(".weight")]
    report = sparsity_report(state, recipe={"groups": [{"pattern": "4x1", "target_sparsity": 0.5, "layers": encoder}]})
    text = render(render_report, report, width=width)
    assert_readable(text, width)
    marked = [line.split()[:2] for line in text.splitlines() if " * " in line]
    assert sorted(name for name, _ in marked) == sorted(n.removeprefix("bert.") for n in encoder)
    assert {star for _, star in marked} == {"*"}
    assert "pruned layer (in the recipe)" in text


def test_prefix_is_kept_when_leaving_it_out_would_make_names_collide():
    from prunecli.report.render import display_prefix

    assert display_prefix(["bert.encoder.x", "bert.pooler.dense", "classifier"], ["ffn", "linear", "head"]) == "bert."
    assert display_prefix(["bert.encoder.x", "bert.classifier", "classifier"], ["ffn", "linear", "head"]) == ""
