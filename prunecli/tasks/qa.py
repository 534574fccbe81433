"""Extractive question answering (SQuAD v1.1): reading, the sliding window, the n-best span search, EM/F1.

Reading (`read_squad`, `load_squad_task`): SQuAD-format JSON (`data` -> `paragraphs` -> `context`, `qas` ->
`id`, `question`, `answers` (`text`, `answer_start`)), or JSON lines / a JSON list of flat records with
`context`, `question` and `answers` as the `datasets` hub copy has them. Every answer's `answer_start` must
point at its text; a problem names the file and the JSON path.

Pre-processing (`train_features`, `eval_features`): the standard sliding window of transformers'
`run_qa_no_trainer.py`: the question and a window of the context, `max_seq_length` tokens at most, the
windows overlapping by `doc_stride` tokens (`return_overflowing_tokens`), offsets mapping tokens back to
context characters. A training window whose context does not hold the whole answer is labelled with the CLS
position. Evaluation windows keep, per token, the context characters it covers (None elsewhere) and the
index of the example they came from.

Post-processing (`best_answers`): for each example, the n-best start and end positions of each of its
windows, every valid pair (inside the context, start <= end, at most `max_answer_length` tokens), the best
sum of logits over all windows; its characters are the answer.

Metric (`squad_scores`): exact match and token F1 after SQuAD v1.1's normalisation (lower case, no
punctuation, no articles a/an/the, single spaces), the best over a question's reference answers, averaged
over questions, as fractions in [0, 1] like every prunecli metric (the official script prints percent).
"""

from __future__ import annotations

import collections
import json
import re
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prunecli.errors import DataError

TASK_TYPE = "question_answering"
#: The file names `--data_dir` is searched for, first match wins (official names, then ../shared/squad's).
TRAIN_NAMES = ("train-v1.1.json", "train-v1.1-unambiguous.json", "train.json", "train.jsonl")
DEV_NAMES = ("dev-v1.1.json", "dev.json", "dev.jsonl", "validation.json", "validation.jsonl")
COLUMNS = ("id", "title", "context", "question", "answers")


# ---- reading ------------------------------------------------------------------------------------------------


def _check_answers(path: Path, where: str, context: str, answers: Any) -> dict[str, list]:
    """The answers of one question as {"text": [...], "answer_start": [...]}, each start pointing at its text."""
    if isinstance(answers, dict):  # the hub's columnar form
        texts, starts = answers.get("text"), answers.get("answer_start")
        if not isinstance(texts, list) or not isinstance(starts, list) or len(texts) != len(starts):
            raise DataError(f"{path}: {where}.answers must hold lists `text` and `answer_start` of equal length.")
        pairs = list(zip(texts, starts, strict=True))
        paths = [f"{where}.answers.text[{i}]" for i in range(len(pairs))]
    elif isinstance(answers, list):
        pairs, paths = [], []
        for i, answer in enumerate(answers):
            if not isinstance(answer, dict) or "text" not in answer or "answer_start" not in answer:
                raise DataError(f"{path}: {where}.answers[{i}] must be an object with `text` and `answer_start`.")
            pairs.append((answer["text"], answer["answer_start"]))
            paths.append(f"{where}.answers[{i}]")
    else:
        raise DataError(f"{path}: {where}.answers must be a list of {{text, answer_start}} objects.")
    for (text, start), at in zip(pairs, paths, strict=True):
        if not isinstance(text, str) or not isinstance(start, int) or isinstance(start, bool):
            raise DataError(f"{path}: {at}: `text` must be a string and `answer_start` an integer.")
        if context[start:start + len(text)] != text:
            found = context[start:start + len(text)]
            raise DataError(f"{path}: {at}: answer_start {start} points at {found!r}, not at the answer {text!r}.",
                            hint="answer_start is the character offset of the answer's first character in the "
                                 "context.")
    return {"text": [t for t, _ in pairs], "answer_start": [s for _, s in pairs]}


def _field(path: Path, record: Any, key: str, where: str, kind: Any = str) -> Any:
    if not isinstance(record, dict) or not isinstance(record.get(key), kind):
        expected = "a list" if kind is list else "a string"
        raise DataError(f"{path}: {where} needs a `{key}` ({expected}).")
    return record[key]


def _squad_rows(path: Path, loaded: dict) -> list[dict[str, Any]]:
    if "data" not in loaded:
        raise DataError(f"{path}: no `data` key at the top level; a SQuAD-format file is "
                        '{"data": [{"title", "paragraphs": [{"context", "qas": [...]}]}]}.',
                        hint="or give JSON lines with context, question and answers per line.")
    articles = loaded["data"]
    if not isinstance(articles, list):
        raise DataError(f"{path}: `data` must be a list of articles.")
    rows = []
    for a, article in enumerate(articles):
        paragraphs = _field(path, article, "paragraphs", f"data[{a}]", list)
        title = article.get("title", "") if isinstance(article.get("title"), str) else ""
        for p, paragraph in enumerate(paragraphs):
            where = f"data[{a}].paragraphs[{p}]"
            context = _field(path, paragraph, "context", where)
            for q, qa in enumerate(_field(path, paragraph, "qas", where, list)):
                at = f"{where}.qas[{q}]"
                rows.append({"id": str(_field(path, qa, "id", at, (str, int))), "title": title, "context": context,
                             "question": _field(path, qa, "question", at),
                             "answers": _check_answers(path, at, context, qa.get("answers"))})
    return rows


def _flat_rows(path: Path, records: list, line_numbers: bool) -> list[dict[str, Any]]:
    rows = []
    for i, record in enumerate(records):
        where = f"line {i + 1}" if line_numbers else f"[{i}]"
        context = _field(path, record, "context", where)
        rows.append({"id": str(record.get("id", i)), "title": str(record.get("title", "")), "context": context,
                     "question": _field(path, record, "question", where),
                     "answers": _check_answers(path, where, context, record.get("answers"))})
    return rows


def read_squad(path: str | Path) -> list[dict[str, Any]]:
    """The questions of a SQuAD-format JSON file or of flat JSON lines / a JSON list: one row per question with
    id, title, context, question and answers {"text": [...], "answer_start": [...]} (DataError naming the
    file and JSON path of any problem)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text: {err}.") from None
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError:
        records = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise DataError(f"{path}, line {n}: not JSON ({err.msg}).",
                                hint="a SQuAD file is one JSON object with a `data` key, or one question per "
                                     "line.") from None
        rows = _flat_rows(path, records, line_numbers=True)
    else:
        if isinstance(loaded, dict) and "context" in loaded:  # a one-line JSON-lines file
            rows = _flat_rows(path, [loaded], line_numbers=True)
        elif isinstance(loaded, dict):
            rows = _squad_rows(path, loaded)
        elif isinstance(loaded, list):
            rows = _flat_rows(path, loaded, line_numbers=False)
        else:
            raise DataError(f"{path}: expected a JSON object with a `data` key.")
    if not rows:
        raise DataError(f"{path} holds no questions.")
    return rows


def is_qa_file(path: str | Path) -> bool:
    """Whether a JSON / JSON-lines file looks like QA data (a `data` key, or records with `context` and
    `question`), read from its start only."""
    try:
        with open(path, encoding="utf-8-sig") as fh:
            head = fh.read(4096)
    except (OSError, UnicodeDecodeError):
        return False
    return bool(re.match(r'\s*\{\s*"(data|version)"', head)) or ('"context"' in head and '"question"' in head)


def rows_dataset(rows: list[dict[str, Any]]):
    """A `datasets.Dataset` of question rows, with `example_id` (the row's index)."""
    from datasets import Dataset, Features, Sequence, Value

    features = Features({"id": Value("string"), "title": Value("string"), "context": Value("string"),
                         "question": Value("string"),
                         "answers": {"text": Sequence(Value("string")), "answer_start": Sequence(Value("int32"))},
                         "example_id": Value("int64")})
    columns = {name: [r[name] for r in rows] for name in COLUMNS}
    return Dataset.from_dict({**columns, "example_id": list(range(len(rows)))}, features=features)


# ---- pre-processing -------------------------------------------------------------------------------------------


def _windows(tokenizer, questions: list[str], contexts: list[str], max_seq_length: int, doc_stride: int):
    if not getattr(tokenizer, "is_fast", False):
        raise DataError("question answering needs a fast tokenizer (offset mappings).",
                        hint="leave out --use_slow_tokenizer.")
    pad_right = getattr(tokenizer, "padding_side", "right") == "right"
    if doc_stride >= max_seq_length:
        raise DataError(f"--doc_stride {doc_stride} must be below --max_seq_length {max_seq_length}.")
    return tokenizer(
        [q.lstrip() for q in questions] if pad_right else contexts,
        contexts if pad_right else [q.lstrip() for q in questions],
        truncation="only_second" if pad_right else "only_first", max_length=max_seq_length, stride=doc_stride,
        return_overflowing_tokens=True, return_offsets_mapping=True, padding=False,
    ), (1 if pad_right else 0)


def train_features(batch: dict[str, list], tokenizer, max_seq_length: int, doc_stride: int) -> dict[str, list]:
    """Training windows of a batch of question rows: model inputs plus start_positions / end_positions (the
    CLS index where the window does not hold the whole answer). A question without answers labels every
    window with CLS."""
    encoded, context_id = _windows(tokenizer, batch["question"], batch["context"], max_seq_length, doc_stride)
    sample_map = encoded.pop("overflow_to_sample_mapping")
    offsets = encoded.pop("offset_mapping")
    starts, ends = [], []
    for i, spans in enumerate(offsets):
        ids = encoded["input_ids"][i]
        cls = ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in ids else 0
        sequence_ids = encoded.sequence_ids(i)
        answers = batch["answers"][sample_map[i]]
        if not answers["answer_start"]:
            starts.append(cls)
            ends.append(cls)
            continue
        start_char = answers["answer_start"][0]
        end_char = start_char + len(answers["text"][0])
        first = sequence_ids.index(context_id)
        last = len(sequence_ids) - 1 - sequence_ids[::-1].index(context_id)
        if not (spans[first][0] <= start_char and spans[last][1] >= end_char):
            starts.append(cls)
            ends.append(cls)
            continue
        token = first
        while token <= last and spans[token][0] <= start_char:
            token += 1
        starts.append(token - 1)
        token = last
        while token >= first and spans[token][1] >= end_char:
            token -= 1
        ends.append(token + 1)
    encoded["start_positions"], encoded["end_positions"] = starts, ends
    return dict(encoded)


def eval_features(batch: dict[str, list], tokenizer, max_seq_length: int,
                  doc_stride: int) -> tuple[dict[str, list], list[int], list[list]]:
    """Evaluation windows of a batch of question rows: (model inputs, each window's row in the batch, each
    window's offsets with None for tokens outside the context)."""
    encoded, context_id = _windows(tokenizer, batch["question"], batch["context"], max_seq_length, doc_stride)
    sample_map = list(encoded.pop("overflow_to_sample_mapping"))
    offsets = encoded.pop("offset_mapping")
    kept = []
    for i, spans in enumerate(offsets):
        sequence_ids = encoded.sequence_ids(i)
        kept.append([tuple(s) if sequence_ids[k] == context_id else None for k, s in enumerate(spans)])
    return dict(encoded), sample_map, kept


# ---- post-processing ------------------------------------------------------------------------------------------


def best_answers(contexts: Sequence[str], feature_examples: Sequence[int], feature_offsets: Sequence[list],
                 start_logits: Sequence[np.ndarray], end_logits: Sequence[np.ndarray], *, n_best_size: int = 20,
                 max_answer_length: int = 30) -> list[str]:
    """The answer text of each example (`contexts[i]`): the best-scoring valid span over all its windows.

    Window `f` belongs to example `feature_examples[f]`, maps tokens to context characters through
    `feature_offsets[f]` (None outside the context) and has logits `start_logits[f]`, `end_logits[f]` (as long as
    its offsets, or longer: padding is ignored). An example with no valid span gets "".
    """
    by_example: dict[int, list[int]] = collections.defaultdict(list)
    for f, example in enumerate(feature_examples):
        by_example[int(example)].append(f)
    answers = []
    for example, context in enumerate(contexts):
        best_score, best_text = -np.inf, ""
        for f in by_example.get(example, []):
            offsets = feature_offsets[f]
            start = np.asarray(start_logits[f])[: len(offsets)]
            end = np.asarray(end_logits[f])[: len(offsets)]
            start_best = np.argsort(start)[-1: -n_best_size - 1: -1]
            end_best = np.argsort(end)[-1: -n_best_size - 1: -1]
            for s in start_best:
                if offsets[s] is None:
                    continue
                for e in end_best:
                    if offsets[e] is None or e < s or e - s + 1 > max_answer_length:
                        continue
                    score = float(start[s] + end[e])
                    if score > best_score:
                        best_score, best_text = score, context[offsets[s][0]:offsets[e][1]]
        answers.append(best_text)
    return answers


# ---- metric ------------------------------------------------------------------------------------------------------


_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD v1.1's normalisation: lower case, punctuation removed, articles a/an/the removed, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    """F1 of the normalised tokens (a bag of words), as SQuAD v1.1's script computes it."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    common = collections.Counter(pred) & collections.Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """{"exact_match", "f1"} in [0, 1]: each question's best over its references, averaged over questions."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} questions")
    if not predictions:
        raise ValueError("no predictions to score")
    em = f1 = 0.0
    for prediction, refs in zip(predictions, references, strict=True):
        refs = list(refs) or [""]
        em += max(exact_match(prediction, r) for r in refs)
        f1 += max(token_f1(prediction, r) for r in refs)
    n = len(predictions)
    return {"exact_match": em / n, "f1": f1 / n}


# ---- a task's model inputs --------------------------------------------------------------------------------------


def tokenize_qa(data, tokenizer, cfg):
    """Model inputs of every split of a question-answering TaskData (`TokenizedData`): training windows with
    start/end positions; evaluation windows with `example_id` (the window's index) and, in `eval_windows`, each
    window's example and context offsets for `best_answers`."""
    from prunecli.data.examples import EXAMPLE_ID, TokenizedData

    max_length = cfg.max_seq_length
    limit = getattr(tokenizer, "model_max_length", None)
    if limit is not None and 0 < limit < max_length:
        raise DataError(f"--max_seq_length {max_length} is above this model's {limit} positions.",
                        hint=f"pass --max_seq_length {limit} or less.")
    train = None
    if data.train is not None:
        train = data.train.map(lambda b: train_features(b, tokenizer, max_length, cfg.doc_stride), batched=True,
                               remove_columns=data.train.column_names, keep_in_memory=True)
        train = train.add_column(EXAMPLE_ID, list(range(len(train))))  # a window's id: the teacher cache's key
    eval_splits, windows = {}, {}
    for split, ds in data.eval_splits.items():
        inputs: dict[str, list] = {}
        examples: list[int] = []
        offsets: list[list] = []
        for start in range(0, len(ds), 1000):
            batch = ds[start:start + 1000]
            encoded, rows, spans = eval_features(batch, tokenizer, max_length, cfg.doc_stride)
            for key, values in encoded.items():
                inputs.setdefault(key, []).extend(values)
            examples.extend(start + r for r in rows)
            offsets.extend(spans)
        from datasets import Dataset

        eval_splits[split] = Dataset.from_dict({**inputs, EXAMPLE_ID: list(range(len(examples)))})
        windows[split] = (examples, offsets)
    return TokenizedData(task=data, train=train, eval_splits=eval_splits, label2id=None, max_length=max_length,
                         eval_windows=windows)


def score_split(ds, examples: list[int], offsets: list[list], start_logits, end_logits, cfg) -> dict[str, float]:
    """EM and F1 of one evaluation split from its windows' logits (window i's at index i)."""
    answers = best_answers(ds["context"], examples, offsets, start_logits, end_logits, n_best_size=cfg.n_best_size,
                           max_answer_length=cfg.max_answer_length)
    return squad_scores(answers, [a["text"] for a in ds["answers"]])
