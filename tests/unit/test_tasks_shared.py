"""Opt-in slow tests on the genuine data in ../shared (SQuAD v1.1, CoNLL-2003) and the MiniLM tokenizer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from prunecli.tasks import ner, qa
from tests.conftest import REPO, minilm_available

SHARED = Path(os.environ.get("PRUNECLI_SHARED_DIR", REPO.parent / "shared"))  # a git worktree names it
SQUAD = SHARED / "squad"
CONLL = SHARED / "conll2003"
pytestmark = pytest.mark.slow


@pytest.mark.skipif(not (SQUAD / "dev-v1.1.json").is_file(), reason="needs ../shared/squad")
def test_squad_dev_and_training_files_read_whole():
    dev = qa.read_squad(SQUAD / "dev-v1.1.json")
    assert len(dev) == 10_570
    assert all(1 <= len(r["answers"]["text"]) <= 6 for r in dev)
    train = qa.read_squad(SQUAD / "train-v1.1-unambiguous.json")
    assert len(train) == 78_161
    # the official dev answers are their own predictions: EM = F1 = 1
    assert qa.squad_scores([r["answers"]["text"][0] for r in dev], [r["answers"]["text"] for r in dev]) == \
        {"exact_match": 1.0, "f1": 1.0}


@pytest.mark.skipif(not (CONLL / "dev.txt").is_file(), reason="needs ../shared/conll2003")
def test_conll_files_read_with_their_counts_and_labels():
    tokens, tags = ner.read_conll(CONLL / "train.txt")
    assert len(tokens) == 14_041 and sum(map(len, tokens)) == 203_621
    assert ner.label_list(tags) == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    dev_tokens, dev_tags = ner.read_conll(CONLL / "dev.txt")
    assert len(dev_tokens) == 3_250
    assert ner.entity_scores(dev_tags, dev_tags)["f1"] == 1.0


@pytest.mark.skipif(not (SQUAD / "dev-v1.1.json").is_file() or not minilm_available(),
                    reason="needs ../shared/squad and the MiniLM package")
def test_minilm_windows_recover_every_answer_on_real_contexts():
    from transformers import AutoTokenizer

    from prunecli.models.folders import minilm_path

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    rows = qa.read_squad(SQUAD / "dev-v1.1.json")[:300]
    batch = {k: [r[k] for r in rows] for k in ("context", "question", "answers")}
    features = qa.train_features(batch, tokenizer, 384, 128)
    _, examples, offsets = qa.eval_features(batch, tokenizer, 384, 128)
    recovered, exact, labelled = set(), 0, 0
    for f, example in enumerate(examples):
        start, end = features["start_positions"][f], features["end_positions"][f]
        if start:
            text = rows[example]["context"][offsets[f][start][0]:offsets[f][end][1]]
            answer = rows[example]["answers"]["text"][0]
            assert answer in text  # the tokens covering the answer (`gold` inside the token `golden`)
            exact += text == answer
            labelled += 1
            recovered.add(example)
    assert len(recovered) == len(rows)
    assert exact >= 0.95 * labelled


@pytest.mark.skipif(not (SQUAD / "dev-v1.1.json").is_file() or not minilm_available(),
                    reason="needs ../shared/squad and the MiniLM package")
def test_oracle_logits_score_near_perfect_through_windows_and_post_processing():
    """Logits that point at each window's gold span, through the n-best search over all windows and the metric:
    what is lost is only the tokenizer's word boundaries."""
    import numpy as np
    from transformers import AutoTokenizer

    from prunecli.models.folders import minilm_path

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    rows = qa.read_squad(SQUAD / "dev-v1.1.json")[:500]
    batch = {k: [r[k] for r in rows] for k in ("context", "question", "answers")}
    labels = qa.train_features(batch, tokenizer, 384, 128)
    _, examples, offsets = qa.eval_features(batch, tokenizer, 384, 128)
    starts, ends = [], []
    for f, spans in enumerate(offsets):
        start, end = np.zeros(len(spans)), np.zeros(len(spans))
        if labels["start_positions"][f]:
            start[labels["start_positions"][f]] = end[labels["end_positions"][f]] = 10.0
        starts.append(start)
        ends.append(end)
    answers = qa.best_answers([r["context"] for r in rows], examples, offsets, starts, ends)
    scores = qa.squad_scores(answers, [r["answers"]["text"] for r in rows])
    # 11 of 500 reference answers are parts of a token (`8` in `18`, `gold` in `golden`)
    assert scores["exact_match"] > 0.97 and scores["f1"] > 0.97
