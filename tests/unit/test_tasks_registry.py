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


def test_a_data_folder_is_read_by_the_tasks_file_names_and_a_missing_file_is_named(tmp_path):
    import pytest

    from prunecli.errors import DataError
    from prunecli.tasks import load_ner_task, load_qa_task, ner, qa

    squad, conll = tmp_path / "squad", tmp_path / "conll"
    squad.mkdir(), conll.mkdir()
    write_squad(squad / "dev-v1.1.json", 3)
    write_conll(conll / "valid.txt", ner_sentences(3))  # the second of the dev names
    qa_data = load_qa_task(DataConfig(task_name="squad", data_dir=str(squad)), need_train=False)
    ner_data = load_ner_task(DataConfig(task_name="conll2003", data_dir=str(conll)), need_train=False)
    assert [len(d) for d in qa_data.eval_splits.values()] == [3] and qa_data.train is None
    assert [len(d) for d in ner_data.eval_splits.values()] == [3]
    assert str(conll / "valid.txt") in ner_data.split_sources.values()
    for load, folder, names in ((load_qa_task, squad, qa.TRAIN_NAMES), (load_ner_task, conll, ner.TRAIN_NAMES)):
        with pytest.raises(DataError) as caught:
            load(DataConfig(data_dir=str(folder)), need_train=True)
        assert f"{folder} has no training file" in str(caught.value)
        assert ", ".join(names) in caught.value.hint
    (squad / "dev-v1.1.json").unlink()
    with pytest.raises(DataError, match="has no evaluation file for question answering") as caught:
        load_qa_task(DataConfig(data_dir=str(squad)), need_train=False)
    assert "dev-v1.1.json, dev.json" in caught.value.hint
