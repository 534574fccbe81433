"""Two CPU processes (torchrun -> accelerate MULTI_CPU with gloo): data split, one log, one checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.helpers import sentiment_rows, write_rows


@pytest.mark.multiproc
def test_two_cpu_processes(tmp_path, tiny_bert_dir):
    train = write_rows(tmp_path / "train.csv", sentiment_rows(64, 1))
    dev = write_rows(tmp_path / "dev.csv", sentiment_rows(30, 2))
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "prunecli", "finetune", "--model_name_or_path", str(tiny_bert_dir), "--train_file", str(train),
               "--validation_file", str(dev), "--max_length", "32", "--per_device_train_batch_size", "8",
               "--num_train_epochs", "2", "--checkpointing_steps", "2", "--output_dir", str(out)]
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    resolved = json.loads((out / "run_args.json").read_text())["resolved"]
    assert resolved["num_processes"] == 2 and "MULTI_CPU" in resolved["distributed_type"]
    # 64 examples, 8 per process per step, 2 processes -> 4 optimizer steps per epoch
    assert resolved["update_steps_per_epoch"] == 4 and resolved["max_train_steps"] == 8
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == list(range(1, 9))  # written by the main process only
    assert [r["step"] for r in log if "eval" in r] == [4, 8]
    assert done.stdout.count("Fine-tuning summary") == 1  # the summary comes from the main process only
    assert {p.name for p in (out / "step_8").iterdir()} >= {"random_states_0.pkl", "random_states_1.pkl",
                                                            "trainer_state.json", "model.safetensors"}
    # evaluation gathered both processes' predictions without duplicates: it matches a one-process evaluation
    from typer.testing import CliRunner

    from prunecli.cli.app import app

    single = CliRunner().invoke(app, ["evaluate", str(out), "--validation_file", str(dev), "--max_length", "32",
                                      "--json"])
    assert single.exit_code == 0, single.output
    assert json.loads(single.stdout)["metrics"] == pytest.approx(json.loads((out / "eval_results.json").read_text()))
