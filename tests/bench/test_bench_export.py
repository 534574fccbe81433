"""bench/bench_export.py end to end on tiny models: four exports (each a timed process), one benchmark process
over the four files, the scores through onnxruntime, and the summary computed from the recorded timings.

Slow (about 3 minutes here: six prunecli processes, each importing torch and running the dynamo exporter): opt in
with --runslow or PRUNECLI_SLOW=1."""

from __future__ import annotations

import json

import pytest

from bench import bench_export
from tests.helpers import make_tiny_bert, write_glue_sst2_folder

pytestmark = pytest.mark.usefixtures("one_torch_thread")
STRUCTURE = {"pruning_type": "magnitude", "pruning_configs": [
    {"pattern": "head", "target_sparsity": 0.5}, {"pattern": "neuron", "target_sparsity": 0.5}]}


@pytest.mark.slow
def test_bench_export_on_tiny_models(tmp_path):
    from transformers import BertForSequenceClassification

    from prunecli.pipelines.compact import compact_checkpoint
    from prunecli.sparsity.pruner import Pruner

    dense = make_tiny_bert(tmp_path / "dense", num_hidden_layers=1, num_attention_heads=4, intermediate_size=64)
    sparse = tmp_path / "sparse"
    model = BertForSequenceClassification.from_pretrained(dense)
    Pruner(model, STRUCTURE).on_train_begin()
    model.save_pretrained(sparse)
    make_tiny_bert(tmp_path / "tok")  # only its tokenizer files
    for name in ("tokenizer_config.json", "tokenizer.json", "vocab.txt", "special_tokens_map.json"):
        if (tmp_path / "tok" / name).is_file():
            (sparse / name).write_bytes((tmp_path / "tok" / name).read_bytes())
    compact_checkpoint(sparse, tmp_path / "compact", check_examples=4)
    sst2 = write_glue_sst2_folder(tmp_path / "SST-2", n_train=4, n_dev=12)
    out = tmp_path / "export_speed.json"
    result = bench_export.main(["--dense", str(dense), "--compacted", str(tmp_path / "compact"), "--work",
                                str(tmp_path / "work"), "--output", str(out), "--data_dir", str(sst2),
                                "--batch_sizes", "4,1", "--sequence_length", "16", "--timing", "--repeats", "1",
                                "--min_time", "0", "--warmup", "0", "--rounds", "1", "--max_time", "2"])
    assert json.loads(out.read_text()) == result
    exports = result["exports"]
    assert list(exports) == ["dense fp32", "dense int8", "compacted fp32", "compacted int8"]
    assert exports["dense int8"]["file_mb"] < exports["dense fp32"]["file_mb"]
    assert exports["compacted int8"]["file_mb"] < exports["compacted fp32"]["file_mb"] < exports["dense fp32"][
        "file_mb"]
    assert all(e["export_seconds_whole_process"] > 0 and "accuracy" in e["metrics"] for e in exports.values())
    assert exports["compacted int8"]["checks"]["int8_examples"] == 12  # checked on the data given
    timing = result["benchmark"]
    assert timing["backends"] == ["onnxruntime"] and list(timing["cases"]) == ["b4 s16", "b1 s16", "b4 data",
                                                                                "b1 data"]
    medians = {m["label"]: m["cases"]["b4 s16"]["onnxruntime"]["median_ms"] for m in timing["models"]}
    gain = result["summary"]["cases"]["b4 s16"]["int8_gain_on_compacted"]
    assert gain == pytest.approx(medians["compacted_fp32"] / medians["compacted_int8"])
    share = result["summary"]["compacted_int8_share_of_dense_checkpoint"]
    assert share == pytest.approx(exports["compacted int8"]["file_mb"] / exports["dense fp32"]["source_file_mb"])


def _figures(median_ms: float, base_ms: float) -> dict:
    return {"onnxruntime": {"median_ms": median_ms, "speedup": base_ms / median_ms}}


def test_the_summary_and_its_rendering_come_from_the_timings(tmp_path):
    """bench_export.summarize's ratios and render_export's section and goals, from one benchmark result."""
    from bench import render_export

    medians = {"dense fp32": 600.0, "dense int8": 300.0, "compacted fp32": 300.0, "compacted int8": 160.0}
    timing = {"cases": {"b32 s128": {}}, "models": [
        {"label": name, "cases": {"b32 s128": _figures(ms, medians["dense fp32"])}} for name, ms in medians.items()]}
    exports = {name: {"file_mb": mb, "export_seconds_whole_process": 20.0 + i, "metrics": {"accuracy": 0.8},
                      "checks": {"int8_argmax_agreement": 0.99} if "int8" in name else {}}
               for i, (name, mb) in enumerate(zip(medians, (90.9, 23.0, 69.6, 17.6), strict=True))}
    summary = bench_export.summarize(exports, timing, dense_weights_mb=90.9)
    assert summary["cases"]["b32 s128"]["int8_gain_on_compacted"] == pytest.approx(300 / 160)
    assert summary["cases"]["b32 s128"]["compacted int8"]["speedup_vs_dense_fp32"] == pytest.approx(600 / 160)
    assert summary["compacted_int8_share_of_dense_checkpoint"] == pytest.approx(17.6 / 90.9)
    record = {"command": "bench/bench_export.py --dense d --compacted c", "exports": exports, "summary": summary}
    (tmp_path / render_export.EXPORT_FILE).write_text(json.dumps(record))
    text = "\n".join(render_export.section(tmp_path))
    assert "| compacted int8 | 0.8000 | 17.6 | 23.0 | 3.75x | 99.0% |" in text
    assert "INT8 on top of compaction 1.88x" in text
    goals = {goal: (measured, met) for goal, measured, met in render_export.goal_lines(tmp_path)}
    assert goals["INT8 on top of compaction >= 1.7x (onnxruntime, b32 x 128)"] == ("1.88x", True)
    assert goals["compacted INT8 file <= 1/4 of the dense float32 checkpoint"] == ("0.19", True)
    assert any(measured == "21.0 s" and met for measured, met in goals.values())
    assert render_export.goal_lines(tmp_path / "none") == []
