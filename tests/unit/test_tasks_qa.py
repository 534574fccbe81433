"""prunecli.tasks.qa: reading SQuAD files, the sliding window, the n-best span search and SQuAD's EM/F1."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prunecli.errors import DataError
from prunecli.tasks import qa
from tests.task_data import squad_articles, write_squad, write_squad_lines


def test_read_squad_rows_and_flat_json_lines(tmp_path):
    rows = qa.read_squad(write_squad(tmp_path / "dev.json", 6))
    assert len(rows) == 6 and rows[0]["id"] == "q0"
    for row in rows:
        start, text = row["answers"]["answer_start"][0], row["answers"]["text"][0]
        assert row["context"][start:start + len(text)] == text
    lines = write_squad_lines(tmp_path / "hub.jsonl", 6)
    assert qa.read_squad(lines) == [{**r, "title": ""} for r in rows]
    assert qa.is_qa_file(lines) and qa.is_qa_file(tmp_path / "dev.json")


def test_a_file_without_data_key_names_file_and_key(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"version": "1.1", "articles": []}), encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.json: no `data` key"):
        qa.read_squad(path)


def test_an_answer_start_off_its_text_names_the_json_path(tmp_path):
    doc = squad_articles(8)
    doc["data"][1]["paragraphs"][2]["qas"][0]["answers"][0]["answer_start"] += 1
    path = tmp_path / "off.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(DataError, match=r"off\.json: data\[1\]\.paragraphs\[2\]\.qas\[0\]\.answers\[0\]: "
                                        r"answer_start \d+ points at"):
        qa.read_squad(path)


@pytest.fixture(scope="module")
def fast_tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    from tests.helpers import write_tokenizer

    folder = tmp_path_factory.mktemp("tok")
    write_tokenizer(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.is_fast
    return tokenizer


def test_windows_round_trip_answers_from_offsets(fast_tokenizer):
    """Every window holding the answer labels its tokens; their offsets give back the answer's text, and a window
    without it points at CLS. Long contexts make several windows per question."""
    rows = [r for a in squad_articles(8, context_words=40)["data"] for p in a["paragraphs"]
                                 for r in ({"context": p["context"], "question": q["question"],
                                            "answers": {"text": [q["answers"][0]["text"]],
                                                        "answer_start": [q["answers"][0]["answer_start"]]}}
                                           for q in p["qas"])]
    batch = {k: [r[k] for r in rows] for k in ("context", "question", "answers")}
    features = qa.train_features(batch, fast_tokenizer, 24, 8)
    inputs, examples, offsets = qa.eval_features(batch, fast_tokenizer, 24, 8)
    assert len(examples) > len(rows)  # several windows per question
    assert inputs["input_ids"] == features["input_ids"]
    found = set()
    for f, example in enumerate(examples):
        start, end = features["start_positions"][f], features["end_positions"][f]
        if start == 0:
            assert end == 0
            continue
        text = rows[example]["context"][offsets[f][start][0]:offsets[f][end][1]]
        assert text == rows[example]["answers"]["text"][0]
        found.add(example)
    assert found == set(range(len(rows)))


def test_best_answers_picks_the_best_valid_span_over_all_windows():
    context = "alpha beta gamma delta"
    offsets_a = [None, (0, 5), (6, 10), None]  # window 0: CLS, alpha, beta, SEP
    offsets_b = [None, (11, 16), (17, 22), None]  # window 1: gamma, delta
    start = [np.array([9.0, 1.0, 0.0, 9.0]), np.array([9.0, 3.0, 0.0, 0.0])]
    end = [np.array([9.0, 0.0, 1.0, 9.0]), np.array([9.0, 0.0, 2.5, 0.0])]
    # window 0's best valid pair: alpha..beta = 2.0; window 1's: gamma..delta = 5.5 (CLS and SEP never count)
    assert qa.best_answers([context], [0, 0], [offsets_a, offsets_b], start, end) == ["gamma delta"]
    # an answer longer than max_answer_length tokens is not allowed: then gamma alone (3.0 + 0.0)
    assert qa.best_answers([context], [0, 0], [offsets_a, offsets_b], start, end, max_answer_length=1) == ["gamma"]
    # end before start is never chosen
    assert qa.best_answers([context], [0], [offsets_a], [np.array([0, 0, 5.0, 0])], [np.array([0, 5.0, 0, 0])]) \
        == ["beta"]


def test_n_best_size_bounds_the_candidates_of_each_window():
    context = "alpha beta gamma delta"
    offsets = [None, (0, 5), (6, 10), None]  # CLS, alpha, beta, SEP
    start, end = [np.array([9.0, 1.0, 0.0, 9.5])], [np.array([9.0, 0.0, 1.0, 9.5])]
    # the single best start and end are SEP: no valid span among 1 x 1 candidates
    assert qa.best_answers([context], [0], [offsets], start, end, n_best_size=1) == [""]
    # 2 x 2 candidates are still CLS and SEP; among 3 x 3, alpha (1.0) .. beta (1.0) is the best valid span
    assert qa.best_answers([context], [0], [offsets], start, end, n_best_size=2) == [""]
    assert qa.best_answers([context], [0], [offsets], start, end, n_best_size=3) == ["alpha beta"]


@pytest.mark.parametrize(("prediction", "references", "em", "f1"), [
    ("The Eiffel Tower!", ["eiffel tower"], 1.0, 1.0),  # case, article, punctuation
    ("an apple", ["the apple"], 1.0, 1.0),
    ("big red apple", ["red apple"], 0.0, 0.8),  # precision 2/3, recall 1: F1 = 0.8
    ("red apple", ["green pear", "a red apple pie"], 0.0, 0.8),  # best over references: 2/2, 2/3
    ("nothing", ["red apple"], 0.0, 0.0),
    ("Denver Broncos", ["Denver Broncos", "Denver"], 1.0, 1.0),
])
def test_squad_scores_hand_worked(prediction, references, em, f1):
    scores = qa.squad_scores([prediction], [references])
    assert scores["exact_match"] == pytest.approx(em)
    assert scores["f1"] == pytest.approx(f1)


def test_squad_scores_average_over_questions():
    scores = qa.squad_scores(["a cat", "dog house"], [["the cat"], ["dog"]])
    assert scores == pytest.approx({"exact_match": 0.5, "f1": (1.0 + 2 / 3) / 2})


def test_a_stride_as_long_as_the_window_is_refused(fast_tokenizer):
    batch = {"question": ["good"], "context": ["the movie"], "answers": [{"text": ["movie"], "answer_start": [4]}]}
    with pytest.raises(DataError, match="--doc_stride 32 must be below --max_seq_length 32"):
        qa.train_features(batch, fast_tokenizer, 32, 32)
