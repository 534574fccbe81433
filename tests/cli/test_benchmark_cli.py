"""`prunecli benchmark` through the Typer app: JSON on stdout, a table that reads at 80 columns, and bad input
(exit 2 with a hint, no traceback)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from prunecli.cli import benchmark as benchmark_cmd
from prunecli.cli.app import app, handles_user_errors
from prunecli.inference import onnx as onnx_mod
from tests.helpers import make_tiny_bert

runner = CliRunner()
FAST = ["--sequence_length", "16", "--batch_sizes", "1,2", "--repeats", "2", "--min_time", "0", "--warmup", "1",
        "--threads", "1"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module", autouse=True)
def benchmark_registered():
    """Register `benchmark` on the app unless `_register()` already does, and take it off again afterwards (the
    docs test lists the app's commands)."""
    names = {c.name for c in app.registered_commands}
    added = None
    if "benchmark" not in names:
        app.command(name="benchmark")(handles_user_errors(benchmark_cmd.command))
        added = app.registered_commands[-1]
    yield
    if added is not None:
        app.registered_commands.remove(added)


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_cli")
    return (make_tiny_bert(root / "dense_model"),
            make_tiny_bert(root / "compact_model", intermediate_size=16, num_hidden_layers=1))


def invoke(*args: str, columns: int = 80):
    return runner.invoke(app, ["benchmark", *map(str, args)], env={"COLUMNS": str(columns), "NO_COLOR": "1"})


def test_json_on_stdout_and_in_the_output_file(two_models, tmp_path):
    out = tmp_path / "bench.json"
    result = invoke(*two_models, *FAST, "--backend", "pytorch", "--json", "--output", out)
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)  # nothing but JSON on stdout
    assert json.loads(out.read_text(encoding="utf-8")) == shown
    assert [m["label"] for m in shown["models"]] == ["dense_model", "compact_model"]
    assert list(shown["cases"]) == ["b1 s16", "b2 s16"] and shown["backends"] == ["pytorch"]
    dense, compact = shown["models"]
    assert compact["params"] < dense["params"] and compact["flops_per_example"] < dense["flops_per_example"]
    assert dense["cases"]["b2 s16"]["pytorch"]["speedup"] == 1.0


def test_table_reads_at_80_columns_and_widens_on_a_wide_terminal(two_models, monkeypatch, tmp_path):
    def no_dynamo(*args, **kwargs):  # the TorchScript exporter is ~15x faster here; the layout is the same
        raise RuntimeError("skip the slow exporter in this test")

    monkeypatch.setattr(onnx_mod, "_export_dynamo", no_dynamo)
    out = tmp_path / "bench.json"
    result = invoke(*two_models, *FAST, "--output", out)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    table_lines = [ln for ln in lines if ln[:1] in "┏┃┡│├└"]
    assert table_lines and max(len(ln) for ln in table_lines) <= 80
    assert "…" not in result.stdout  # nothing cut short
    for label in ("dense_model", "compact_model"):  # whole names on every row of every table
        rows = [ln for ln in table_lines if label in ln]
        assert len(rows) == 2 * 2 + 1, rows  # 2 cases x 2 backends (one table each), plus the facts table
    assert "PyTorch, CPU, 1 thread" in result.stdout and "ONNX Runtime" in result.stdout
    assert "p90 ms" in result.stdout and "speed-up" in result.stdout and "Models" in result.stdout
    assert f"dense_model: {two_models[0]}" in result.stdout

    from rich.console import Console

    console = Console(width=200, record=True, no_color=True)
    benchmark_cmd.render(json.loads(out.read_text(encoding="utf-8")), console)
    wide = console.export_text()
    header = next(ln for ln in wide.splitlines() if "PT median ms" in ln)
    assert "ORT median ms" in header  # both backends side by side
    assert sum("dense_model" in ln for ln in wide.splitlines() if ln.startswith("│")) == 2 + 1  # one row per case


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{missing}"], "does not exist"),
        (["{empty}"], "not a model folder"),
        ([], "no models"),
        (["{model}", "--batch_sizes", "1,x"], "bad batch size list"),
        (["{model}", "--backend", "gpu"], "unknown --backend"),
        (["{model}", "--sequence_length", "100"], "at most 64 tokens"),
        (["{model}", "--repeats", "0"], "bad timing settings"),
    ],
)
def test_bad_input_exits_2_with_a_hint(two_models, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    fill = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "model": two_models[0]}
    result = invoke(*[a.format(**fill) for a in args], "--backend", "pytorch") if "--backend" not in args else \
        invoke(*[a.format(**fill) for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Hint:" in result.output
    assert "Traceback" not in result.output
