"""prunecli export: float32 and INT8 deployment folders checked against PyTorch, export.json, the atomic write, and
every bad input exiting 2 with nothing written. One-layer tiny BERTs: the dynamo exporter's time grows with depth."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from prunecli.cli.app import app
from prunecli.errors import UserError
from prunecli.inference.runtime import is_exported, load_exported
from prunecli.pipelines.export import export_model
from tests.helpers import make_tiny_bert, write_glue_sst2_folder

pytestmark = pytest.mark.usefixtures("one_torch_thread")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sst2(tmp_path_factory) -> Path:
    return write_glue_sst2_folder(tmp_path_factory.mktemp("sst2") / "SST-2", n_train=8, n_dev=40)


@pytest.fixture(scope="module")
def bert(tmp_path_factory, sst2) -> Path:
    """A one-layer tiny BERT with its sparsity report and data options recorded (as a prune run leaves them)."""
    from prunecli.report import sparsity_report

    folder = make_tiny_bert(tmp_path_factory.mktemp("export_bert"), num_hidden_layers=1)
    (folder / "sparsity_report.json").write_text(json.dumps(sparsity_report(folder)), encoding="utf-8")
    (folder / "run_args.json").write_text(json.dumps({"data": {"data_dir": str(sst2), "max_length": 64}}))
    return folder


@pytest.fixture(scope="module")
def exported_fp32(tmp_path_factory, bert, sst2) -> Path:
    from prunecli.config import DataConfig

    out = tmp_path_factory.mktemp("fp32") / "onnx"
    export_model(bert, out, data=DataConfig(data_dir=str(sst2)))
    return out


@pytest.fixture(scope="module")
def exported_int8(tmp_path_factory, bert, sst2) -> Path:
    out = tmp_path_factory.mktemp("int8") / "onnx_int8"
    result = CliRunner().invoke(app, ["export", str(bert), "--output_dir", str(out), "--quantize", "int8",
                                      "--data_dir", str(sst2)])
    assert result.exit_code == 0, result.output
    assert "int8 check" in result.output and "same class on" in result.output
    return out


def test_fp32_export_writes_a_self_contained_folder_within_1e4_of_pytorch(exported_fp32, bert):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    names = sorted(p.name for p in exported_fp32.iterdir())
    assert {"model.onnx", "config.json", "export.json", "README.md", "tokenizer_config.json"} <= set(names)
    assert not [n for n in names if n.startswith(".")]  # no staging or float32 leftovers
    record = json.loads((exported_fp32 / "export.json").read_text())
    assert record["precision"] == "fp32" and record["quantization"] is None
    assert record["checks"]["float32"]["passed"] and record["checks"]["float32"]["max_abs_diff"] <= 1e-4
    assert record["checked_on"].startswith("40 examples of")
    # the file, opened the way runtime.py opens it, gives PyTorch's logits on new text
    deployed = load_exported(exported_fp32)
    tokenizer = AutoTokenizer.from_pretrained(bert)
    feeds = dict(tokenizer(["a good film", "bad and dull plot it was"], padding=True, return_tensors="np"))
    model = AutoModelForSequenceClassification.from_pretrained(bert).eval()
    with torch.inference_mode():
        ref = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits.numpy()
    assert np.abs(deployed.logits(feeds) - ref).max() <= 1e-4


def test_int8_export_is_smaller_and_reports_agreement(exported_int8, exported_fp32, bert):
    record = json.loads((exported_int8 / "export.json").read_text())
    assert record["precision"] == "int8"
    assert record["quantization"] == {"method": "dynamic", "weight_type": "QInt8", "per_channel": True,
                                      "tool": "onnxruntime.quantization", "preprocessed": True}
    int8 = record["checks"]["int8"]
    assert int8["examples"] == 40 and 0.0 <= int8["argmax_agreement"] <= 1.0 and int8["max_abs_diff"] > 0
    assert record["checks"]["float32"]["max_abs_diff"] <= 1e-4  # the float32 file was checked before quantizing
    size = (exported_int8 / "model.onnx").stat().st_size
    assert size == record["file_bytes"] < (exported_fp32 / "model.onnx").stat().st_size
    assert record["float32_file_mb"] > record["file_mb"]
    card = (exported_int8 / "README.md").read_text()
    assert "INT8" in card and "per-channel" in card and f"{int8['argmax_agreement']:.1%}" in card
    import onnx

    ops = {n.op_type for n in onnx.load(str(exported_int8 / "model.onnx")).graph.node}
    assert "DynamicQuantizeLinear" in ops or "MatMulInteger" in ops  # onnxruntime's dynamic quantization ran


def test_export_json_records_source_settings_checks_and_versions(exported_fp32, bert):
    record = json.loads((exported_fp32 / "export.json").read_text())
    assert record["schema"] == "prunecli.export/1"
    assert record["source"] == str(bert)
    assert record["onnx"]["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert record["onnx"]["outputs"] == ["logits"]
    assert record["versions"]["onnxruntime"] and record["prunecli_version"]
    assert record["file_mb"] == round((exported_fp32 / "model.onnx").stat().st_size / 1e6, 3)
    assert is_exported(exported_fp32) and not is_exported(bert)


def _cli(*args: str):
    return CliRunner().invoke(app, list(args))


def _no_traceback_exit_2(result, *named: str, before_export: bool = True) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    if before_export:  # refused before the export starts: the error is the only message
        assert "exporting" not in result.output
    for name in named:
        assert name in result.output, result.output


def test_missing_and_corrupt_models_exit_2_naming_them(tmp_path):
    out = tmp_path / "out"
    _no_traceback_exit_2(_cli("export", str(tmp_path / "nope"), "--output_dir", str(out)), "nope")
    corrupt = make_tiny_bert(tmp_path / "corrupt", num_hidden_layers=1)
    weights = corrupt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    _no_traceback_exit_2(_cli("export", str(corrupt), "--output_dir", str(out)), "corrupt", before_export=False)
    assert not out.exists()


def test_unknown_quantize_and_non_empty_output_exit_2_before_loading(tmp_path, bert, monkeypatch):
    import prunecli.models.loading as loading

    def no_load(*args, **kwargs):  # the checks come before any model is read
        raise AssertionError("loaded a model")

    monkeypatch.setattr(loading, "load_classifier", no_load)
    out = tmp_path / "out"
    _no_traceback_exit_2(_cli("export", str(bert), "--output_dir", str(out), "--quantize", "int4"), "--quantize",
                         "int4")
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    _no_traceback_exit_2(_cli("export", str(bert), "--output_dir", str(out)), "not empty")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    _no_traceback_exit_2(_cli("export", str(bert)), "--output_dir")


def test_an_exported_folder_is_not_exported_again(exported_fp32, tmp_path):
    with pytest.raises(UserError, match="already an exported ONNX folder"):
        export_model(exported_fp32, tmp_path / "again")


def test_a_write_failure_exits_2_and_leaves_nothing(tmp_path, bert):
    """A file size limit (what a full disk does to a write) in a real process: exit 2, one message, no folder and
    no staging folder left."""
    out = tmp_path / "deploy"
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000)); "
            "from prunecli.cli.app import main; sys.argv = ['prunecli', 'export', sys.argv[1], '--output_dir', "
            "sys.argv[2], '--quantize', 'int8']; main()")
    done = subprocess.run([sys.executable, "-c", code, str(bert), str(out)], capture_output=True, text=True,
                          cwd=REPO, timeout=300, env={**__import__("os").environ, "PYTHONPATH": str(REPO),
                                                      "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "cannot write the exported model" in done.stderr
    assert "nothing was written" in done.stderr
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []


# ---- the exported folder is what evaluate, benchmark and inspect measure ---------------------------------

def _evaluate_json(*args: str) -> dict:
    result = _cli("evaluate", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_evaluate_scores_the_exported_file_with_the_checkpoints_metrics(exported_fp32, exported_int8, bert, sst2):
    checkpoint = _evaluate_json(str(bert), "--data_dir", str(sst2))
    fp32 = _evaluate_json(str(exported_fp32), "--data_dir", str(sst2))
    assert fp32["runtime"] == "onnxruntime" and fp32["precision"] == "fp32"
    assert fp32["metrics"] == checkpoint["metrics"] and fp32["num_examples"] == checkpoint["num_examples"]
    int8 = _evaluate_json(str(exported_int8))  # no data options: the data the source recorded, carried over
    assert int8["precision"] == "int8" and int8["data"] == checkpoint["data"]
    assert set(int8["metrics"]) == set(checkpoint["metrics"])


def test_evaluate_of_an_export_on_data_of_another_task_exits_2(exported_fp32, tmp_path):
    from tests.helpers import write_rows

    three = write_rows(tmp_path / "three.csv", [{"sentence": "a good film", "label": lab} for lab in "abcab"])
    _no_traceback_exit_2(_cli("evaluate", str(exported_fp32), "--validation_file", str(three)),
                         str(exported_fp32), "3 labels")


def test_benchmark_times_an_export_in_onnxruntime_beside_its_checkpoint(exported_int8, bert):
    from prunecli.inference.benchmark import Timing, benchmark_models

    result = benchmark_models([bert, exported_int8], batch_sizes=[2], sequence_length=16,
                              timing=Timing(warmup=1, min_runs=2, min_time=0.0, max_time=5.0, rounds=1))
    checkpoint, deployed = result["models"]
    assert (checkpoint["precision"], deployed["precision"]) == ("fp32", "int8")
    assert deployed["file_mb"] == round((exported_int8 / "model.onnx").stat().st_size / 1e6, 3)
    assert deployed["file_mb"] < checkpoint["file_mb"]
    case = deployed["cases"]["b2 s16"]
    assert "pytorch" not in case and case["onnxruntime"]["speedup"] > 0
    assert any("only in onnxruntime" in note for note in result["notes"])


def test_benchmark_of_exports_alone_needs_onnxruntime(exported_int8):
    _no_traceback_exit_2(_cli("benchmark", str(exported_int8), "--backend", "pytorch", "--sequence_length", "16"),
                         "onnxruntime")


def test_inspect_says_what_an_exported_folder_is(exported_int8, bert):
    result = CliRunner().invoke(app, ["inspect", str(exported_int8)], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "exported ONNX model, INT8" in result.output and "source sparsity (recorded)" in result.output
    described = json.loads(_cli("inspect", str(exported_int8), "--json").stdout)
    assert described["precision"] == "int8" and described["source"] == str(bert)
    recorded = json.loads((bert / "sparsity_report.json").read_text())["model"]
    assert described["source_sparsity"] == recorded
    _no_traceback_exit_2(_cli("inspect", str(bert), "--compare", str(exported_int8)), "exported ONNX folder")


def test_the_python_export_example_runs_with_no_cli_module_imported(tmp_path):
    """docs/python_api.md's export example, as written, on a tiny model called mrpc_small."""
    import os
    import re

    docs = (REPO / "docs" / "python_api.md").read_text(encoding="utf-8")
    section = docs[docs.index("## Export from Python"):]
    example = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    make_tiny_bert(tmp_path / "mrpc_small", num_hidden_layers=1)
    code = example + ("import json, sys\n"
                      "print(json.dumps(sorted(m for m in sys.modules if m.startswith('prunecli.cli'))))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    printed, cli_modules = done.stdout.strip().splitlines()
    assert json.loads(cli_modules) == []
    record = json.loads((tmp_path / "mrpc_int8" / "export.json").read_text())
    assert printed.split() == [str(record["file_mb"]), str(record["checks"]["int8"]["argmax_agreement"])]
