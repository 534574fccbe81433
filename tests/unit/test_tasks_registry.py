"""prunecli.tasks: the task type from --task_name or from the files, and a model's task from its architecture."""

from __future__ import annotations

import json
import sys

from prunecli.config import DataConfig
from prunecli.tasks import (
    CLASSIFICATION,
    QUESTION_ANSWERING,
    TOKEN_CLASSIFICATION,
    folder_task_type,
    model_task_type,
    task_type_of,
)
from tests.helpers import sentiment_rows, write_rows
from tests.task_data import ner_sentences, write_conll, write_squad


def test_task_names_choose_the_type():
    assert task_type_of(DataConfig(task_name="squad")) == QUESTION_ANSWERING
    assert task_type_of(DataConfig(task_name="SQuAD-v1.1")) == QUESTION_ANSWERING
    assert task_type_of(DataConfig(task_name="conll2003")) == TOKEN_CLASSIFICATION
    assert task_type_of(DataConfig(task_name="ner")) == TOKEN_CLASSIFICATION
    assert task_type_of(DataConfig(task_name="mrpc")) == CLASSIFICATION


def test_files_choose_the_type_without_a_task_name(tmp_path):
    squad = write_squad(tmp_path / "dev.json", 4)
    conll = write_conll(tmp_path / "dev.txt", ner_sentences(3))
    lines = tmp_path / "ner.jsonl"
    lines.write_text(json.dumps({"tokens": ["a"], "ner_tags": ["O"]}) + "\n", encoding="utf-8")
    table = write_rows(tmp_path / "dev.csv", sentiment_rows(4))
    rows = write_rows(tmp_path / "rows.jsonl", sentiment_rows(4))
    assert task_type_of(DataConfig(validation_file=str(squad))) == QUESTION_ANSWERING
    assert task_type_of(DataConfig(train_file=str(conll), validation_file=str(conll))) == TOKEN_CLASSIFICATION
    assert task_type_of(DataConfig(validation_file=str(lines))) == TOKEN_CLASSIFICATION
    assert task_type_of(DataConfig(validation_file=str(table))) == CLASSIFICATION
    assert task_type_of(DataConfig(validation_file=str(rows))) == CLASSIFICATION


def test_a_model_task_comes_from_its_architecture(tmp_path):
    class Config:
        architectures = ["CompactBertForTokenClassification"]

    assert model_task_type(Config()) == TOKEN_CLASSIFICATION
    assert model_task_type(type("BertForQuestionAnswering", (), {})()) == QUESTION_ANSWERING
    assert model_task_type(object()) is None
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertForQuestionAnswering"]}))
    assert folder_task_type(str(tmp_path)) == QUESTION_ANSWERING
    assert folder_task_type(str(tmp_path / "nothing")) == CLASSIFICATION


def test_the_registry_imports_no_torch():
    import subprocess

    code = "import prunecli.tasks, sys; print('torch' in sys.modules, 'transformers' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]
