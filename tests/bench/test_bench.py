"""Fast tests of the benchmark harness's pure parts: derived GLUE folders, quick-mode resolution, the result
schema and the BENCHMARKS.md renderer. Nothing here installs INC, trains, or reads the shared GLUE data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import glue_data, render_results
from bench.run_glue_bench import (
    METHODS,
    PATTERNS,
    PRUNECLI_VARIANTS,
    TOOLS,
    build_parser,
    cost_figures,
    is_tool,
    last_json,
    pair_todo,
    resolve_plan,
    tool_flags,
)
from tests.helpers import write_glue_mrpc_folder, write_glue_sst2_folder

# ---- derived GLUE folders ------------------------------------------------------------------------------------


def test_holdout_preserves_format_and_counts(tmp_path):
    src = write_glue_mrpc_folder(tmp_path / "MRPC", n_train=50, n_dev=10)
    manifest = glue_data.derive_folder(src, tmp_path / "derived", "mrpc", holdout=0.2, seed=0)

    original = (src / "train.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    train = (tmp_path / "derived" / "train.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    dev = (tmp_path / "derived" / "dev.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    # The header (with its BOM) is kept on both files; every data line is an original line, byte for byte.
    assert train[0] == dev[0] == original[0] and original[0].startswith("\ufeff")
    assert sorted(train[1:] + dev[1:]) == sorted(original[1:])
    assert len(dev) - 1 == 10 and len(train) - 1 == 40
    assert manifest["counts"] == {"train": 40, "dev": 10}
    # Original order is kept inside each part, and unbalanced quotes survive untouched.
    assert train[1:] == [line for line in original[1:] if line in set(train[1:])]
    assert any('"' in line for line in train[1:] + dev[1:])


def test_holdout_is_stratified_deterministic_and_disjoint():
    labels = [1] * 70 + [0] * 30
    kept, held = glue_data.stratified_holdout(labels, 0.1, seed=3)
    assert (kept, held) == glue_data.stratified_holdout(labels, 0.1, seed=3)
    assert set(kept).isdisjoint(held) and len(kept) + len(held) == 100
    assert sum(labels[i] for i in held) == 7 and len(held) == 10
    assert glue_data.stratified_holdout(labels, 0.1, seed=4)[1] != held
    with pytest.raises(ValueError):
        glue_data.stratified_holdout(labels, 1.0, seed=0)


def test_holdout_never_uses_dev_and_subset_keeps_dev(tmp_path):
    src = write_glue_sst2_folder(tmp_path / "SST-2", n_train=40, n_dev=12)
    glue_data.derive_folder(src, tmp_path / "h", "sst2", holdout=0.25, seed=1)
    dev_lines = set((src / "dev.tsv").read_text().splitlines()[1:])
    assert dev_lines.isdisjoint((tmp_path / "h" / "dev.tsv").read_text().splitlines()[1:])

    manifest = glue_data.derive_folder(src, tmp_path / "s", "sst2", max_train_samples=16, seed=1)
    assert (tmp_path / "s" / "dev.tsv").read_bytes() == (src / "dev.tsv").read_bytes()
    assert manifest["counts"] == {"train": 16, "dev": 12}
    # SST-2's trailing space before the tab survives.
    assert all(" \t" in line for line in (tmp_path / "s" / "train.tsv").read_text().splitlines()[1:])


def test_derive_folder_is_idempotent(tmp_path):
    src = write_glue_mrpc_folder(tmp_path / "MRPC", n_train=30, n_dev=5)
    first = glue_data.derive_folder(src, tmp_path / "d", "mrpc", holdout=0.2, seed=0)
    stamp = (tmp_path / "d" / "train.tsv").stat().st_mtime_ns
    assert glue_data.derive_folder(src, tmp_path / "d", "mrpc", holdout=0.2, seed=0) == first
    assert (tmp_path / "d" / "train.tsv").stat().st_mtime_ns == stamp


def test_reader_parses_mrpc_without_quote_processing(tmp_path):
    src = write_glue_mrpc_folder(tmp_path / "MRPC", n_train=20, n_dev=5)
    glue = glue_data.read_glue_file(src / "train.tsv", "mrpc")
    assert len(glue.lines) == 20 and len(glue.texts()) == 20
    assert set(glue.labels()) <= {0, 1}
    assert glue.texts()[0][0].endswith('"')  # the unbalanced quote stays in the sentence


# ---- plan resolution -----------------------------------------------------------------------------------------


def test_quick_mode_resolution():
    plan = resolve_plan(build_parser().parse_args(["--quick", "--seeds", "1,2,3"]), model="m")
    assert plan.profile == "quick" and plan.quick
    assert [t.task for t in plan.tasks] == ["mrpc"] and plan.patterns == ["2in4"] and plan.seeds == [1]
    ts = plan.tasks[0]
    assert ts.epochs == 1 and ts.dense_epochs == 1 and ts.max_train_samples == 256
    assert 0 < ts.warm_epochs < 1 - ts.cooldown_epochs  # pruning happens inside the single epoch
    assert plan.cost_steps and plan.notes and "quick" in plan.notes[0]


def test_full_and_holdout_resolution():
    plan = resolve_plan(build_parser().parse_args([]), model="m")
    assert plan.profile == "full" and not plan.quick
    mrpc, sst2 = plan.tasks
    assert (mrpc.epochs, mrpc.warm_epochs, mrpc.cooldown_epochs, mrpc.frequency) == (15, 1.0, 5.0, 50)
    assert mrpc.max_train_samples is None and sst2.max_train_samples == 8000
    assert plan.patterns == ["2in4", "4x1", "1xchannel", "mixed"] and plan.seeds == [42, 43]  # the reference

    sweep = resolve_plan(build_parser().parse_args(["--holdout", "0.1", "--learning_rate", "5e-5,1e-4",
                                                    "--distill_loss_weight", "2,5", "--tasks", "mrpc"]), model="m")
    assert sweep.profile == "holdout-0.1" and sweep.holdout == 0.1 and sweep.cost_steps is None
    assert sweep.learning_rates == [5e-5, 1e-4] and sweep.distill_weights == [2.0, 5.0]
    with pytest.raises(SystemExit):
        resolve_plan(build_parser().parse_args(["--patterns", "3x3"]), model="m")


def test_last_json_finds_the_cli_output():
    text = 'loading...\n{"a": 1}\nmore log {not json}\n{\n  "metrics": {"accuracy": 0.5}\n}\n'
    assert last_json(text) == {"metrics": {"accuracy": 0.5}}
    assert last_json("no json here") is None


def test_cost_figures_difference_out_the_fixed_cost():
    run = {"rc": 0, "peak_rss_mb": 100.0}
    cases = {"prunecli_finetune": {"10": {**run, "wall_s": 15.0, "train_s": 5.0}, "20": {**run, "wall_s": 20.0,
                                                                                 "train_s": 9.0}},
             "prunecli_prune": {"10": {**run, "wall_s": 16.0, "train_s": 6.0}, "20": {**run, "wall_s": 22.0,
                                                                                 "train_s": 11.0}},
             "inc_prune": {"10": {**run, "rc": 1, "wall_s": 1.0}, "20": {**run, "wall_s": 30.0}}}
    fig = cost_figures(cases, 10, 16)
    assert fig["step_s_wall"] == pytest.approx({"prunecli_finetune": 0.5, "prunecli_prune": 0.6})
    assert fig["step_s"] == pytest.approx({"prunecli_finetune": 0.4, "prunecli_prune": 0.5})
    assert fig["prunecli_prune_over_finetune_step"] == pytest.approx(1.25)
    assert fig["examples_per_s"]["prunecli_finetune"] == pytest.approx(40.0)
    assert "inc_prune" not in fig["step_s"] and fig["peak_rss_mb"]["inc_prune"] == 100.0


# ---- results and rendering ----------------------------------------------------------------------------------


def _record(kind, tool, pattern, seed, acc, f1=None, *, profile="full", run_id="R1", wall=100.0, sparsity=None,
            quick=False, lr=5e-5, w=2.0, rc=0):
    metrics = {"accuracy": acc} if f1 is None else {"accuracy": acc, "f1": f1}
    return {
        "schema": "prunecli-bench/1", "kind": kind, "tool": tool, "task": "mrpc", "pattern": pattern, "seed": seed,
        "profile": profile, "quick": quick, "holdout": None, "bench_run_id": run_id,
        "bench_command": ".venv/bin/python bench/run_glue_bench.py --tasks mrpc",
        "recorded_at": "2026-11-23T00:00:00+00:00", "rc": rc, "metrics": metrics if rc == 0 else {},
        "sparsity": {"elementwise_matmul": sparsity}, "wall_s": wall, "peak_rss_mb": 1000.0,
        "hyperparameters": {"learning_rate": lr, "distill_loss_weight": w} if kind == "prune" else None,
        "commands": [f"{tool} {kind} {pattern} {seed}"],
        "task_settings": {"dense_epochs": 5, "dense_learning_rate": 5e-5, "epochs": 15, "warm_epochs": 1.0,
                          "cooldown_epochs": 5.0, "frequency": 50, "batch_size": 16, "weight_decay": 5e-5,
                          "max_length": 128},
        "data": {"folder": "../shared/glue/MRPC", "derived": False},
        "machine": {"cpu": "Test CPU", "cpu_count": 2, "memory_gib": 24, "platform": "Linux"},
        "versions": {"prunecli_env": {"prunecli": "0.1.0", "torch": "2.13.0", "transformers": "5.23.0"},
                     "inc_env": {"neural_compressor": "2.6", "torch": "2.13.0", "transformers": "5.23.0"}},
    }


SAMPLE = [
    _record("dense", "prunecli", "dense", 42, 0.85, 0.89, wall=300),
    _record("dense", "prunecli", "dense", 43, 0.86, 0.90, wall=300),
    _record("prune", "prunecli", "2in4", 42, 0.86, 0.90, sparsity=0.48, wall=700),
    _record("prune", "prunecli", "2in4", 43, 0.87, 0.91, sparsity=0.48, wall=700),
    _record("prune", "inc", "2in4", 42, 0.84, 0.88, sparsity=0.48, wall=1000),
    _record("prune", "inc", "2in4", 43, 0.85, 0.89, sparsity=0.48, wall=1000, run_id="R2"),
    _record("prune", "prunecli", "4x1", 42, 0.80, 0.85, sparsity=0.87, wall=700),
    _record("prune", "inc", "4x1", 42, 0.0, rc=1, wall=5),
    _record("dense", "prunecli", "dense", 42, 0.5, 0.6, profile="quick", quick=True, run_id="Q"),
    _record("prune", "prunecli", "2in4", 42, 0.55, 0.65, profile="quick", quick=True, run_id="Q", sparsity=0.4),
]


def test_result_schema_validation():
    assert render_results.validate(SAMPLE[0]) == []
    broken = dict(SAMPLE[0])
    del broken["seed"]
    assert "missing key 'seed'" in render_results.validate(broken)
    assert render_results.validate({**SAMPLE[0], "schema": "other/9"})


def test_reference_table_columns_and_numbers():
    full = [r for r in SAMPLE if r["profile"] == "full"]
    lines = render_results.reference_table(full, "mrpc")
    assert lines[0].startswith("| Sparsity pattern | Element-wise/matmul ratio | Dense accuracy (mean/max)")
    assert "Dense F1 (mean/max)" in lines[0] and "Seeds" in lines[0]
    row_2in4 = next(line for line in lines if line.startswith("| 2:4 "))
    assert "0.8550/0.8600" in row_2in4 and "0.8650/0.8700" in row_2in4  # dense and sparse mean/max
    assert "+1.16%" in row_2in4  # (0.87 - 0.86) / 0.86, the reference's max-based drop
    assert "0.4800" in row_2in4 and "2 (42, 43)" in row_2in4 and "5e-05 / 2" in row_2in4
    row_4x1 = next(line for line in lines if line.startswith("| 4x1"))
    assert "| 1 (42) |" in row_4x1 and "0.8000" in row_4x1


def test_side_by_side_ratio_only_within_one_bench_run():
    full = [r for r in SAMPLE if r["profile"] == "full"]
    lines = render_results.side_by_side_table(full, "mrpc")
    s42 = next(line for line in lines if line.startswith("| 2:4 | 42 "))
    s43 = next(line for line in lines if line.startswith("| 2:4 | 43 "))
    assert "0.70×" in s42 and "700 s" in s42 and "1000 s" in s42
    assert "different runs" in s43
    failed = next(line for line in lines if line.startswith("| 4x1"))
    assert "failed (rc 1)" in failed


def test_every_prunecli_variant_passes_real_prune_options():
    import typer.main

    from prunecli.cli.app import app

    prune = next(c for c in typer.main.get_command(app).commands.values() if c.name == "prune")
    spellings = {opt for param in prune.params for opt in [*param.opts, *param.secondary_opts]}
    assert set(PRUNECLI_VARIANTS) == {t for t in TOOLS if t.startswith("prunecli")}
    for tool, flags in PRUNECLI_VARIANTS.items():
        assert all(f in spellings for f in flags if f.startswith("--")), tool
    for method, flags in METHODS.items():
        assert all(f in spellings for f in flags if f.startswith("--")), method


def test_compact_patterns_name_a_committed_recipe_and_a_share():
    from bench.run_glue_bench import COMPACT_PATTERNS, REPO
    from prunecli.sparsity.recipe import load_recipe

    assert set(COMPACT_PATTERNS) <= set(PATTERNS) and "hn50" in COMPACT_PATTERNS
    for name, spec in COMPACT_PATTERNS.items():
        groups = load_recipe(REPO / spec["recipe"]).with_globals(target_sparsity=spec["target_sparsity"]).resolve()
        assert {g.pattern for g in groups} == {"head", "neuron"} and spec["compact"]
        assert all(g.target_sparsity == spec["target_sparsity"] for g in groups)
        assert name == f"hn{round(spec['target_sparsity'] * 100)}"


def test_methods_combine_with_a_batching_variant():
    assert tool_flags("prunecli-plain+kd+cool") == [*PRUNECLI_VARIANTS["prunecli-plain"], *METHODS["kd"],
                                                    *METHODS["cool"]]
    assert tool_flags("inc") is None
    assert is_tool("prunecli+kd") and is_tool("inc") and not is_tool("inc+kd") and not is_tool("prunecli+nope")


def test_resume_reruns_a_prunecli_inc_pair_together_and_variants_alone():
    tools = ["prunecli", "prunecli-plain", "inc"]
    done = {"x": 1}
    assert pair_todo(tools, {"prunecli": done, "prunecli-plain": done, "inc": done}) == []
    assert pair_todo(tools, {"prunecli": done, "prunecli-plain": None, "inc": done}) == ["prunecli-plain"]
    assert pair_todo(tools, {"prunecli": done, "prunecli-plain": done, "inc": None}) == ["prunecli", "inc"]
    assert pair_todo(["inc", "prunecli"], {"prunecli": None, "inc": done}) == ["inc", "prunecli"]
    assert pair_todo(["prunecli"], {"prunecli": None}) == ["prunecli"]


def test_batching_table_pairs_grouped_and_plain_per_seed():
    recs = [_record("prune", "prunecli", "2in4", 42, 0.80, 0.86, wall=250),
            _record("prune", "prunecli-plain", "2in4", 42, 0.78, 0.85, wall=350),
            _record("prune", "inc", "2in4", 42, 0.79, 0.85, wall=450),
            _record("prune", "prunecli", "2in4", 43, 0.82, 0.87, wall=250, run_id="R2"),
            _record("prune", "prunecli-plain", "2in4", 43, 0.83, 0.88, wall=350, run_id="R3"),
            _record("prune", "prunecli", "4x1", 42, 0.70, 0.80)]  # no plain twin: no row
    lines = render_results.batching_table(recs, "mrpc")
    s42 = next(line for line in lines if line.startswith("| 2:4 | 42 "))
    assert "| 0.8000 | 0.7800 | 0.7900 |" in s42 and "0.71×" in s42  # 250 / 350 in one bench run
    s43 = next(line for line in lines if line.startswith("| 2:4 | 43 "))
    assert "not measured" in s43 and "different runs" in s43
    assert not any(line.startswith("| 4x1") for line in lines)
    summary = lines[-1]
    assert "2 seed(s)" in summary and "grouped 0.8100, plain 0.8050" in summary and "+0.0050" in summary
    assert "grouped higher on 1 of 2 seeds" in summary
    assert render_results.batching_table([recs[0], recs[2]], "mrpc") == []  # nothing to compare
    # the main tables ignore the variant
    assert not any("0.7800" in line for line in render_results.reference_table(recs, "mrpc"))


def test_alignment_table_shows_each_variant_beside_plain_and_inc():
    recs = [_record("prune", "prunecli-plain", "2in4", 42, 0.78, 0.85, wall=350),
            _record("prune", "prunecli-inclike", "2in4", 42, 0.80, 0.86, wall=420),
            _record("prune", "inc", "2in4", 42, 0.79, 0.85, wall=450),
            _record("prune", "prunecli-plain", "2in4", 43, 0.82, 0.87, wall=350),
            _record("prune", "prunecli-inclike", "2in4", 43, 0.84, 0.88, wall=420),
            _record("prune", "inc", "2in4", 43, 0.81, 0.86, wall=450),
            _record("prune", "prunecli-inclike", "2in4", 44, 0.70, 0.80, wall=420),  # no plain / INC twin
            _record("prune", "prunecli-plain", "4x1", 42, 0.70, 0.80)]  # no variant: no row
    lines = render_results.alignment_table(recs, "mrpc")
    assert "Accuracy plain + both" in lines[0] and "eps" not in lines[0]  # only the variants measured
    s42 = next(line for line in lines if line.startswith("| 2:4 | 42 "))
    assert "| 0.7800 | 0.8000 | 0.7900 | 350 s | 420 s | 450 s |" in s42
    s44 = next(line for line in lines if line.startswith("| 2:4 | 44 "))
    assert s44.count("not measured") == 2
    assert not any(line.startswith("| 4x1") for line in lines)
    assert "2 seed(s) with every column: mean accuracy plain 0.8000, plain + both 0.8200, INC 0.8000" in lines[-1]
    assert render_results.alignment_table(recs[:1] + recs[2:3], "mrpc") == []


def test_methods_table_shows_each_method_against_plain_and_dense():
    recs = [_record("dense", "prunecli", "dense", 42, 0.80),
            _record("prune", "prunecli", "4x1", 42, 0.72),
            _record("prune", "prunecli+kd", "4x1", 42, 0.76),
            _record("prune", "prunecli+kd+cool", "4x1", 42, 0.78),
            _record("prune", "prunecli-plain+kd", "4x1", 42, 0.74),
            _record("prune", "prunecli", "2in4", 42, 0.79)]  # no method screened: no row
    recs += [_record("dense", "prunecli", "dense", 43, 0.90), _record("prune", "prunecli", "4x1", 43, 0.80),
             _record("prune", "prunecli+kd", "4x1", 43, 0.86), _record("prune", "prunecli+kd+cool", "4x1", 44, 0.9)]
    lines = render_results.methods_table(recs, "mrpc")
    blank = lines.index("")
    rows, means = lines[2:blank], lines[blank + 3:]
    assert [r.split(" | ")[3] for r in rows[:4]] == ["none (the default)", "logit KD (whole loss, T 2)",
                                                     "logit KD (whole loss, T 2) (prunecli-plain)",
                                                     "logit KD (whole loss, T 2) + lr to 0 over the cool-down"]
    assert rows[0].endswith("| 0.7200 | -10.00% |") and rows[3].endswith("| 0.7800 | -2.50% |")
    assert not any(line.startswith("| 2:4") for line in lines)
    # means over the seeds the default ran too (seed 44 has no default run, and no dense model: left out)
    assert means[0].endswith("| none (the default) | 2 (42, 43) | 0.7600 | -10.59% | — |")
    assert means[1].endswith("| logit KD (whole loss, T 2) | 2 (42, 43) | 0.8100 | -4.71% | +5.00 |")
    assert means[3].endswith("| logit KD (whole loss, T 2) + lr to 0 over the cool-down | 1 (42) | 0.7800 | "
                             "-2.50% | +6.00 |")
    assert render_results.methods_table(recs[:2], "mrpc") == []


def test_curve_pairs_each_compacted_run_with_its_dense_model_and_measured_speed(tmp_path):
    import json

    from bench import render_compact

    dense = _record("dense", "prunecli", "dense", 42, 0.80)
    runs = [_record("prune", tool, pattern, 42, acc) for tool, pattern, acc in
            (("prunecli", "hn55", 0.81), ("prunecli+kd", "hn70", 0.76), ("prunecli", "hn33", 0.79))]
    for r, params in zip(runs, (16.8e6, 14.0e6, 19.0e6), strict=True):
        r["compact"] = {"path": f"bench/work/{r['pattern']}/compact", "params_after": params}
    timed = runs[:2]  # hn33 was not timed
    models = [{"encoder_flops_per_example": 100.0, "cases": {"b32 s128": {"pytorch": {"speedup": 1.0}}}}] + [
        {"encoder_flops_per_example": flops, "cases": {"b32 s128": {"pytorch": {"speedup": speed},
                                                                     "onnxruntime": {"speedup": speed - 0.1}}}}
        for flops, speed in ((50.0, 2.1), (33.0, 3.2))]
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / render_compact.CURVE_FILE).write_text(json.dumps({"tasks": {"mrpc": {
        "labels": ["dense"] + [render_compact.curve_label(r) for r in timed], "benchmark": {"models": models}}}}))
    records = [dense, *runs]
    rows = {r["pattern"]: r for r in render_compact.curve_rows(records, tmp_path)}
    assert rows["hn55"]["flop_ratio"] == 2.0 and rows["hn55"]["speedup"] == {"pytorch": 2.1, "onnxruntime": 2.0}
    assert round(rows["hn55"]["drop"], 4) == 0.0125 and rows["hn33"]["speedup"] == {}
    full = render_compact.curve_table(records, tmp_path)
    assert "| MRPC | 55% (hidden MSE) | 16.8M | /2.00 | 2.10x | 2.00x | 0.8000 | 0.8100, 1 seed | +1.25% |" in full
    assert "| MRPC | 33% (hidden MSE) | 19.0M | — | not timed | not timed | 0.8000 | 0.7900, 1 seed | -1.25% |" in full
    short = render_compact.curve_table(records, tmp_path, short=True)
    assert short[0] == "| task | heads, neurons removed | params | PyTorch | ONNX Runtime | compacted | vs dense |"
    assert "| MRPC | 70% (logit KD) | 14.0M | 3.20x | 3.10x | 0.7600, 1 seed | -5.00% |" in short
    (goal,) = [g for g in render_compact.goal_lines(records, tmp_path) if g[0].startswith("MRPC")]
    assert goal[1:] == ("2.10x at +1.25% (1 seed)", True)  # the best run at >= 2x
    assert render_compact.curve_table([dense], tmp_path) == [
        "Not measured yet: `run_glue_bench.py --patterns hn33,hn55,hn70`, then `bench_compact.py --curve`."]



def test_curve_keeps_earlier_timings_of_models_no_longer_on_disk(tmp_path, monkeypatch):
    """A fresh checkout has the result JSONs but not the checkpoints: timing the curve again times the models
    on disk and carries the others' earlier speed-ups (each measured against the dense model of its run)."""
    from bench import bench_compact, render_compact

    root = tmp_path / "bench"
    runs = [_record("prune", "prunecli", "hn70", seed, 0.8) for seed in (42, 43)]
    for r in runs:
        r["compact"] = {"path": f"bench/work/runs/full/mrpc/s{r['seed']}/hn70/compact", "params_after": 15e6}
    (root / "results" / "full" / "mrpc").mkdir(parents=True)
    for r in [_record("dense", "prunecli", "dense", 42, 0.81), *runs]:
        (root / "results" / "full" / "mrpc" / f"{r['pattern']}-{r['seed']}.json").write_text(json.dumps(r))
    (tmp_path / runs[1]["compact"]["path"]).mkdir(parents=True)  # only seed 43's model is on disk
    old = {"cases": {"b32 s128": {"pytorch": {"speedup": 2.9}}}, "tag": "earlier"}
    (root / "results" / "full" / render_compact.CURVE_FILE).write_text(json.dumps({"tasks": {"mrpc": {
        "labels": ["dense", render_compact.curve_label(runs[0])], "benchmark": {"models": [{}, old]}}}}))
    timed: list[list[str]] = []

    def fake_benchmark(folders, out, *args):
        timed.append(folders)
        return ["prunecli", "benchmark"], {"models": [{"tag": f"now {Path(f).parent.parent.name}", "cases": {
            "b32 s128": {"pytorch": {"speedup": 1.0}}}} for f in folders]}

    monkeypatch.setattr(bench_compact, "_benchmark", fake_benchmark)
    assert bench_compact.curve("full", 1.0, None, root, tasks=["mrpc"]) == 0
    assert [Path(f).parent.parent.name for f in timed[0][1:]] == ["s43"]  # the missing model is not re-timed
    task = json.loads((root / "results" / "full" / render_compact.CURVE_FILE).read_text())["tasks"]["mrpc"]
    assert task["labels"] == ["dense", "mrpc-hn70-prunecli-s43", "mrpc-hn70-prunecli-s42"]
    assert [m["tag"] for m in task["benchmark"]["models"]] == ["now mrpc", "now s43", "earlier"]
    assert task["timed_in_an_earlier_run"] == ["mrpc-hn70-prunecli-s42"]
    (root / "results" / "full" / render_compact.CURVE_FILE).unlink()  # nothing earlier: a missing model is an error
    with pytest.raises(SystemExit, match="neither on disk nor timed earlier"):
        bench_compact.curve("full", 1.0, None, root, tasks=["mrpc"])
    # --skip_missing: the model on disk is timed, the other left out of the speed file (rendered as not timed)
    assert bench_compact.curve("full", 1.0, None, root, tasks=["mrpc"], skip_missing=True) == 0
    task = json.loads((root / "results" / "full" / render_compact.CURVE_FILE).read_text())["tasks"]["mrpc"]
    assert task["labels"] == ["dense", "mrpc-hn70-prunecli-s43"] and "timed_in_an_earlier_run" not in task

def test_render_markdown_labels_quick_and_never_invents(tmp_path):
    for i, record in enumerate(SAMPLE):
        path = tmp_path / record["profile"] / "mrpc" / f"{i}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record))
    (tmp_path / "junk.json").write_text("{not json")
    text = render_results.write_benchmarks(tmp_path, tmp_path / "BENCHMARKS.md")
    assert (tmp_path / "BENCHMARKS.md").read_text() == text
    assert "BERT-mini" in text and "DistilBERT" in text
    # BENCHMARKS.md opens with the summary of goals; the tables of every run are beside the JSONs
    assert text.startswith("# Benchmarks\n\n## Summary: every goal\n")
    assert "## Results (`full`)" not in text and "[README.md](README.md)" in text
    runs = (tmp_path / "README.md").read_text()
    assert runs.startswith("# Benchmark results, run by run")
    assert "Quick smoke runs (`quick`): NOT comparable" in runs
    assert runs.index("## Results (`full`)") < runs.index("Quick smoke runs")
    assert render_results.load_results(tmp_path)  # the README beside the JSONs is not read as a result
    assert "SST-2 2:4: sparse accuracy >= dense accuracy: not measured yet" in text
    assert "MRPC 2:4: sparse accuracy >= dense accuracy: met" in text
    assert "prunecli accuracy >= INC's: 2 of 2 rows" in text
    assert "0.7× INC's: 1 of 1 rows" in text
    assert "bench/run_glue_bench.py --tasks mrpc" in runs


def test_render_with_no_results(tmp_path):
    text = render_results.render_markdown(render_results.load_results(tmp_path))
    assert "No results recorded yet" in text


def test_published_reference_rows_are_consistent():
    """The quoted BERT-mini rows: each relative drop is sparse max / dense max - 1, as the tables compute it."""
    rows = [line.strip().strip("|").split("|") for line in render_results.HEADER.splitlines()
            if line.strip().startswith(("| MRPC |", "| SST-2 |"))]
    assert len(rows) == 6
    for cells in rows:
        dense_max = float(cells[3].split("/")[1])
        sparse_max = float(cells[4].split("/")[1])
        drop = float(cells[5].strip().rstrip("%")) / 100
        assert abs((sparse_max / dense_max - 1) - drop) <= 1e-4, cells  # the published last digit


# ---- the INC driver's pure parts (importable without INC) ------------------------------------------------------


def _inc_driver():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / "inc_prune.py"
    spec = importlib.util.spec_from_file_location("bench_inc_prune", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_inc_driver_batch_order_is_prunecli_loop_order():
    """The INC driver draws epoch orders exactly as prunecli's Trainer does (accelerate's seedable sampler)."""
    import torch
    from accelerate import Accelerator, DataLoaderConfiguration

    n, seed = 37, 42
    acc = Accelerator(dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=seed))
    loader = acc.prepare(torch.utils.data.DataLoader(list(range(n)), batch_size=8, shuffle=True,
                                                     generator=torch.Generator().manual_seed(seed)))
    expected = []
    for epoch in range(3):
        loader.set_epoch(epoch)
        expected.append([int(i) for batch in loader for i in batch])
    assert _inc_driver().epoch_orders(n, seed, 3, "per_epoch_seed") == expected


def test_inc_driver_padding_metrics_and_schedule():
    import numpy as np

    inc = _inc_driver()
    arrays = {"train_input_ids": np.array([101, 7, 102, 101, 8, 9, 102], dtype=np.int32),
              "train_token_type_ids": np.array([0, 0, 0, 0, 0, 1, 1], dtype=np.int32),
              "train_offsets": np.array([0, 3, 7]), "train_labels": np.array([1, 0])}
    batch = inc.Split(arrays, "train").batch([0, 1], pad_id=0)
    assert batch["input_ids"].tolist() == [[101, 7, 102, 0], [101, 8, 9, 102]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 0, 0], [0, 0, 1, 1]]
    assert batch["labels"].tolist() == [1, 0]

    assert inc.glue_metrics("mrpc", [1, 1, 0, 0], [1, 0, 0, 1]) == {"accuracy": 0.5, "f1": 0.5}
    assert inc.glue_metrics("sst2", [1, 0], [1, 1]) == {"accuracy": 0.5}
    # The example's arithmetic: float iterations, int truncation; -1 = about 40 events.
    assert inc.pruning_window(3668, 16, 15, 1, 5, 50) == (229, 2292, 50)
    assert inc.pruning_window(3668, 16, 15, 1, 5, -1) == (229, 2292, 51)


# ---- the whole harness, end to end, on a tiny model ---------------------------------------------------------------


def test_quick_mode_runs_end_to_end_with_prunecli(tmp_path, tiny_bert_dir):
    """`run_glue_bench.py --quick --tools prunecli` on a tiny random BERT and a small MRPC-layout folder:
    dense fine-tune, 2:4 prune, evaluate, inspect, one result JSON per run and a rendered BENCHMARKS.md,
    all under --out (the repository's bench/results and BENCHMARKS.md are not touched)."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    write_glue_mrpc_folder(tmp_path / "glue" / "MRPC", n_train=48, n_dev=16)
    out = tmp_path / "out"
    cmd = [sys.executable, "bench/run_glue_bench.py", "--quick", "--tools", "prunecli,prunecli-plain",
           "--cost_steps", "0",
           "--glue_dir", str(tmp_path / "glue"), "--model", str(tiny_bert_dir), "--out", str(out),
           "--profile", "smoke"]
    done = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = sorted(p.name for p in (out / "results" / "smoke" / "mrpc").glob("*.json"))
    assert results == ["prunecli-2in4-lr5e-05-w2-s42.json", "prunecli-dense-s42.json",
                       "prunecli-plain-2in4-lr5e-05-w2-s42.json"]
    pruned = json.loads((out / "results" / "smoke" / "mrpc" / results[0]).read_text())
    assert pruned["rc"] == 0 and pruned["quick"] is True
    assert pruned["sparsity"]["pruned_layers"] == pytest.approx(0.5)
    assert 0.0 <= pruned["metrics"]["accuracy"] <= 1.0 and "f1" in pruned["metrics"]
    plain = json.loads((out / "results" / "smoke" / "mrpc" / results[2]).read_text())
    assert plain["rc"] == 0 and plain["tool"] == "prunecli-plain"
    assert "--no_group_by_length" in plain["commands"][0] and "--no_group_by_length" not in pruned["commands"][0]
    assert "--group_by_length" in pruned["commands"][0]  # the tables' prunecli column: length-grouped batches
    assert plain["sparsity"]["pruned_layers"] == pytest.approx(0.5)
    text = (out / "results" / "README.md").read_text()
    assert "Quick smoke runs (`smoke`): NOT comparable" in text and "| 2:4 |" in text
    assert "Batching A/B" in text and "grouped higher on" in text
    assert "## Summary: every goal" in (out / "BENCHMARKS.md").read_text()


def test_holdout_selection_needs_every_cell_and_picks_the_best_mean():
    def run(tool, pattern, lr, acc):
        return {"kind": "prune", "tool": tool, "pattern": pattern, "rc": 0, "metrics": {"accuracy": acc},
                "hyperparameters": {"learning_rate": lr, "distill_loss_weight": 2}, "tool_report": {"n_eval": 366}}

    records = [run("prunecli", "4x1", 5e-5, 0.76), run("inc", "4x1", 5e-5, 0.72),
               run("prunecli", "4x1", 1e-4, 0.75), run("inc", "4x1", 1e-4, 0.74),
               run("prunecli", "4x1", 3e-4, 0.99)]  # 3e-4 lacks the INC cell: it cannot win
    [line, _] = render_results.selection(records)
    assert "**0.0001 / 2**" in line and "3e-04" not in line and "0.0003" not in line
    assert "0.0001 / 2: 0.7450, 5e-05 / 2: 0.7400" in line and "0.0027" in line
    assert render_results.selection([]) == []


def test_every_prunecli_import_of_the_bench_scripts_resolves():
    """The bench scripts import prunecli inside functions too; a module moved in the library must not leave a
    script that fails only when someone runs it."""
    import ast
    import importlib
    from pathlib import Path

    broken = []
    for script in sorted((Path(__file__).resolve().parents[2] / "bench").glob("*.py")):
        for node in ast.walk(ast.parse(script.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "prunecli":
                module = importlib.import_module(node.module) if importlib.util.find_spec(node.module) else None
                for alias in node.names:
                    if module is None or not (hasattr(module, alias.name) or
                                              importlib.util.find_spec(f"{node.module}.{alias.name}")):
                        broken.append(f"{script.name}:{node.lineno} from {node.module} import {alias.name}")
    assert not broken


def test_goal_lines_add_each_method_measured_at_the_reference_sizes():
    from bench import summary

    recs = [_record("dense", "prunecli", "dense", 42, 0.80), _record("dense", "prunecli", "dense", 43, 0.90),
            _record("prune", "prunecli", "4x1", 42, 0.72), _record("prune", "inc", "4x1", 42, 0.70),
            _record("prune", "prunecli+rewind", "4x1", 42, 0.79), _record("prune", "prunecli+rewind", "4x1", 43, 0.89),
            _record("prune", "prunecli+cool", "hn70", 42, 0.78),  # not a reference pattern: no goal line
            _record("prune", "prunecli+kd", "4x1", 42, 0.9, profile="screen")]  # not the reference's sizes
    lines = summary.goal_lines(recs)
    method = [line for line in lines if "lr rewound" in line]
    assert method == ["| relative drop <= 1% | MRPC | 4x1 at 90%, lr rewound at each event | -1.18% (0.8400 vs dense "
                      "0.8500) | 2 seeds | **not met** |",
                      "| prunecli >= INC 2.6 | MRPC | 4x1 at 90%, lr rewound at each event | 0.7900 vs INC 0.7000 | "
                      "1 seed | met |"]
    assert not any("cool-down" in line or "logit KD" in line for line in lines)
    assert summary.method_tools(recs) == ["prunecli+rewind"]


def test_the_committed_benchmarks_are_the_rendered_ones_and_short():
    """BENCHMARKS.md (at most ~40 KB, the summary of goals first) and bench/results/README.md (every run's tables)
    are what the renderer makes of the committed results."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    results = repo / "bench" / "results"
    records = render_results.load_results(results)
    committed = (repo / "BENCHMARKS.md").read_text(encoding="utf-8")
    hint = "re-render with: .venv/bin/python bench/render_results.py --readme"
    assert committed == render_results.render_markdown(records, results), hint
    assert (results / "README.md").read_text(encoding="utf-8") == render_results.render_runs(records), hint
    assert len(committed.encode("utf-8")) <= 40_000
    assert committed.startswith("# Benchmarks\n\n## Summary: every goal\n")


def test_setup_lists_machines_to_the_gib_and_each_environment_from_its_latest_record():
    """A newer run without INC does not hide the INC environment; 23.5 and 23.6 GiB are one machine kind."""
    def rec(when, cpu, gib, versions):
        return {"recorded_at": when, "machine": {"cpu": cpu, "cpu_count": 2, "memory_gib": gib},
                "versions": versions}

    inc = {"neural_compressor": "2.6", "torch": "2.13.0+cpu", "transformers": "5.23.0", "numpy": "1.26.4"}
    lines = render_results.facts([
        rec("2026-12-01", "AMD EPYC", 23.5, {"prunecli_env": {"git": "old"}, "inc_env": inc}),
        rec("2026-12-06", "Intel Xeon", 23.6, {"prunecli_env": {"git": "new"}}),
        rec("2026-12-02", "Intel Xeon", 23.5, {"prunecli_env": {"git": "mid"}}),
    ])
    assert lines[0].startswith("- Machines: AMD EPYC, 2 cores, 24 GiB (1 result(s)); Intel Xeon, 2 cores, 24 GiB "
                               "(2 result(s));")
    assert "(new)" in lines[1] and lines[2].startswith("- INC environment (`bench/.venv-inc`): neural-compressor 2.6")


def test_save_every_makes_prune_runs_resumable(tmp_path):
    from bench.run_glue_bench import build_parser, resolve_plan, resume_flags

    assert resume_flags(tmp_path / "out", None) == ["--overwrite_output_dir"]  # the default: each run afresh
    saving = ["--checkpointing_steps", "50", "--checkpoints_total_limit", "1"]
    assert resume_flags(tmp_path / "out", 50) == [*saving, "--overwrite_output_dir"]  # nothing saved yet
    state = tmp_path / "out" / "step_150"
    state.mkdir(parents=True)
    (state / "trainer_state.json").write_text(json.dumps({"completed_steps": 150}))
    assert resume_flags(tmp_path / "out", 50) == [*saving, "--resume_from_checkpoint", "latest"]  # never wiped
    assert resume_flags(tmp_path / "out", 50, force=True) == [*saving, "--overwrite_output_dir"]
    (tmp_path / "out" / "eval_results.json").write_text("{}")  # finished: its last state is not a stopped run
    assert resume_flags(tmp_path / "out", 50) == [*saving, "--overwrite_output_dir"]
    plan = resolve_plan(build_parser().parse_args(["--tasks", "mrpc", "--tools", "prunecli", "--save_every", "50"]),
                        model="m")
    assert plan.save_every == 50
    for bad in (["--save_every", "0"], ["--save_every", "50", "--tools", "prunecli,inc"]):
        with pytest.raises(SystemExit, match="--save_every"):
            resolve_plan(build_parser().parse_args(["--tasks", "mrpc", *bad]), model="m")
