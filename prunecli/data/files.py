"""Users' own files (`--train_file` / `--validation_file`): csv, tsv, json (a list of objects) or jsonl.

Own files need a `label` column; text is `sentence1`/`sentence2`, else `sentence`/`text`, else the
first two other columns. A label column of non-integer numbers is a regression target; integers and
strings are class names (sorted to ids, stored in the model's config). Every problem names the file,
the line or row, and the column.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunecli.data.examples import EXAMPLE_ID, LABEL, TaskData, make_dataset
from prunecli.data.glue import GLUE_TASKS
from prunecli.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    from prunecli.config import DataConfig

_ID_COLUMNS = frozenset({"id", "idx", "index", EXAMPLE_ID})


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


def load_files(cfg: DataConfig, task: str | None, need_train: bool) -> TaskData:
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
        split: make_dataset({**columns, LABEL: labels}, is_regression)
        for split, (_, columns, labels, _) in splits.items()
    }
    sizes = ", ".join(f"{path.name}: {len(built[s])}" for s, (path, *_) in splits.items())
    return TaskData(
        task_name=task, train=built.pop("train", None), eval_splits=built, text_columns=tuple(text_columns),
        label_list=label_list, is_regression=is_regression, source=f"files ({sizes} rows)",
        split_sources={split: str(path) for split, (path, *_) in splits.items()},
    )
