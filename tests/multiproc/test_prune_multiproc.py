"""`prunecli prune` on two CPU processes: every rank ends with identical masks; one checkpoint is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO
from tests.helpers import write_glue_sst2_folder


@pytest.mark.multiproc
def test_two_processes_hold_identical_masks(tmp_path, tiny_bert_dir):
    data = write_glue_sst2_folder(tmp_path / "SST-2", n_train=64, n_dev=16)
    out, masks = tmp_path / "out", tmp_path / "masks"
    masks.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "MASKS_DIR": str(masks)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(REPO / "tests" / "multiproc" / "prune_rank_masks.py"), "prune",
               "--model_name_or_path", str(tiny_bert_dir),
               "--task_name", "sst2", "--data_dir", str(data), "--per_device_train_batch_size", "8",
               "--learning_rate", "1e-3", "--num_train_epochs", "3", "--sparsity_warm_epochs", "1",
               "--cooldown_epochs", "1", "--target_sparsity", "0.9", "--pruning_pattern", "4x1",
               "--pruning_frequency", "1", "--distill_loss_weight", "1", "--output_dir", str(out)]
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    rank0 = torch.load(masks / "rank0.pt", weights_only=True)
    rank1 = torch.load(masks / "rank1.pt", weights_only=True)
    assert rank0.keys() == rank1.keys() and len(rank0) == 12
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    # 64 examples, 8 per process, 2 processes -> 4 optimizer steps per epoch; start 4, end 8
    steps = json.loads((out / "prune_recipe.json").read_text())["computed_from_epochs"]
    assert (steps["update_steps_per_epoch"], steps["start_step"], steps["end_step"]) == (4, 4, 8)
    report = json.loads((out / "sparsity_report.json").read_text())
    assert report["model"]["pruned"]["sparsity"] == pytest.approx(0.9, abs=0.01)
    assert done.stdout.count("Pruning plan") == 1  # printed by the main process only
