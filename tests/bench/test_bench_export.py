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


def _run(kind: str, pattern: str, seed: int, accuracy: float) -> dict:
    record = {"profile": "full", "kind": kind, "task": "mrpc", "tool": "prunecli", "pattern": pattern, "seed": seed,
              "metrics": {"accuracy": accuracy}}
    if kind == "prune":
        record["compact"] = {"path": f"bench/work/runs/full/mrpc/s{seed}/{pattern}/compact", "params_after": 15e6}
    return record


def test_curve_int8_exports_scores_and_times_each_compacted_model_and_renders_the_columns(tmp_path, monkeypatch):
    """bench_compact.py --curve full --int8: each compacted model's INT8 file is timed in the same run as the
    dense model; render_compact adds the INT8 columns and the 5x-within-1% goal from what was measured."""
    from bench import bench_compact, render_compact

    root = tmp_path / "bench"
    runs = [_run("prune", "hn70", seed, 0.80) for seed in (42, 43)]
    (root / "results" / "full" / "mrpc").mkdir(parents=True)
    for r in [_run("dense", "dense", 42, 0.81), _run("dense", "dense", 43, 0.81), *runs]:
        (root / "results" / "full" / "mrpc" / f"{r['pattern']}-{r['seed']}.json").write_text(json.dumps(r))
    for r in runs:
        (tmp_path / r["compact"]["path"]).mkdir(parents=True)
    speedups = {"dense": 1.0, "s42/hn70/compact": 3.1, "s43/hn70/compact": 3.0, "mrpc-hn70-prunecli-s42": 5.6,
                "mrpc-hn70-prunecli-s43": 5.2}

    def fake_export(compacted, out):
        return {"folder": str(out), "metrics": {"accuracy": 0.805 if "s42" in str(compacted) else 0.80},
                "file_mb": 17.0, "export_seconds": 20.0, "argmax_agreement": 0.99}

    def fake_benchmark(folders, out, *args):
        def speed(folder):
            key = next((k for k in speedups if folder.endswith(k)), "dense")
            backends = {"onnxruntime": {"speedup": speedups[key]}}
            if "int8" not in folder:
                backends["pytorch"] = {"speedup": speedups[key]}
            return {"encoder_flops_per_example": 100.0, "cases": {"b32 s128": backends}}

        return ["prunecli", "benchmark"], {"models": [speed(f) for f in folders]}

    monkeypatch.setattr(bench_compact, "export_int8", fake_export)
    monkeypatch.setattr(bench_compact, "_benchmark", fake_benchmark)
    assert bench_compact.curve("full", 1.0, None, root, int8=True) == 0
    task = json.loads((root / "results" / "full" / render_compact.CURVE_FILE).read_text())["tasks"]["mrpc"]
    assert task["labels"] == ["dense", "mrpc-hn70-prunecli-s42", "mrpc-hn70-prunecli-s43",
                              "mrpc-hn70-prunecli-s42-int8", "mrpc-hn70-prunecli-s43-int8"]
    assert set(task["int8"]) == {"mrpc-hn70-prunecli-s42", "mrpc-hn70-prunecli-s43"}
    records = [json.loads(p.read_text()) for p in sorted((root / "results" / "full").glob("*/*.json"))]
    (row,) = render_compact.curve_rows(records, root / "results")
    assert row["int8"]["speedup"] == pytest.approx(5.4) and row["int8"]["accuracy"] == pytest.approx(0.8025)
    short = render_compact.curve_table(records, root / "results", short=True)
    assert short[0].endswith("| compacted | vs dense | INT8 ORT, vs dense |")
    assert short[2].endswith("| 0.8000, 2 seeds | -1.23% | 5.40x, -0.93% |")
    goals = {g[0]: g[1:] for g in render_compact.goal_lines(records, root / "results")}
    assert goals["MRPC: INT8 file at >= 5x (onnxruntime, b32 x 128, vs dense fp32) within 1% of dense"] == (
        "5.40x at -0.93% (2 seeds)", True)


def test_curve_int8_change_is_against_the_dense_models_of_the_seeds_that_have_an_int8_file(tmp_path):
    """INT8 exported for one of three seeds: its change is against that seed's dense model, not the mean of all."""
    from bench import render_compact

    dense = {42: 0.80, 43: 0.83, 44: 0.84}
    records = [_run("dense", "dense", s, acc) for s, acc in dense.items()]
    records += [_run("prune", "hn70", s, 0.80) for s in dense]
    label = render_compact.curve_label(records[-2])  # seed 43
    model = {"encoder_flops_per_example": 50.0, "cases": {"b32 s128": {"onnxruntime": {"speedup": 5.0}}}}
    base = {"encoder_flops_per_example": 100.0, "cases": {"b32 s128": {"onnxruntime": {"speedup": 1.0}}}}
    speed = {"tasks": {"mrpc": {"labels": ["dense", label + render_compact.INT8_SUFFIX],
                                "benchmark": {"models": [base, model]},
                                "int8": {label: {"metrics": {"accuracy": 0.81}}}}}}
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / render_compact.CURVE_FILE).write_text(json.dumps(speed))
    (row,) = render_compact.curve_rows(records, tmp_path)
    assert row["drop"] == pytest.approx(0.80 / 0.82333333 - 1)  # the fp32 runs: all three seeds
    assert row["int8"]["seeds"] == 1 and row["int8"]["speedup"] == 5.0
    assert row["int8"]["drop"] == pytest.approx(0.81 / 0.83 - 1)  # seed 43's dense only
    short = render_compact.curve_table(records, tmp_path, short=True)
    assert short[2].endswith("| 0.8000, 3 seeds | -2.83% | 5.00x, -2.41% (1 seed) |")  # fewer seeds: named


def test_the_deploy_profile_renders_its_own_curve_and_counts_for_the_int8_goal(tmp_path):
    """Runs re-trained under profile `deploy` (checkpoints kept) with INT8 files: their own table in the
    compaction section, and the INT8 goal read from them; the `full` curve is left as it was."""
    from bench import render_compact

    records = [dict(_run("dense", "dense", 43, 0.82), profile="deploy"),
               dict(_run("prune", "hn70", 43, 0.81), profile="deploy")]
    label = render_compact.curve_label(records[1])
    model = {"encoder_flops_per_example": 40.0, "cases": {"b32 s128": {"onnxruntime": {"speedup": 3.2}}}}
    int8 = {"encoder_flops_per_example": 40.0, "cases": {"b32 s128": {"onnxruntime": {"speedup": 5.3}}}}
    base = {"encoder_flops_per_example": 100.0, "cases": {"b32 s128": {"onnxruntime": {"speedup": 1.0}}}}
    speed = {"tasks": {"mrpc": {"labels": ["dense", label, label + render_compact.INT8_SUFFIX],
                                "benchmark": {"models": [base, model, int8]},
                                "int8": {label: {"metrics": {"accuracy": 0.815}}}}}}
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / render_compact.CURVE_FILE).write_text(json.dumps(speed))
    assert render_compact.curve_rows(records, tmp_path) == []  # not the full profile's
    block = render_compact.readme_block(records, tmp_path)  # the README's table: the deployed curve's
    assert "| 0.8100, 1 seed | -1.22% | 5.30x, -0.61% |" in block
    text = "\n".join(render_compact.section(records, tmp_path))
    assert "profile `deploy`" in text and "| 0.8100, 1 seed | -1.22% | 5.30x | 0.8150, 1 seed | -0.61% |" in text
    goals = {g[0]: g[1:] for g in render_compact.goal_lines(records, tmp_path)}
    assert goals["MRPC: INT8 file at >= 5x (onnxruntime, b32 x 128, vs dense fp32) within 1% of dense"] == (
        "5.30x at -0.61% (1 seed)", True)


@pytest.mark.parametrize(("recorded", "rendered"), [
    ("/work/main/.venv/bin/python bench/bench_export.py --dense /work/main/bench/work/d "
     "--data_dir /data/shared/glue/MRPC",
     ".venv/bin/python bench/bench_export.py --dense bench/work/d --data_dir ../shared/glue/MRPC"),
    ("prunecli prune --model_name_or_path /home/u/repo/.venv/lib/m --recipe /home/u/repo/recipes/r.json",
     "prunecli prune --model_name_or_path .venv/lib/m --recipe recipes/r.json"),
    ("prunecli benchmark /tmp/elsewhere/model ../shared/glue/MRPC bench/work/x",
     "prunecli benchmark /tmp/elsewhere/model ../shared/glue/MRPC bench/work/x"),
])
def test_rendered_commands_drop_the_recording_machines_paths(recorded, rendered):
    """A command recorded with a checkout's absolute paths reads relative to the repository's root in the docs,
    whichever checkout renders them; paths outside a checkout stay as recorded."""
    from bench import render_export

    assert render_export.portable_command(recorded) == rendered
