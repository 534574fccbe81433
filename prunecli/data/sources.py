"""Where the examples come from: GLUE (hub or classic TSV folder), the embedded demo, users' own files.

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

import random
from pathlib import Path
from typing import TYPE_CHECKING

from prunecli.data.demo import load_rotten_tomatoes_task
from prunecli.data.examples import LOCAL_DATA_HINT, TaskData
from prunecli.data.files import load_files
from prunecli.data.glue import GLUE_TASKS, canonical_task_name, load_glue_folder, load_glue_hub
from prunecli.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    from prunecli.config import DataConfig


def load_task_data(cfg: DataConfig, need_train: bool = True, *, seed: int = 42) -> TaskData:
    """Read the examples selected by `cfg` (see the module docstring for the order of sources).

    `need_train=False` (evaluation) reads only the evaluation splits. `seed` picks the
    `max_train_samples` subset. Anything wrong with the user's data raises `DataError`
    naming the file and, where it applies, the column.
    """
    from prunecli.tasks import load_task

    other = load_task(cfg, need_train)  # question answering or token classification (prunecli.tasks)
    if other is not None:
        return _subset(other, cfg, seed)
    task = canonical_task_name(cfg.task_name)
    if cfg.data_dir:
        data = load_glue_folder(Path(cfg.data_dir), task, need_train)
    elif cfg.train_file or cfg.validation_file:
        data = load_files(cfg, task, need_train)
    elif task == "rotten_tomatoes":
        data = load_rotten_tomatoes_task(need_train)
    elif task is not None:
        data = load_glue_hub(GLUE_TASKS[task], need_train)
    else:
        raise DataError("no data: nothing tells prunecli which examples to use.", hint=LOCAL_DATA_HINT)
    return _subset(data, cfg, seed)


def _subset(data: TaskData, cfg: DataConfig, seed: int) -> TaskData:
    """Apply max_train_samples (a seeded random subset, kept in file order) and max_eval_samples (the first N)."""
    for name, value in (("max_train_samples", cfg.max_train_samples), ("max_eval_samples", cfg.max_eval_samples)):
        if value is not None and value < 1:
            raise DataError(f"--{name} must be at least 1 (got {value}).")
    if data.train is not None and cfg.max_train_samples is not None and cfg.max_train_samples < len(data.train):
        keep = sorted(random.Random(seed).sample(range(len(data.train)), cfg.max_train_samples))
        data.train = data.train.select(keep).flatten_indices()
        data.source += f"; trained on {cfg.max_train_samples:,} of them (--max_train_samples, seed {seed})"
    if cfg.max_eval_samples is not None:
        if any(cfg.max_eval_samples < len(ds) for ds in data.eval_splits.values()):
            data.source += f"; evaluated on the first {cfg.max_eval_samples:,} (--max_eval_samples)"
        data.eval_splits = {
            name: ds.select(range(cfg.max_eval_samples)).flatten_indices() if cfg.max_eval_samples < len(ds) else ds
            for name, ds in data.eval_splits.items()
        }
    return data
