"""bench/run_task_bench.py: the SQuAD / CoNLL profiles build the commands the issue's tables quote (nothing runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.run_task_bench import PROFILES, RUNS, collect, command, main
from prunecli.settings import BY_NAME


def _options(argv: list[str]) -> dict[str, str | None]:
    out, i = {}, 0
    while i < len(argv):
        if argv[i].startswith("--"):
            value = argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("--") else None
            out[argv[i][2:]] = value
        i += 1
    return out


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_run_builds_known_options(profile, tmp_path):
    for run in RUNS:
        argv = command(PROFILES[profile], run, tmp_path)
        assert argv[0] == "prunecli"
        if run == "speed":
            assert argv[1] == "benchmark"
            continue
        for name in _options(argv):
            assert name in BY_NAME, (run, name)  # every option is a declared setting


def test_squad_profile_sizes_windows_and_patterns(tmp_path):
    screen, final = PROFILES["squad-cpu-8k-screen"], PROFILES["squad-cpu-8k"]
    dense = _options(command(final, "dense", tmp_path))
    assert dense["max_train_samples"] == "8000" and "max_eval_samples" not in dense  # the full dev set
    assert dense["max_seq_length"] == "384" and dense["doc_stride"] == "128" and dense["seed"] == "42"
    assert _options(command(screen, "dense", tmp_path))["max_eval_samples"] == "1000"
    four = _options(command(final, "4x1", tmp_path))
    assert four["pruning_pattern"] == "4x1" and four["target_sparsity"] == "0.8"
    assert four["model_name_or_path"] == str(tmp_path / "squad-cpu-8k" / "dense")
    assert _options(command(final, "2:4", tmp_path))["target_sparsity"] == "0.5"
    units = command(final, "units", tmp_path)
    assert "--compact" in units and Path(_options(units)["recipe"]).name == "heads_neurons.json"
    speed = _options(command(final, "speed", tmp_path))
    assert speed["batch_sizes"] == "32" and speed["sequence_length"] == "384"
    assert _options(command(PROFILES["conll-full"], "speed", tmp_path))["sequence_length"] == "128"


def test_print_runs_nothing_and_collect_reads_results(tmp_path, capsys):
    assert main(["--profile", "smoke-conll", "--workdir", str(tmp_path), "--print"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == len(RUNS) and printed[0].startswith("prunecli finetune")
    assert not any(tmp_path.iterdir())
    dense = tmp_path / "smoke-conll" / "dense"
    dense.mkdir(parents=True)
    (dense / "eval_results.json").write_text(json.dumps({"f1": 0.5}))
    result = collect(PROFILES["smoke-conll"], tmp_path)
    assert result["runs"]["dense"]["metrics"] == {"f1": 0.5} and "metrics" not in result["runs"]["2:4"]


def test_render_compares_with_dense_checks_goals_and_shows_inc_rows():
    from bench.run_task_bench import render

    speed = {"benchmark": {"models": [{"cases": {"b32 s384": {"pytorch": {"speedup": 1.0}}}},
                                      {"cases": {"b32 s384": {"pytorch": {"speedup": 2.4},
                                                              "onnxruntime": {"speedup": 2.2}}}}]}}
    result = {"profile": "squad-cpu-8k", "runs": {
        "dense": {"metrics": {"exact_match": 0.70, "f1": 0.80}},
        "2:4": {"metrics": {"exact_match": 0.69, "f1": 0.796}},  # -0.5%: within 1%
        "4x1": {"metrics": {"exact_match": 0.60, "f1": 0.70}},  # -12.5%: not within 3%
        "units": {"metrics": {"exact_match": 0.68, "f1": 0.788}},  # -1.5% at 2.4x: met
        "speed": speed}}
    lines = render([result]).splitlines()
    rows = {line.split(" | ")[1]: line for line in lines if line.startswith("| squad-cpu-8k")}
    assert "-0.50%" in rows["2:4"] and rows["2:4"].endswith("| within 1% | yes |  |  |")
    assert "-12.50%" in rows["4x1"] and "| no |" in rows["4x1"]
    assert "| within 2%, 2x | yes | 2.40x | 2.20x |" in rows["units"]
    assert "| BERT-mini | 4x1, 80% | 0.7662 | 0.7617 |" in lines


def test_benchmarks_md_gains_the_tasks_section_from_collected_profiles(tmp_path):
    """render_results.tasks_section: nothing without bench/results/tasks, else run_task_bench's table with the
    measured F1 and its change against dense."""
    import json

    from bench import render_results

    assert render_results.tasks_section(tmp_path) == []
    (tmp_path / "tasks").mkdir()
    collected = {"profile": "conll-full", "task": "conll2003", "runs": {
        "dense": {"metrics": {"f1": 0.9090}}, "2:4": {"metrics": {"f1": 0.9000}}}}
    (tmp_path / "tasks" / "conll-full.json").write_text(json.dumps(collected))
    text = "\n".join(render_results.tasks_section(tmp_path))
    assert text.startswith("## Other tasks: question answering and NER")
    assert "| conll-full | 2:4 |  | 0.9000 | -0.99% | within 1% | yes |" in text
