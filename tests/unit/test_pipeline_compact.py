"""The compact pipeline (`prunecli.pipelines.compact`): a pruned checkpoint in, a smaller checkpoint with the same
logits out, written whole or not at all; and `prunecli compact`'s errors (exit 2, one message, no traceback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from prunecli.errors import UserError
from prunecli.pipelines.compact import REPORT_FILE, compact_checkpoint
from tests.helpers import make_tiny_bert, umask, wrong_modes

pytestmark = pytest.mark.usefixtures("one_torch_thread")
REPO = Path(__file__).resolve().parents[2]
STRUCTURE = {"pruning_type": "magnitude", "pruning_configs": [
    {"pattern": "head", "target_sparsity": 0.5}, {"pattern": "neuron", "target_sparsity": 0.5}]}


@pytest.fixture(scope="module")
def sparse_dir(tmp_path_factory) -> Path:
    """A tiny BERT with half its heads and neurons pruned whole (2 layers x 4 heads x 64 neurons), saved with
    its tokenizer and a run file that compact carries over (do not modify it)."""
    from transformers import BertForSequenceClassification

    from prunecli.sparsity.pruner import Pruner

    folder = make_tiny_bert(tmp_path_factory.mktemp("sparse"), num_attention_heads=4, intermediate_size=64)
    model = BertForSequenceClassification.from_pretrained(folder)
    Pruner(model, STRUCTURE).on_train_begin()
    model.save_pretrained(folder)
    (folder / "prune_recipe.json").write_text(json.dumps(STRUCTURE))
    return folder


def _leftovers(parent: Path, name: str) -> list[Path]:
    """The output folder and any staging folder of it (`.NAME.staging-*`) under `parent`."""
    return [p for p in parent.iterdir() if p.name == name or p.name.startswith(f".{name}.")]


def test_compact_checkpoint_writes_a_smaller_checkpoint_with_the_same_logits(sparse_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification

    out = tmp_path / "small"
    report = compact_checkpoint(sparse_dir, out, check_examples=8)
    assert report["heads_removed"] == 4 and report["neurons_removed"] == 64
    assert report["params_after"] < report["params_before"]
    assert report["max_logit_difference"] <= report["tolerance"]
    assert report["checked_on"] == "8 random token sequences (no data given)"
    # sizes in MB = 10**6 bytes, as benchmark and the demo report them
    for key, folder in (("file_mb_before", sparse_dir), ("file_mb_after", out)):
        assert report[key] == round((folder / "model.safetensors").stat().st_size / 1e6, 3), key
    assert json.loads((out / REPORT_FILE).read_text()) == report  # the report on disk is the one returned
    assert (out / "prune_recipe.json").read_text() == json.dumps(STRUCTURE)  # run files carried over
    assert (out / "tokenizer_config.json").is_file() and "Compacted with prunecli" in (out / "README.md").read_text()

    sparse = AutoModelForSequenceClassification.from_pretrained(sparse_dir).eval()
    small = AutoModelForSequenceClassification.from_pretrained(out).eval()
    batch = {"input_ids": torch.tensor([[2, 5, 9, 13, 3, 0]]), "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 0]])}
    with torch.inference_mode():
        assert torch.allclose(small(**batch).logits, sparse(**batch).logits, atol=1e-5)

    with pytest.raises(UserError, match="is not empty"):  # never over a folder without overwrite
        compact_checkpoint(sparse_dir, out, check_examples=8)
    assert compact_checkpoint(sparse_dir, out, overwrite=True, check_examples=4)["checked_on"].startswith("4 ")


def test_a_compacted_folder_is_readable_by_others(sparse_dir, tmp_path):
    with umask(0o022):
        compact_checkpoint(sparse_dir, tmp_path / "out", check_examples=2)
    assert (tmp_path / "out" / "model.safetensors").is_file() and wrong_modes(tmp_path / "out") == {}


def test_compact_checkpoint_runs_with_no_cli_module_imported(sparse_dir, tmp_path):
    """The library's pipeline does the whole compaction itself: no `prunecli.cli` module is ever imported."""
    out = tmp_path / "small"
    script = ("import sys\n"
              "from prunecli.pipelines.compact import compact_checkpoint\n"
              f"report = compact_checkpoint({str(sparse_dir)!r}, {str(out)!r}, check_examples=4)\n"
              "print(report['heads_removed'], sorted(m for m in sys.modules if m.startswith('prunecli.cli')))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[-2] == "4 []"
    assert (out / "model.safetensors").is_file()


def test_a_model_with_nothing_to_remove_is_named_and_nothing_is_written(tmp_path):
    dense = make_tiny_bert(tmp_path / "dense")
    with pytest.raises(UserError, match="nothing to compact") as err:
        compact_checkpoint(dense, tmp_path / "out", check_examples=2)
    assert str(dense) in err.value.message and "head or neuron pattern" in err.value.hint
    assert not _leftovers(tmp_path, "out")


def test_a_weights_file_is_refused_with_its_folder_in_the_hint(sparse_dir, tmp_path):
    with pytest.raises(UserError, match="is a file") as err:
        compact_checkpoint(sparse_dir / "model.safetensors", tmp_path / "out")
    assert "does not exist" not in err.value.message and str(sparse_dir) in err.value.hint
    assert not _leftovers(tmp_path, "out")


def test_a_failing_weights_writer_leaves_nothing_behind(sparse_dir, tmp_path, monkeypatch):
    """The safetensors writer fails (it raises its own SafetensorError, not an OSError, on a full disk)."""
    import transformers.modeling_utils
    from safetensors import SafetensorError

    def full_disk(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", full_disk)
    with pytest.raises(UserError) as err:
        compact_checkpoint(sparse_dir, tmp_path / "out", check_examples=2)
    assert err.value.message == (f"cannot write the compacted checkpoint to {tmp_path / 'out'}: No space left on "
                                 "device; nothing was written.")
    assert not _leftovers(tmp_path, "out")


def test_compact_under_a_file_size_limit_exits_2_with_one_message(sparse_dir, tmp_path):
    """A real write failure: `ulimit -f` lets the tokenizer files through but not the weights. The command
    exits 2 with one message and no traceback, and neither the output nor its staging folder is left."""
    out = tmp_path / "out"
    command = f"ulimit -f 24 && exec {sys.executable} -m prunecli compact {sparse_dir} --output_dir {out} " \
              "--check_examples 2"
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
                               "PYTHONDONTWRITEBYTECODE": "1"})
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-2000:]
    assert "Traceback" not in output and output.count("cannot write the compacted checkpoint") == 1
    assert "File too large; nothing was written" in output
    assert not _leftovers(tmp_path, "out")


def test_check_examples_below_one_is_refused(sparse_dir, tmp_path):
    with pytest.raises(UserError, match="--check_examples must be at least 1"):
        compact_checkpoint(sparse_dir, tmp_path / "out", check_examples=0)


def test_a_checkpoint_without_a_tokenizer_is_checked_on_random_ids_and_saved_without_one(tmp_path):
    from transformers import BertForSequenceClassification

    from prunecli.config import DataConfig

    folder = make_tiny_bert(tmp_path / "bare", num_attention_heads=4)
    model = BertForSequenceClassification.from_pretrained(folder)
    with torch.no_grad():
        model.bert.encoder.layer[0].output.dense.weight[:, :10].zero_()  # 10 neurons of layer 0
    model.save_pretrained(tmp_path / "model_only")
    report = compact_checkpoint(tmp_path / "model_only", tmp_path / "out", check_examples=2)
    assert report["neurons_removed"] == 10 and not (tmp_path / "out" / "tokenizer_config.json").exists()
    # data options need the tokenizer: a checkpoint without one is then an error naming it
    with pytest.raises(UserError, match="model_only has no tokenizer"):
        compact_checkpoint(tmp_path / "model_only", tmp_path / "out2", data=DataConfig(task_name="sst2"))


def test_the_command_reports_a_weights_file_and_a_dense_model_with_exit_2(sparse_dir, tmp_path):
    from typer.testing import CliRunner

    from prunecli.cli.app import app

    runner = CliRunner()
    weights_file = str(sparse_dir / "model.safetensors")
    weights = runner.invoke(app, ["compact", weights_file, "--output_dir", str(tmp_path / "a")])
    assert weights.exit_code == 2 and "is a file" in weights.output and "does not exist" not in weights.output
    dense = make_tiny_bert(tmp_path / "dense")
    nothing = runner.invoke(app, ["compact", str(dense), "--output_dir", str(tmp_path / "b")])
    assert nothing.exit_code == 2 and f"nothing to compact in {dense}" in nothing.output
    assert "Traceback" not in weights.output + nothing.output
    assert not _leftovers(tmp_path, "a") and not _leftovers(tmp_path, "b")
