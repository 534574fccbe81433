"""Raw and tokenized examples: the types every data source returns, and the columns they share.

Every row carries `example_id`, its index in the full split, so that subsets, caches and teacher
outputs (distillation) can refer to a row stably. Classification labels are kept as *names*
(strings) until tokenization maps them to ids with the model's `label2id`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset

LABEL = "label"
EXAMPLE_ID = "example_id"
LOCAL_DATA_HINT = (
    "pass local data instead: --data_dir path/to/MRPC (a GLUE task folder with train.tsv and dev.tsv), "
    "or --train_file train.csv --validation_file dev.csv (csv, tsv, json or jsonl with sentence1/sentence2/label "
    "columns), or --task_name rotten_tomatoes (embedded demo data)."
)


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
    task_type: str = "classification"  # or question_answering, token_classification (prunecli.tasks)

    @property
    def num_labels(self) -> int:
        return 1 if self.is_regression else len(self.label_list or [])

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for run_args.json and reports."""
        sizes = {"train": len(self.train)} if self.train is not None else {}
        sizes.update({name: len(ds) for name, ds in self.eval_splits.items()})
        return {"task_name": self.task_name, "task_type": self.task_type, "source": self.source,
                "text_columns": list(self.text_columns),
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
    # question answering: split -> (each window's example, each window's context offsets), for post-processing
    eval_windows: dict[str, tuple[list[int], list[list]]] = field(default_factory=dict)

    @property
    def task_name(self) -> str | None:
        return self.task.task_name

    @property
    def is_regression(self) -> bool:
        return self.task.is_regression


def make_dataset(columns: dict[str, list], is_regression: bool) -> Dataset:
    from datasets import Dataset, Features, Value

    n = len(columns[LABEL])
    features = {name: Value("string") for name in columns if name != LABEL}
    features[LABEL] = Value("float32") if is_regression else Value("string")
    features[EXAMPLE_ID] = Value("int64")
    return Dataset.from_dict({**columns, EXAMPLE_ID: list(range(n))}, features=Features(features))
