"""GLUE: the nine tasks (hub columns, label names, metric suffixes) and their classic TSV folders.

`--data_dir` reads a GLUE task folder in the classic layout (`train.tsv`, `dev.tsv`; MNLI:
`dev_matched.tsv` and `dev_mismatched.tsv`) literally: no quote processing (MRPC has unbalanced
`"`), the byte-order mark removed. TSV labels are mapped to the hub's names and order (MRPC `1` ->
`equivalent` = id 1), so a model fine-tuned from a folder and one fine-tuned from the hub agree.
`--task_name` alone reads the task from the Hugging Face hub.
"""

from __future__ import annotations

import csv
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from prunecli.data.examples import LABEL, LOCAL_DATA_HINT, TaskData, make_dataset
from prunecli.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long passages (QNLI, MNLI) exceed the 128 KiB default


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


def _glue_task_folder(data_dir: Path, task: str | None) -> tuple[Path, GlueTask]:
    if not data_dir.is_dir():
        raise DataError(f"--data_dir {data_dir} is not a folder.", hint=LOCAL_DATA_HINT)
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


def load_glue_folder(data_dir: Path, task: str | None, need_train: bool) -> TaskData:
    folder, spec = _glue_task_folder(data_dir, task)
    wanted = ({"train": "train.tsv"} if need_train else {}) | dict(spec.eval_files)
    splits: dict[str, Dataset] = {}
    sources: dict[str, str] = {}
    for split, filename in wanted.items():
        path = folder / filename
        if not path.is_file():
            raise DataError(f"{path} does not exist: a GLUE {spec.folder} folder needs {', '.join(wanted.values())}.",
                            hint="download_glue_data.py's layout, e.g. MRPC/train.tsv and MRPC/dev.tsv.")
        splits[split] = make_dataset(_read_glue_tsv(path, spec), spec.is_regression)
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


def load_glue_hub(spec: GlueTask, need_train: bool) -> TaskData:
    try:
        import datasets

        raw = datasets.load_dataset("nyu-mll/glue", spec.name)
    except Exception as err:  # any failure (offline, no network, bad cache) has the same remedy
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"could not load GLUE {spec.name} from the Hugging Face hub ({reason[:200]}).",
                        hint=LOCAL_DATA_HINT) from None
    names = list(raw["train"].features["label"].names) if not spec.is_regression else None

    def convert(ds) -> Dataset:
        columns = {c: list(ds[c]) for c in spec.text_columns}
        labels = list(ds[LABEL])
        columns[LABEL] = [float(v) for v in labels] if names is None else [names[int(v)] for v in labels]
        return make_dataset(columns, spec.is_regression)

    return TaskData(
        task_name=spec.name, train=convert(raw["train"]) if need_train else None,
        eval_splits={s: convert(raw[s]) for s in spec.hub_eval_splits}, text_columns=spec.text_columns,
        label_list=names, is_regression=spec.is_regression, source=f"GLUE {spec.name} from the Hugging Face hub",
        split_sources={s: f"hub nyu-mll/glue {spec.name} {s}" for s in ("train", *spec.hub_eval_splits)},
    )
