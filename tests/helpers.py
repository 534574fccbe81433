"""Test helpers: a tiny randomly initialised BERT with its own tokenizer, and learnable synthetic data.

Nothing here downloads anything. The vocabulary is small and word-level so that a 2-layer,
32-wide BERT can learn the synthetic tasks in a few dozen steps.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import os
import random
import re
import stat
from pathlib import Path

POSITIVE = ["good", "great", "fine", "lovely", "superb", "warm", "bright", "fun"]
NEGATIVE = ["bad", "awful", "dull", "poor", "boring", "cold", "grim", "sad"]
NEUTRAL = ["the", "a", "movie", "film", "plot", "was", "is", "very", "quite", "story", "actor", "scene", "and", "it"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB = SPECIAL + POSITIVE + NEGATIVE + NEUTRAL


def write_tokenizer(folder: Path) -> None:
    """Save a BERT WordPiece tokenizer over VOCAB into `folder` (vocab.txt + tokenizer files)."""
    from transformers import BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    tok = BertTokenizer(vocab={word: i for i, word in enumerate(VOCAB)}, do_lower_case=True)
    tok.save_pretrained(folder)


def tiny_bert_config(num_labels: int = 2, **overrides):
    from transformers import BertConfig

    kwargs = dict(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=num_labels,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    kwargs.update(overrides)
    return BertConfig(**kwargs)


def make_tiny_bert(folder: Path, num_labels: int = 2, seed: int = 0, **overrides) -> Path:
    """Write a tiny random BertForSequenceClassification checkpoint (safetensors) with tokenizer to `folder`."""
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    model = BertForSequenceClassification(tiny_bert_config(num_labels=num_labels, **overrides))
    model.save_pretrained(folder)
    write_tokenizer(folder)
    return folder


def sentiment_rows(n: int, seed: int = 0) -> list[dict]:
    """Single-sentence rows; label 1 iff the sentence has more positive than negative words."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.randint(0, 1)
        strong, weak = (POSITIVE, NEGATIVE) if label else (NEGATIVE, POSITIVE)
        words = rng.sample(NEUTRAL, 4) + rng.sample(strong, 2) + rng.sample(weak, rng.randint(0, 1))
        rng.shuffle(words)
        rows.append({"sentence": " ".join(words), "label": label})
    return rows


def pair_rows(n: int, seed: int = 0) -> list[dict]:
    """Sentence pairs; label 1 iff both sentences have the same polarity (a paraphrase-like task)."""
    rng = random.Random(seed)
    singles = sentiment_rows(2 * n, seed=seed + 1)
    rows = []
    for i in range(n):
        a, b = singles[2 * i], singles[2 * i + 1]
        rows.append({"sentence1": a["sentence"], "sentence2": b["sentence"], "label": int(a["label"] == b["label"])})
    rng.shuffle(rows)
    return rows


def write_rows(path: Path, rows: list[dict]) -> Path:
    """Write rows as csv, tsv, json (a list) or jsonl, chosen by the file suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".csv", ".tsv"):
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t" if path.suffix == ".tsv" else ",")
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows), encoding="utf-8")
    else:
        raise ValueError(path)
    return path


def write_glue_sst2_folder(folder: Path, n_train: int = 64, n_dev: int = 32) -> Path:
    """A GLUE SST-2 folder in the classic layout (header `sentence\\tlabel`, trailing space like the real one)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.tsv", sentiment_rows(n_train, 1)), ("dev.tsv", sentiment_rows(n_dev, 2))):
        lines = ["sentence\tlabel"] + [f"{r['sentence']} \t{r['label']}" for r in rows]
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def write_glue_mrpc_folder(folder: Path, n_train: int = 64, n_dev: int = 32) -> Path:
    """A GLUE MRPC folder as distributed: UTF-8 BOM, `Quality  #1 ID  #2 ID  #1 String  #2 String`,
    and sentences with unbalanced double quotes (which break default CSV quoting)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.tsv", pair_rows(n_train, 3)), ("dev.tsv", pair_rows(n_dev, 4))):
        lines = ["\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String"]
        for i, r in enumerate(rows):
            s1 = r["sentence1"] + (' "' if i % 5 == 0 else "")
            lines.append(f"{r['label']}\t{1000 + i}\t{2000 + i}\t{s1}\t{r['sentence2']}")
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@contextlib.contextmanager
def umask(mask: int):
    """Run a block under the process umask `mask` (restored after)."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def file_modes(folder: Path) -> dict[str, int]:
    """The permission bits of every file and folder under `folder`, by relative path."""
    return {str(path.relative_to(folder)): stat.S_IMODE(path.lstat().st_mode) for path in sorted(folder.rglob("*"))}


def wrong_modes(folder: Path) -> dict[str, str]:
    """The entries under `folder` whose mode is not what a plain open()/mkdir() gives under umask 022."""
    expected = {True: 0o755, False: 0o644}
    return {name: oct(mode) for name, mode in file_modes(folder).items()
            if mode != expected[(folder / name).is_dir()]}


def expand_text(text: str) -> list[str]:
    """The names a shown group of names stands for (`encoder.layer.{0-2}.{query,key}`): the inverse of
    `prunecli.report.names.NameGroup.text` for names without `{},-`, to check what tables show."""
    parts: list[list[str]] = []
    for piece in re.split(r"(\{[^{}]*\})", text):
        if piece.startswith("{") and piece.endswith("}"):
            options: list[str] = []
            for item in piece[1:-1].split(","):
                match = re.fullmatch(r"(\d+)-(\d+)", item)
                options += [str(n) for n in range(int(match[1]), int(match[2]) + 1)] if match else [item]
            parts.append(options)
        elif piece:
            parts.append([piece])
    return ["".join(p) for p in itertools.product(*parts)]
