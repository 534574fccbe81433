"""Tiny synthetic data for the question-answering and token-classification tests, in the real file formats.

Words come from `tests.helpers.VOCAB`, so the tiny test tokenizer knows every one. QA: a context of neutral
words with one sentiment word; the question names the polarity; the answer is the sentiment word (learnable by a
tiny model). NER: sentences of neutral words where positive words are `POS` entities and negative ones `NEG`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from tests.helpers import NEGATIVE, NEUTRAL, POSITIVE


def squad_articles(n_questions: int, seed: int = 0, context_words: int = 12) -> dict:
    """A SQuAD v1.1 document: one article per 4 questions, answers with exact answer_start."""
    rng = random.Random(seed)
    articles = []
    for a in range(0, n_questions, 4):
        paragraphs = []
        for q in range(a, min(a + 4, n_questions)):
            words = [rng.choice(NEUTRAL) for _ in range(context_words)]
            answer = rng.choice(POSITIVE)
            position = rng.randrange(context_words)
            words.insert(position, answer)
            context = " ".join(words)
            start = len(" ".join(words[:position])) + (1 if position else 0)
            assert context[start:start + len(answer)] == answer
            paragraphs.append({"context": context, "qas": [
                {"id": f"q{q}", "question": "good", "answers": [{"text": answer, "answer_start": start}]}]})
        articles.append({"title": f"t{a}", "paragraphs": paragraphs})
    return {"version": "1.1", "data": articles}


def write_squad(path: Path, n_questions: int, seed: int = 0, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(squad_articles(n_questions, seed, **kw)), encoding="utf-8")
    return path


def write_squad_folder(folder: Path, n_train: int = 48, n_dev: int = 16, **kw) -> Path:
    write_squad(folder / "train-v1.1.json", n_train, seed=1, **kw)
    write_squad(folder / "dev-v1.1.json", n_dev, seed=2, **kw)
    return folder


def ner_sentences(n: int, seed: int = 0) -> list[list[tuple[str, str]]]:
    """Sentences of (word, IOB2 tag): runs of 1-2 positive words are POS entities, negative ones NEG."""
    rng = random.Random(seed)
    sentences = []
    for _ in range(n):
        words: list[tuple[str, str]] = []
        for _ in range(rng.randint(2, 4)):
            words += [(w, "O") for w in rng.sample(NEUTRAL, rng.randint(1, 2))]
            kind, pool = rng.choice((("POS", POSITIVE), ("NEG", NEGATIVE)))
            entity = rng.sample(pool, rng.randint(1, 2))
            words += [(w, ("B-" if i == 0 else "I-") + kind) for i, w in enumerate(entity)]
        sentences.append(words)
    return sentences


def write_conll(path: Path, sentences: list[list[tuple[str, str]]], *, columns: int = 4,
                docstart: bool = False) -> Path:
    """CoNLL text: `word POS chunk TAG` (columns=4) or `word TAG` (columns=2), a blank line between sentences."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["-DOCSTART- -X- -X- O", ""] if docstart else []
    for sentence in sentences:
        for word, tag in sentence:
            lines.append(f"{word} NN I-NP {tag}" if columns == 4 else f"{word} {tag}")
        lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_conll_folder(folder: Path, n_train: int = 48, n_dev: int = 16) -> Path:
    write_conll(folder / "train.txt", ner_sentences(n_train, 1), docstart=True)
    write_conll(folder / "dev.txt", ner_sentences(n_dev, 2))
    return folder


def write_squad_lines(path: Path, n_questions: int, seed: int = 0, **kw) -> Path:
    """The questions of `squad_articles` as flat JSON lines (`id`, `context`, `question`, `answers` with lists of
    `text` and `answer_start`), the layout of the `datasets` hub copy of squad."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for article in squad_articles(n_questions, seed, **kw)["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                answers = {"text": [a["text"] for a in qa["answers"]],
                           "answer_start": [a["answer_start"] for a in qa["answers"]]}
                lines.append(json.dumps({"id": qa["id"], "context": paragraph["context"], "question": qa["question"],
                                         "answers": answers}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_ner_lines(path: Path, sentences: list[list[tuple[str, str]]]) -> Path:
    """Sentences as JSON lines with `tokens` and `ner_tags` (tag names)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"tokens": [w for w, _ in s], "ner_tags": [t for _, t in s]}) + "\n"
                            for s in sentences), encoding="utf-8")
    return path
