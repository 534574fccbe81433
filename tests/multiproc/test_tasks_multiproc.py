"""Question answering and token classification on two CPU processes: training and pruning with distillation, and
an evaluation whose gathered per-token outputs (padded across processes, duplicates dropped) score what one process
scores."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.task_data import write_conll_folder, write_squad_folder


@pytest.mark.multiproc
@pytest.mark.parametrize("task", ["squad", "conll2003"])
def test_two_processes_train_and_score_like_one(tmp_path, tiny_bert_dir, task):
    if task == "squad":  # 15 questions of long contexts: an odd number of windows of several lengths
        data = write_squad_folder(tmp_path / "data", n_train=32, n_dev=15, context_words=30)
        extra = ["--max_seq_length", "32", "--doc_stride", "8"]
    else:
        data = write_conll_folder(tmp_path / "data", n_train=32, n_dev=15)
        extra = []
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "prunecli", "finetune", "--model_name_or_path", str(tiny_bert_dir), "--task_name", task,
               "--data_dir", str(data), *extra, "--per_device_train_batch_size", "4", "--per_device_eval_batch_size",
               "4", "--learning_rate", "3e-3", "--num_train_epochs", "2", "--output_dir", str(out)]
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert json.loads((out / "run_args.json").read_text())["resolved"]["num_processes"] == 2

    from typer.testing import CliRunner

    from prunecli.cli.app import app

    single = CliRunner().invoke(app, ["evaluate", str(out), "--per_device_eval_batch_size", "3", "--json"])
    assert single.exit_code == 0, single.output
    assert json.loads(single.stdout)["metrics"] == pytest.approx(json.loads((out / "eval_results.json").read_text()))

    # then 2:4 with logit distillation from it on the two processes (the teacher cache is per process)
    sparse = tmp_path / "sparse"
    prune = [*command[:command.index("finetune")], "prune", "--model_name_or_path", str(out), "--task_name", task,
             "--data_dir", str(data), *extra, "--per_device_train_batch_size", "4", "--per_device_eval_batch_size",
             "4", "--learning_rate", "3e-3", "--num_train_epochs", "2", "--pruning_pattern", "2:4",
             "--target_sparsity", "0.5", "--distill_type", "logits_kl", "--distill_loss_weight", "1",
             "--output_dir", str(sparse)]
    done = subprocess.run(prune, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((sparse / "sparsity_report.json").read_text())
    assert report["model"]["pruned"]["sparsity"] == pytest.approx(0.5)
    assert report["task"] == ("question_answering" if task == "squad" else "token_classification")
    single = CliRunner().invoke(app, ["evaluate", str(sparse), "--json"])
    assert single.exit_code == 0, single.output
    assert json.loads(single.stdout)["metrics"] == pytest.approx(
        json.loads((sparse / "eval_results.json").read_text()))
