"""The models room (`prunecli.models`): what a model path names, the load errors that name it, the
classifier and tokenizer loads, and the data a checkpoint recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from prunecli.config import DataConfig
from prunecli.errors import CheckpointError
from prunecli.models.folders import check_model_folder, weight_files, with_recorded_data
from prunecli.models.loading import load_checkpoint_tokenizer, load_classifier
from tests.helpers import make_tiny_bert

REPO = Path(__file__).resolve().parents[2]


def test_a_path_that_cannot_be_a_model_is_named_with_what_to_pass_instead(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="is a file") as err:
        check_model_folder(str(tmp_path / "model.safetensors"), str(tmp_path / "model.safetensors"))
    assert err.value.hint == f"pass its folder: {tmp_path}"
    with pytest.raises(CheckpointError, match="does not exist") as err:
        check_model_folder(str(tmp_path / "nope"), str(tmp_path / "nope"))
    assert "alias minilm" in err.value.hint
    with pytest.raises(CheckpointError, match="no config.json"):
        check_model_folder(str(tmp_path), str(tmp_path))
    check_model_folder("org/name", "org/name")  # a hub id is transformers' to judge


def test_load_classifier_names_the_path_it_could_not_load(tmp_path):
    folder = make_tiny_bert(tmp_path / "bert")
    model, facts = load_classifier(folder)
    assert not model.training and facts["architecture"] == "BertForSequenceClassification"
    assert facts["new_head"] is False and weight_files(folder) == [folder / "model.safetensors"]
    with pytest.raises(CheckpointError, match="is a file"):
        load_classifier(folder / "model.safetensors")
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match=f"cannot load a sequence classifier from {folder}") as err:
        load_classifier(folder)
    assert "truncated or corrupted" in err.value.hint


def test_a_folder_without_tokenizer_files_has_no_tokenizer(tmp_path):
    """transformers would build an empty tokenizer from the config's model type; a folder without tokenizer files
    has none, which is an error only when the caller needs one."""
    folder = make_tiny_bert(tmp_path / "bert")
    assert load_checkpoint_tokenizer(str(folder), required=True).convert_tokens_to_ids("good") > 4
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)
    assert load_checkpoint_tokenizer(str(folder), required=False) is None
    with pytest.raises(CheckpointError, match="has no tokenizer"):
        load_checkpoint_tokenizer(str(folder), required=True)


def test_the_data_a_checkpoint_recorded_fills_only_what_the_user_left_out(tmp_path):
    (tmp_path / "run_args.json").write_text(json.dumps({"data": {"task_name": "sst2", "max_length": 64}}))
    recorded = with_recorded_data(str(tmp_path), DataConfig())
    assert recorded.task_name == "sst2" and recorded.max_length == 64
    given = DataConfig(validation_file="dev.csv")
    assert with_recorded_data(str(tmp_path), given) is given  # data options given: the recorded ones are unused
    assert with_recorded_data(str(tmp_path / "elsewhere"), DataConfig()).task_name is None


def test_import_prunecli_stays_torch_free_and_the_models_room_is_lazy():
    script = ("import sys\nimport prunecli, prunecli.models, prunecli.models.folders\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_tokenizer_length_is_clamped_to_the_models_positions():
    """One clamp for the checkpoint, benchmark and exported-folder loaders: never more tokens than positions
    (RoBERTa's two reserved positions taken off); a shorter limit and a missing tokenizer are left alone."""
    from types import SimpleNamespace

    from prunecli.models.loading import clamp_to_positions

    bert = SimpleNamespace(max_position_embeddings=512, model_type="bert")
    roberta = SimpleNamespace(max_position_embeddings=514, model_type="roberta")
    unbounded = SimpleNamespace(model_type="bert")
    for config, limit, expected in ((bert, int(1e30), 512), (roberta, int(1e30), 512), (bert, None, 512),
                                    (bert, 128, 128), (unbounded, 1000, 1000)):
        tokenizer = SimpleNamespace(model_max_length=limit)
        clamp_to_positions(tokenizer, config)
        assert tokenizer.model_max_length == expected, (config, limit)
    clamp_to_positions(None, bert)  # no tokenizer: nothing to do
