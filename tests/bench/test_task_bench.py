"""bench/run_task_bench.py: the SQuAD / CoNLL profiles build the commands the issue's tables quote (nothing runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.run_task_bench import PROFILES, REPO, RUNS, SHARED, collect, command, main, portable
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
            negated = BY_NAME.get(name.removeprefix("no_"))
            assert name in BY_NAME or (negated and negated.negatable), (run, name)  # a declared setting


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
    assert "--no_eval_each_epoch" in command(final, "2:4", tmp_path)  # the full dev set, evaluated once
    assert "--no_eval_each_epoch" not in command(screen, "2:4", tmp_path) + command(final, "dense", tmp_path)
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


def test_collect_keeps_recorded_runs_whose_folders_are_gone(tmp_path):
    profile = PROFILES["smoke-conll"]
    dense = tmp_path / "smoke-conll" / "dense"
    dense.mkdir(parents=True)
    (dense / "eval_results.json").write_text(json.dumps({"f1": 0.6}))
    command_2in4 = collect(profile, tmp_path)["runs"]["2:4"]["command"]
    recorded = {"runs": {"dense": {"command": "old", "metrics": {"f1": 0.5}},
                         "2:4": {"command": command_2in4, "metrics": {"f1": 0.4}, "train_seconds": 9.0},
                         "4x1": {"command": "another command", "metrics": {"f1": 0.3}},
                         "2:4+long": {"command": "gone", "metrics": {"f1": 0.45}}}}
    runs = collect(profile, tmp_path, recorded)["runs"]
    assert runs["dense"]["metrics"] == {"f1": 0.6}  # found in the workdir: replaces the record
    assert runs["2:4"]["metrics"] == {"f1": 0.4} and runs["2:4"]["train_seconds"] == 9.0
    assert "metrics" not in runs["4x1"]  # recorded by another command: not this profile's run any more
    assert runs["2:4+long"]["metrics"] == {"f1": 0.45}


def test_recorded_commands_read_from_the_repository_root_and_match_older_absolute_records():
    absolute = f"prunecli prune --data_dir {SHARED}/squad --output_dir {REPO}/bench/work/tasks/p/dense"
    assert portable(absolute) == "prunecli prune --data_dir ../shared/squad --output_dir bench/work/tasks/p/dense"
    profile, workdir = PROFILES["smoke-conll"], REPO / "bench" / "work" / "tasks-test-portable"
    command_2in4 = " ".join(command(profile, "2:4", workdir))
    assert str(REPO) in command_2in4  # what runs is absolute; what is recorded is not
    runs = collect(profile, workdir, {"runs": {"2:4": {"command": command_2in4, "metrics": {"f1": 0.4}}}})["runs"]
    assert runs["2:4"]["metrics"] == {"f1": 0.4} and str(REPO) not in runs["2:4"]["command"]


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


@pytest.mark.parametrize("run", ["2:4+hidden", "4x1+long+cosine", "units+lr5e-5", "2:4+hidden+long+lr3e-5",
                                 "2:4+long+cool3"])
def test_levers_add_known_options(run, tmp_path):
    from bench.run_task_bench import LEVERS

    profile = PROFILES["conll-full"]
    argv = command(profile, run, tmp_path)
    options = _options(argv)
    assert all(name in BY_NAME for name in options), options
    levers = run.split("+")[1:]
    cooldown = next((int(lever[4:]) for lever in levers if lever.startswith("cool")), 1)
    assert options["cooldown_epochs"] == str(cooldown)
    assert options["num_train_epochs"] == str(profile.prune_epochs * (2 if "long" in levers else 1) + cooldown - 1)
    rate = next((lever[2:] for lever in levers if lever.startswith("lr")), None)
    assert float(options["learning_rate"]) == float(rate or profile.prune_learning_rate)
    for lever in levers:
        for option in LEVERS.get(lever, ())[::2]:
            assert option in argv
    assert options["output_dir"].endswith(run.replace(":", "in"))


@pytest.mark.parametrize("run", ["dense+long", "speed+hidden", "2:4+deep", "2:4+lrfast", "3:4", "2:4+cool0",
                                 "2:4+coolx"])
def test_unknown_runs_and_levers_are_refused(run, tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown"):
        command(PROFILES["conll-full"], run, tmp_path)
    with pytest.raises(SystemExit, match="--runs"):
        main(["--profile", "smoke-conll", "--workdir", str(tmp_path), "--runs", run, "--print"])


def test_holdout_profile_collects_lever_runs_and_renders_no_goal(tmp_path):
    from bench.run_task_bench import holdout_profile, render

    screen = holdout_profile(PROFILES["conll-full"], 0.1, tmp_path)
    assert screen.name == "conll-full-holdout0.1" and screen.holdout == 0.1
    assert holdout_profile(PROFILES["squad-cpu-8k-screen"], 0.1, tmp_path).max_eval_samples == 1000
    assert _options(command(screen, "dense", tmp_path))["data_dir"] == str(tmp_path / "data" / "conll2003-holdout0.1")
    for run, f1 in (("dense", 0.90), ("2:4", 0.88), ("2:4+hidden", 0.895), ("4x1+cosine", 0.85)):
        folder = tmp_path / screen.name / run.replace(":", "in")
        folder.mkdir(parents=True)
        (folder / "eval_results.json").write_text(json.dumps({"f1": f1}))
    (tmp_path / screen.name / "2in4+nonsense").mkdir()  # not a run: ignored
    result = collect(screen, tmp_path)
    assert result["holdout"] == 0.1
    assert result["runs"]["2:4+hidden"]["metrics"] == {"f1": 0.895} and "4x1+cosine" in result["runs"]
    assert not any("nonsense" in run for run in result["runs"])
    rows = [line for line in render([result]).splitlines() if line.startswith("| conll-full-holdout0.1")]
    assert [row.split(" | ")[1] for row in rows] == ["dense", "2:4", "2:4+hidden", "4x1+cosine"]
    assert "-0.56%" in rows[2] and rows[2].endswith("|  |  |  |  |")  # a screen: no goal, no verdict


def _conll(sentences: int) -> str:
    blocks = ["-DOCSTART- -X- -X- O"] + [f"Word{i} NNP B-PER\nsaid VBD O" for i in range(sentences)]
    return "\n\n".join(blocks) + "\n"


def test_holdout_folder_splits_conll_sentences_and_is_reused(tmp_path):
    from bench.task_holdout import holdout_folder

    src = tmp_path / "src"
    src.mkdir()
    (src / "train.txt").write_text(_conll(50))
    made = holdout_folder("conll2003", src, tmp_path / "out", 0.1)
    assert made["counts"] == {"unit": "sentence", "train": 45, "dev": 5}
    train = (tmp_path / "out" / "train.txt").read_text()
    dev = (tmp_path / "out" / "dev.txt").read_text()
    held = {line.split()[0] for line in dev.splitlines() if line.startswith("Word")}
    kept = {line.split()[0] for line in train.splitlines() if line.startswith("Word")}
    assert len(held) == 5 and not held & kept and len(held | kept) == 50 and "-DOCSTART-" not in dev
    stamp = (tmp_path / "out" / "train.txt").stat().st_mtime_ns
    assert holdout_folder("conll2003", src, tmp_path / "out", 0.1) == made  # same manifest: not rewritten
    assert (tmp_path / "out" / "train.txt").stat().st_mtime_ns == stamp
    assert holdout_folder("conll2003", src, tmp_path / "out", 0.2)["counts"]["dev"] == 10  # other share: redone


def test_holdout_folder_splits_squad_by_article(tmp_path):
    from bench.task_holdout import holdout_folder

    def article(k: int) -> dict:
        return {"title": f"A{k}", "paragraphs": [{"context": f"Text {k}.", "qas": [
            {"id": f"{k}-{j}", "question": "Which?", "answers": [{"text": "Text", "answer_start": 0}]}
            for j in range(3)]}]}

    src = tmp_path / "src"
    src.mkdir()
    (src / "train-v1.1-unambiguous.json").write_text(json.dumps({"version": "1.1",
                                                                 "data": [article(k) for k in range(20)]}))
    made = holdout_folder("squad", src, tmp_path / "out", 0.1)
    assert made["counts"] == {"unit": "article", "train": 54, "dev": 6, "articles": {"train": 18, "dev": 2}}
    train = json.loads((tmp_path / "out" / "train-v1.1.json").read_text())["data"]
    dev = json.loads((tmp_path / "out" / "dev-v1.1.json").read_text())["data"]
    assert not {a["title"] for a in train} & {a["title"] for a in dev}
    with pytest.raises(FileNotFoundError, match="train-v1.1.json"):
        holdout_folder("squad", tmp_path / "out" / "none", tmp_path / "x", 0.1)


def test_save_every_makes_runs_resumable_and_a_stopped_run_continues(tmp_path, capsys):
    log = tmp_path / "calls.jsonl"
    fake = tmp_path / "fake_prunecli.py"
    fake.write_text("import json, sys\n"
                    f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n")
    work = tmp_path / "work"
    stopped = work / "smoke-conll" / "2in4"
    (stopped / "step_40").mkdir(parents=True)
    (stopped / "step_40" / "trainer_state.json").write_text(json.dumps({"completed_steps": 40}))
    argv = ["--profile", "smoke-conll", "--workdir", str(work), "--runs", "dense,2:4",
            "--prunecli", f"python {fake}", "--save_every", "20"]
    assert main(argv) == 0
    dense, pruned = (json.loads(line) for line in log.read_text().splitlines())
    assert _options(dense)["checkpointing_steps"] == "20" and _options(dense)["checkpoints_total_limit"] == "1"
    assert "resume_from_checkpoint" not in _options(dense)  # nothing saved in its folder
    assert _options(pruned)["resume_from_checkpoint"] == "latest"  # continues from step_40
    assert dense[:-4] == command(PROFILES["smoke-conll"], "dense", work)[1:]  # the recipe itself is unchanged
    assert "# 2:4: --checkpointing_steps 20" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--save_every 0"):
        main([*argv[:-1], "0"])


def test_readme_block_shows_final_profiles_only():
    from bench.run_task_bench import README_BEGIN, README_END, readme_block

    def profile(name, holdout=None, f1=0.9, em=None):
        metrics = {"f1": f1, **({"exact_match": em} if em is not None else {})}
        return {"profile": name, "holdout": holdout, "runs": {"dense": {"metrics": metrics},
                                                             "2:4": {"metrics": {"f1": f1 * 0.99}}}}

    block = readme_block([profile("conll-full", f1=0.8), profile("conll-full-holdout0.1", holdout=0.1),
                          profile("smoke-squad"), profile("squad-cpu-8k", f1=0.7, em=0.6)])
    lines = block.splitlines()
    assert lines[0] == README_BEGIN and lines[-1] == README_END
    assert lines[4] == "| conll-full | 2:4 | 0.7920 |  | -1.00% |  |"
    assert lines[5] == "| squad-cpu-8k | dense | 0.7000 | 0.6000 |  |  |" and len(lines) == 8
    assert "Not measured yet" in readme_block([profile("smoke-conll"), {"profile": "squad-cpu-8k", "runs": {}}])
    levers = profile("conll-full", f1=0.8)
    levers["runs"].update({"2:4+long": {"metrics": {"f1": 0.795}}, "2:4+cool3": {"metrics": {"f1": 0.799}},
                           "4x1+long": {"metrics": {"f1": 0.7}}})
    runs = [line.split(" | ")[1] for line in readme_block([levers]).splitlines()[3:-1]]
    assert runs == ["dense", "2:4", "2:4+cool3", "4x1+long"]  # the best variant of each run only
