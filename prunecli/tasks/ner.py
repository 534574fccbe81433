"""Token classification (named entities, CoNLL format): reading, IOB1 -> IOB2, sub-word labels, seqeval's F1.

Reading (`read_conll`, `load_ner_task`): one token per line, whitespace-separated columns with the tag in the
last one, a blank line between sentences, `-DOCSTART-` lines skipped; or JSON lines / a JSON list with
`tokens` and `ner_tags`. Tags are `O` or `B-TYPE` / `I-TYPE`. A file in IOB2 (every entity starts with `B-`)
is kept; a file in IOB1 (`I-` starts an entity, `B-` only between two entities of one type) is converted to
IOB2; anything else, and a line with one column, is a DataError naming the file and the line.

Labels (`label_list`) come from the training data in a stable order: `O`, then by entity type, `B-` before `I-`.

Pre-processing (`tokenize_sentences`): words are split into sub-tokens; the first sub-token of a word carries
its tag and the others -100 (ignored by the loss), or, with `label_all_tokens`, the word's tag (an `I-` one
after a `B-` word start). Evaluation always labels first sub-tokens only, so the metric counts words.

Metric (`entity_scores`): seqeval's entity-level micro precision, recall and F1 (its default, conlleval's
definition), and each entity type's F1. Words cut off by `--max_length` are predicted `O`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prunecli.errors import DataError

TASK_TYPE = "token_classification"
TRAIN_NAMES = ("train.txt", "train.jsonl", "train.json")
DEV_NAMES = ("dev.txt", "valid.txt", "validation.txt", "dev.jsonl", "validation.jsonl", "dev.json")
IGNORE = -100


# ---- tags ------------------------------------------------------------------------------------------------------


def split_tag(tag: str) -> tuple[str, str] | None:
    """("B" | "I", TYPE) of an entity tag, ("O", "") for O, None for anything else."""
    if tag == "O":
        return "O", ""
    if len(tag) > 2 and tag[0] in "BI" and tag[1] == "-":
        return tag[0], tag[2:]
    return None


def _continues(previous: str, kind: str) -> bool:
    """Whether `previous` is a tag of an entity of type `kind`."""
    parts = split_tag(previous)
    return parts is not None and parts[0] != "O" and parts[1] == kind


def iob_problems(sentences: Sequence[Sequence[str]]) -> tuple[int | None, int | None]:
    """(first tag that breaks IOB2, first tag that breaks IOB1), each the tag's index over all sentences, or None.

    IOB2 breaks where an `I-X` follows anything but `B-X`/`I-X`; IOB1 breaks where a `B-X` does not follow a tag of
    type X."""
    iob2 = iob1 = None
    index = 0
    for tags in sentences:
        previous = "O"
        for tag in tags:
            prefix, kind = split_tag(tag) or ("O", "")
            if iob2 is None and prefix == "I" and not _continues(previous, kind):
                iob2 = index
            if iob1 is None and prefix == "B" and not _continues(previous, kind):
                iob1 = index
            previous, index = tag, index + 1
    return iob2, iob1


def iob1_to_iob2(tags: Sequence[str]) -> list[str]:
    """IOB2 tags of an IOB1 sentence: an `I-X` that starts an entity becomes `B-X`."""
    out, previous = [], "O"
    for tag in tags:
        prefix, kind = split_tag(tag) or ("O", "")
        out.append(f"B-{kind}" if prefix == "I" and not _continues(previous, kind) else tag)
        previous = tag
    return out


def label_list(sentences: Sequence[Sequence[str]]) -> list[str]:
    """The tags of the data in a stable order: O, then by entity type with B- before I-."""
    tags = {tag for tags in sentences for tag in tags}
    return sorted(tags, key=lambda t: (t != "O", t[2:], t[:1]))


# ---- reading ---------------------------------------------------------------------------------------------------


def _read_text(path: Path) -> tuple[list[list[str]], list[list[str]], list[list[int]]]:
    """(tokens, tags, line numbers) per sentence of a CoNLL text file."""
    tokens: list[list[str]] = []
    tags: list[list[str]] = []
    lines: list[list[int]] = []
    current: tuple[list[str], list[str], list[int]] = ([], [], [])
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text: {err}.") from None
    for n, line in enumerate(text.splitlines() + [""], 1):
        columns = line.split()
        if not columns or columns[0] == "-DOCSTART-":
            if current[0]:
                tokens.append(current[0])
                tags.append(current[1])
                lines.append(current[2])
            current = ([], [], [])
            continue
        if len(columns) < 2:
            raise DataError(f"{path}, line {n}: one column ({line.strip()!r}); expected a token and its tag, "
                            "separated by white space, the tag in the last column.",
                            hint="CoNLL lines read `token POS chunk TAG` or `token TAG`; a blank line ends a "
                                 "sentence.")
        current[0].append(columns[0])
        current[1].append(columns[-1])
        current[2].append(n)
    return tokens, tags, lines


def _read_records(path: Path, text: str) -> tuple[list[list[str]], list[list[str]], list[list[int]]]:
    try:
        loaded = json.loads(text)
        records = loaded if isinstance(loaded, list) else [loaded]
        numbers = None
    except json.JSONDecodeError:
        records, numbers = [], []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise DataError(f"{path}, line {n}: not JSON ({err.msg}).") from None
                numbers.append(n)
    tokens, tags, lines = [], [], []
    for i, record in enumerate(records):
        n = numbers[i] if numbers else i + 1
        where = f"line {n}" if numbers else f"record {i + 1}"
        words, labels = (record.get("tokens"), record.get("ner_tags")) if isinstance(record, dict) else (None, None)
        if not isinstance(words, list) or not isinstance(labels, list) or len(words) != len(labels):
            raise DataError(f"{path}, {where}: needs `tokens` and `ner_tags`, two lists of equal length.")
        tokens.append([str(w) for w in words])
        tags.append([str(t) for t in labels])
        lines.append([n] * len(words))
    return tokens, tags, lines


def read_conll(path: str | Path) -> tuple[list[list[str]], list[list[str]]]:
    """(tokens, IOB2 tags) per sentence of a CoNLL text file or of JSON lines with `tokens` and `ner_tags`.

    IOB1 files are converted; a line with one column, a tag that is neither O nor B-/I-TYPE, or tags that are
    neither IOB1 nor IOB2 raise a DataError naming the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist.")
    if path.suffix.lower() in (".json", ".jsonl"):
        tokens, tags, lines = _read_records(path, path.read_text(encoding="utf-8-sig"))
    else:
        tokens, tags, lines = _read_text(path)
    if not tokens:
        raise DataError(f"{path} holds no sentences.", hint="one token and its tag per line, sentences separated "
                                                            "by a blank line.")
    flat_lines = [n for sentence in lines for n in sentence]
    flat_tags = [t for sentence in tags for t in sentence]
    for n, tag in zip(flat_lines, flat_tags, strict=True):
        if split_tag(tag) is None:
            hint = "named-entity tags are IOB1 or IOB2: O, B-PER, I-PER, ..."
            if tag.lstrip("-").isdigit():  # the hub's ner_tags are class ids
                hint = "write the tag names (O, B-PER, ...), not class ids: ids do not say which entity they mean."
            raise DataError(f"{path}, line {n}: tag {tag!r} is neither O nor B-TYPE / I-TYPE.", hint=hint)
    iob2, iob1 = iob_problems(tags)
    if iob2 is None:
        return tokens, tags
    if iob1 is None:
        return tokens, [iob1_to_iob2(t) for t in tags]
    raise DataError(f"{path}: the tags are neither IOB1 nor IOB2: line {flat_lines[iob2]} has "
                    f"{flat_tags[iob2]} starting an entity (IOB2 starts every entity with B-), and line "
                    f"{flat_lines[iob1]} has {flat_tags[iob1]} not after an entity of its type (IOB1 uses B- only "
                    "between two entities of one type).", hint="use one scheme in the whole file.")


def is_conll_file(path: str | Path) -> bool:
    """Whether a file holds NER data: CoNLL text (.txt, .conll, ...) or JSON lines with `tokens` and `ner_tags`."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".json", ".jsonl"):
        return suffix not in (".csv", ".tsv")
    try:
        with open(path, encoding="utf-8-sig") as fh:
            head = fh.read(4096)
    except (OSError, UnicodeDecodeError):
        return False
    return '"ner_tags"' in head and '"tokens"' in head


def sentences_dataset(tokens: list[list[str]], tags: list[list[str]]):
    """A `datasets.Dataset` of sentences (`tokens`, `ner_tags`, `example_id`)."""
    from datasets import Dataset, Features, Sequence, Value

    features = Features({"tokens": Sequence(Value("string")), "ner_tags": Sequence(Value("string")),
                         "example_id": Value("int64")})
    return Dataset.from_dict({"tokens": tokens, "ner_tags": tags, "example_id": list(range(len(tokens)))},
                             features=features)


# ---- pre-processing -----------------------------------------------------------------------------------------------


def tokenize_sentences(batch: dict[str, list], tokenizer, label2id: dict[str, int], max_length: int, *,
                       label_all_tokens: bool = False) -> dict[str, list]:
    """Model inputs of a batch of sentences with per-token `labels` (see the module docstring)."""
    if not getattr(tokenizer, "is_fast", False):
        raise DataError("token classification needs a fast tokenizer (word ids).", hint="leave out "
                                                                                         "--use_slow_tokenizer.")
    encoded = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True, max_length=max_length)
    all_labels = []
    for i, tags in enumerate(batch["ner_tags"]):
        labels, previous = [], None
        for word in encoded.word_ids(i):
            if word is None:
                labels.append(IGNORE)
            elif word != previous:
                labels.append(label2id[tags[word]])
            elif label_all_tokens:
                tag = tags[word]
                inside = "I-" + tag[2:] if tag.startswith("B-") and "I-" + tag[2:] in label2id else tag
                labels.append(label2id[inside])
            else:
                labels.append(IGNORE)
            previous = word
        all_labels.append(labels)
    encoded["labels"] = all_labels
    return dict(encoded)


# ---- metric --------------------------------------------------------------------------------------------------------


def word_predictions(token_predictions: Sequence[int], token_labels: Sequence[int], id2label: dict[int, str],
                     n_words: int) -> list[str]:
    """The tags predicted for a sentence's words: the first sub-tokens' (where labels are not -100), then `O` for
    words the truncation cut off."""
    tags = [id2label[int(p)] for p, label in zip(token_predictions, token_labels, strict=False) if label != IGNORE]
    return tags[:n_words] + ["O"] * (n_words - len(tags))


def is_per_type_metric(name: str) -> bool:
    """Whether a metric is one entity type's F1 (`f1_PER`): kept in JSON and files, left out of the tables that
    must read at 80 columns."""
    return name.startswith("f1_") and name[3:].isupper()


def entity_scores(predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """seqeval's entity-level micro precision, recall and F1, plus `f1_<TYPE>` for each entity type of the
    references, all in [0, 1]."""
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predicted sentences for {len(references)}")
    if not references:
        raise ValueError("no sentences to score")
    y_true, y_pred = [list(r) for r in references], [list(p) for p in predictions]
    scores = {"precision": float(precision_score(y_true, y_pred, zero_division=0)),
              "recall": float(recall_score(y_true, y_pred, zero_division=0)),
              "f1": float(f1_score(y_true, y_pred, zero_division=0))}
    report: dict[str, Any] = classification_report(y_true, y_pred, output_dict=True, zero_division=0)
    for kind, values in sorted(report.items()):
        if " avg" not in kind and isinstance(values, dict):
            scores[f"f1_{kind}"] = float(values["f1-score"])
    return scores


# ---- a task's model inputs ---------------------------------------------------------------------------------------


def tokenize_ner(data, tokenizer, label2id: dict[str, int], *, max_length: int, label_all_tokens: bool = False):
    """Model inputs of every split of a token-classification TaskData (`TokenizedData`), cut at `max_length`
    tokens (already lowered to the tokenizer's limit); a tag the model does not know is a DataError naming the
    file."""
    from prunecli.data.examples import EXAMPLE_ID, TokenizedData

    splits = ({"train": data.train} if data.train is not None else {}) | data.eval_splits
    out = {}
    for split, ds in splits.items():
        unknown = sorted({t for tags in ds["ner_tags"] for t in tags} - set(label2id))
        if unknown:
            raise DataError(f"{data.split_sources.get(split, split)}: tags the model does not know: "
                            f"{', '.join(unknown[:5])}.", hint=f"the model's tags are {', '.join(label2id)}.")
        all_tokens = label_all_tokens and split == "train"
        out[split] = ds.map(lambda b, a=all_tokens: {**tokenize_sentences(b, tokenizer, label2id, max_length,
                                                                            label_all_tokens=a),
                                                     EXAMPLE_ID: b[EXAMPLE_ID]},
                            batched=True, remove_columns=ds.column_names, keep_in_memory=True)
    return TokenizedData(task=data, train=out.pop("train", None), eval_splits=out, label2id=dict(label2id),
                         max_length=max_length)


def score_split(ds, token_predictions, token_labels, id2label: dict[int, str]) -> dict[str, float]:
    """Entity scores of one evaluation split from per-token predictions and labels (sentence i's at index i)."""
    references = ds["ner_tags"]
    predictions = [word_predictions(p, lab, id2label, len(ref))
                   for p, lab, ref in zip(token_predictions, token_labels, references, strict=True)]
    return entity_scores(predictions, references)
