"""prunecli.tasks.ner: reading CoNLL files, IOB1 -> IOB2, first-sub-token labels and seqeval's entity F1."""

from __future__ import annotations

import json

import pytest

from prunecli.errors import DataError
from prunecli.tasks import ner
from tests.task_data import ner_sentences, write_conll


def test_read_conll_four_and_two_columns_and_docstart(tmp_path):
    sentences = ner_sentences(5)
    for columns in (4, 2):
        tokens, tags = ner.read_conll(write_conll(tmp_path / f"c{columns}.txt", sentences, columns=columns,
                                                  docstart=True))
        assert tokens == [[w for w, _ in s] for s in sentences]
        assert tags == [[t for _, t in s] for s in sentences]


def test_read_json_lines(tmp_path):
    path = tmp_path / "ner.jsonl"
    path.write_text(json.dumps({"tokens": ["a", "b"], "ner_tags": ["B-X", "I-X"]}) + "\n", encoding="utf-8")
    assert ner.read_conll(path) == ([["a", "b"]], [["B-X", "I-X"]])
    assert ner.is_conll_file(path) and not ner.is_conll_file(tmp_path / "x.csv")


def test_iob1_file_is_converted_to_iob2(tmp_path):
    path = tmp_path / "iob1.txt"
    path.write_text("EU I-ORG\nrejects O\nGerman I-MISC\ncall O\n\nPeter I-PER\nBlackburn I-PER\nJohn B-PER\n",
                    encoding="utf-8")
    _, tags = ner.read_conll(path)
    assert tags == [["B-ORG", "O", "B-MISC", "O"], ["B-PER", "I-PER", "B-PER"]]


def test_iob1_to_iob2_by_hand():
    assert ner.iob1_to_iob2(["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG"]) == \
        ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG"]


def test_a_line_of_one_column_names_file_and_line(tmp_path):
    path = tmp_path / "one.txt"
    path.write_text("EU B-ORG\nrejects O\n\nlonely\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"one\.txt, line 4: one column"):
        ner.read_conll(path)


def test_tags_neither_iob1_nor_iob2_name_file_and_lines(tmp_path):
    path = tmp_path / "mixed.txt"
    # line 2: I-PER starts an entity (not IOB2); line 4: B-LOC after O (not IOB1)
    path.write_text("a O\nb I-PER\nc O\nd B-LOC\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"mixed\.txt: the tags are neither IOB1 nor IOB2: line 2 .* line 4"):
        ner.read_conll(path)


def test_a_tag_of_another_scheme_names_its_line(tmp_path):
    path = tmp_path / "bilou.txt"
    path.write_text("a O\nb U-PER\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bilou\.txt, line 2: tag 'U-PER'"):
        ner.read_conll(path)


def test_label_list_is_stable():
    assert ner.label_list([["I-PER", "B-LOC"], ["O", "B-PER", "I-LOC"]]) == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def test_first_sub_token_carries_the_label():
    from transformers import BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "new", "york", "##er", "is", "big"]
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(words)})
    label2id = {"O": 0, "B-LOC": 1, "I-LOC": 2}
    batch = {"tokens": [["new", "yorker", "is", "big"]], "ner_tags": [["B-LOC", "I-LOC", "O", "O"]]}
    first = ner.tokenize_sentences(batch, tokenizer, label2id, 32)
    # [CLS] new york ##er is big [SEP]
    assert first["labels"] == [[-100, 1, 2, -100, 0, 0, -100]]
    every = ner.tokenize_sentences({"tokens": [["yorker"]], "ner_tags": [["B-LOC"]]}, tokenizer, label2id, 32,
                                   label_all_tokens=True)
    assert every["labels"] == [[-100, 1, 2, -100]]  # the word's later sub-tokens get its I- tag
    # a truncated sentence: words cut off are predicted O
    assert ner.word_predictions([0, 1, 2, 0], [-100, 1, 2, -100], {0: "O", 1: "B-LOC", 2: "I-LOC"}, 4) == \
        ["B-LOC", "I-LOC", "O", "O"]


def test_entity_scores_hand_worked():
    references = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    predictions = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O"]]
    # 3 true entities, 3 predicted, 2 right: P = R = F1 = 2/3; PER 1.0, ORG 2/3 (P 1/2, R 1), LOC 0
    scores = ner.entity_scores(predictions, references)
    assert scores["precision"] == pytest.approx(2 / 3)
    assert scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(2 / 3)
    assert scores["f1_PER"] == pytest.approx(1.0)
    assert scores["f1_ORG"] == pytest.approx(2 / 3)
    assert scores["f1_LOC"] == pytest.approx(0.0)
    # a wrong boundary is a miss (entity level, not token level)
    assert ner.entity_scores([["B-PER", "O"]], [["B-PER", "I-PER"]])["f1"] == 0.0


def test_per_type_metrics_are_told_apart():
    assert ner.is_per_type_metric("f1_PER") and ner.is_per_type_metric("f1_MISC")
    assert not ner.is_per_type_metric("f1") and not ner.is_per_type_metric("f1_mm")


def test_class_ids_instead_of_tag_names_are_refused_with_a_hint(tmp_path):
    path = tmp_path / "hub.jsonl"
    path.write_text(json.dumps({"tokens": ["EU", "rejects"], "ner_tags": [3, 0]}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"hub\.jsonl, line 1: tag '3'") as err:
        ner.read_conll(path)
    assert "not class ids" in err.value.hint


def test_a_max_length_above_the_tokenizer_limit_is_lowered_for_ner_too(tmp_path, caplog):
    from transformers import BertTokenizerFast

    from prunecli.config import DataConfig
    from prunecli.data.sources import load_task_data
    from prunecli.data.tokenize import tokenize_task_data
    from tests.task_data import write_conll_folder

    folder = write_conll_folder(tmp_path / "conll", n_train=8, n_dev=4)
    cfg = DataConfig(task_name="conll2003", data_dir=str(folder), max_length=4096)
    data = load_task_data(cfg, need_train=False)
    words = sorted({w for ds in data.eval_splits.values() for s in ds["tokens"] for w in s})
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *words])}
    tokenizer = BertTokenizerFast(vocab=vocab, model_max_length=6)
    label2id = {label: i for i, label in enumerate(data.label_list)}
    with caplog.at_level("WARNING", logger="prunecli"):
        tokenized = tokenize_task_data(data, tokenizer, cfg, label2id)
    assert tokenized.max_length == 6 and "above this tokenizer's limit" in caplog.text
    assert max(len(ids) for ds in tokenized.eval_splits.values() for ids in ds["input_ids"]) <= 6
