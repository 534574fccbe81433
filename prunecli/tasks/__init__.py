"""Task types: sentence classification (GLUE, own files, the demo), question answering, token classification.

One module per task type owns its data reading, pre/post-processing and metric: classification lives in
`prunecli.data` (GLUE, files, demo, metrics), `prunecli.tasks.qa` (SQuAD v1.1) and `prunecli.tasks.ner`
(CoNLL-2003). This registry picks the type from `--task_name` (`squad`, `conll2003`/`ner`, else a GLUE task)
or from the files given, names the transformers Auto class of each type, and reads a checkpoint's type from
its config's architecture, so `evaluate`, `compact`, `benchmark` and `inspect` know what a model answers.
Nothing here imports torch or transformers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunecli.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    from prunecli.config import DataConfig
    from prunecli.data.examples import TaskData

CLASSIFICATION = "classification"
QUESTION_ANSWERING = "question_answering"
TOKEN_CLASSIFICATION = "token_classification"
TASK_TYPES = (CLASSIFICATION, QUESTION_ANSWERING, TOKEN_CLASSIFICATION)

#: `--task_name` values of the new task types (lower case, `-` read as `_`) -> (task name, task type).
TASK_NAMES = {"squad": ("squad", QUESTION_ANSWERING), "squad_v1": ("squad", QUESTION_ANSWERING),
              "squad_v1.1": ("squad", QUESTION_ANSWERING), "conll2003": ("conll2003", TOKEN_CLASSIFICATION),
              "conll": ("conll2003", TOKEN_CLASSIFICATION), "ner": ("ner", TOKEN_CLASSIFICATION)}
#: The transformers Auto class of each task type.
AUTO_CLASSES = {CLASSIFICATION: "AutoModelForSequenceClassification",
                QUESTION_ANSWERING: "AutoModelForQuestionAnswering",
                TOKEN_CLASSIFICATION: "AutoModelForTokenClassification"}
#: The end of a transformers architecture name (config.architectures) -> the task type it answers.
ARCHITECTURE_SUFFIXES = {"ForSequenceClassification": CLASSIFICATION, "ForQuestionAnswering": QUESTION_ANSWERING,
                         "ForTokenClassification": TOKEN_CLASSIFICATION}
#: How each task type is said to people.
DESCRIPTIONS = {CLASSIFICATION: "sequence classification", QUESTION_ANSWERING: "extractive question answering",
                TOKEN_CLASSIFICATION: "token classification (named entities)"}
#: Tokens per example `benchmark` times a model of each task type with (random inputs): QA's window.
TIMING_LENGTHS = {CLASSIFICATION: 128, QUESTION_ANSWERING: 384, TOKEN_CLASSIFICATION: 128}
#: The metric each task type is ranked by.
PRIMARY_METRICS = {QUESTION_ANSWERING: "f1", TOKEN_CLASSIFICATION: "f1"}


def named_task(task_name: str | None) -> tuple[str, str] | None:
    """(task name, task type) of a `--task_name` of a new task type, None for the others (GLUE, the demo)."""
    if task_name is None:
        return None
    return TASK_NAMES.get(task_name.strip().lower().replace("-", "_"))


def task_type_of(cfg: DataConfig) -> str:
    """The task type of the data options: by `--task_name`, else by the files given (SQuAD JSON, CoNLL text or
    JSON lines with `tokens` and `ner_tags`), else classification."""
    named = named_task(cfg.task_name)
    if named is not None:
        return named[1]
    if cfg.task_name is None and not cfg.data_dir:
        from prunecli.tasks import ner, qa

        files = [f for f in (cfg.train_file, cfg.validation_file) if f and Path(f).is_file()]
        if files and all(Path(f).suffix.lower() in (".json", ".jsonl") and qa.is_qa_file(f) for f in files):
            return QUESTION_ANSWERING
        if files and all(ner.is_conll_file(f) for f in files):
            return TOKEN_CLASSIFICATION
    return CLASSIFICATION


def model_task_type(config: Any) -> str | None:
    """The task type a model (by its class) or a config (by its `architectures`) answers, None when it does not
    say."""
    for name in (type(config).__name__, *(getattr(config, "architectures", None) or ())):
        for suffix, kind in ARCHITECTURE_SUFFIXES.items():
            if str(name).endswith(suffix):
                return kind
    return None


def output_logits(outputs: Any):
    """One logits tensor of any task's model output: `logits`, or question answering's start and end logits
    stacked on a last axis ([batch, tokens, 2])."""
    logits = getattr(outputs, "logits", None)
    if logits is not None:
        return logits
    import torch

    return torch.stack([outputs.start_logits, outputs.end_logits], dim=-1)


def folder_task_type(path: str) -> str:
    """The task type of a model folder from its config.json (no torch); classification when it does not say."""
    import json

    from prunecli.models.folders import resolve_model_path

    try:
        config = json.loads((Path(resolve_model_path(path)) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return CLASSIFICATION
    return config_task_type(config) or CLASSIFICATION


def config_task_type(config: Mapping[str, Any]) -> str | None:
    """The task type a `config.json` (as a dict) names by its `architectures`, None when it does not say."""
    return model_task_type(type("Config", (), {"architectures": config.get("architectures")})())


def auto_model_class(task_type: str):
    """The transformers Auto class that loads models of `task_type`."""
    import transformers

    return getattr(transformers, AUTO_CLASSES[task_type])


def _split_files(cfg: DataConfig, need_train: bool, names: tuple[Sequence[str], Sequence[str]],
                 what: str) -> tuple[Path | None, Path]:
    """(training file or None, evaluation file) from --data_dir (the first of `names` = (training file names,
    evaluation file names) found in it) or --train_file / --validation_file."""
    if cfg.data_dir:
        folder = Path(cfg.data_dir)
        if not folder.is_dir():
            raise DataError(f"--data_dir {folder} is not a folder.")
        train, dev = (next((folder / n for n in group if (folder / n).is_file()), None) for group in names)
        if need_train and train is None:
            raise DataError(f"--data_dir {folder} has no training file for {what}.",
                            hint=f"expected one of: {', '.join(names[0])}.")
        if dev is None:
            raise DataError(f"--data_dir {folder} has no evaluation file for {what}.",
                            hint=f"expected one of: {', '.join(names[1])}.")
        return (train if need_train else None), dev
    if need_train and not cfg.train_file:
        raise DataError(f"training on {what} needs --train_file or --data_dir.")
    if not cfg.validation_file:
        raise DataError(f"{what} needs an evaluation file: --validation_file or --data_dir.")
    return (Path(cfg.train_file) if need_train else None), Path(cfg.validation_file)


def load_qa_task(cfg: DataConfig, need_train: bool) -> TaskData:
    """SQuAD-format questions from --data_dir (official or ../shared/squad names) or own files."""
    from prunecli.data.examples import TaskData
    from prunecli.tasks import qa

    name = (named_task(cfg.task_name) or ("squad", QUESTION_ANSWERING))[0]
    if not (cfg.data_dir or cfg.train_file or cfg.validation_file):
        return _qa_hub(need_train)
    train_path, dev_path = _split_files(cfg, need_train, (qa.TRAIN_NAMES, qa.DEV_NAMES), "question answering")
    train = qa.rows_dataset(qa.read_squad(train_path)) if train_path else None
    dev = qa.rows_dataset(qa.read_squad(dev_path))
    sources = {"validation": str(dev_path)} | ({"train": str(train_path)} if train_path else {})
    return TaskData(task_name=name, train=train, eval_splits={"validation": dev}, text_columns=("question", "context"),
                    label_list=None, is_regression=False, source=_describe(sources, train, dev, "questions"),
                    split_sources=sources, task_type=QUESTION_ANSWERING)


def _qa_hub(need_train: bool) -> TaskData:
    from prunecli.data.examples import TaskData
    from prunecli.tasks import qa

    try:
        from datasets import load_dataset

        hub = load_dataset("rajpurkar/squad")
    except Exception as err:
        raise DataError(f"cannot load squad from the Hugging Face hub ({type(err).__name__}).",
                        hint="pass local data: --task_name squad --data_dir DIR (train-v1.1.json, "
                             "dev-v1.1.json)") from None

    def rows(split):
        return qa.rows_dataset([{k: r[k] for k in qa.COLUMNS} for r in split])

    train = rows(hub["train"]) if need_train else None
    return TaskData(task_name="squad", train=train, eval_splits={"validation": rows(hub["validation"])},
                    text_columns=("question", "context"), label_list=None, is_regression=False,
                    source="squad from the Hugging Face hub", task_type=QUESTION_ANSWERING)


def load_ner_task(cfg: DataConfig, need_train: bool) -> TaskData:
    """CoNLL-format sentences from --data_dir (train.txt, dev.txt or valid.txt) or own files."""
    from prunecli.data.examples import TaskData
    from prunecli.tasks import ner

    name = (named_task(cfg.task_name) or ("ner", TOKEN_CLASSIFICATION))[0]
    if not (cfg.data_dir or cfg.train_file or cfg.validation_file):
        raise DataError(f"--task_name {cfg.task_name} needs local data.",
                        hint="--data_dir DIR holding train.txt and dev.txt (CoNLL format), or --train_file and "
                             "--validation_file.")
    train_path, dev_path = _split_files(cfg, need_train, (ner.TRAIN_NAMES, ner.DEV_NAMES), "token classification")
    train = ner.read_conll(train_path) if train_path else None
    dev = ner.read_conll(dev_path)
    labels = ner.label_list(train[1] if train else dev[1])
    sources = {"validation": str(dev_path)} | ({"train": str(train_path)} if train_path else {})
    train_ds = ner.sentences_dataset(*train) if train else None
    dev_ds = ner.sentences_dataset(*dev)
    return TaskData(task_name=name, train=train_ds, eval_splits={"validation": dev_ds}, text_columns=("tokens",),
                    label_list=labels, is_regression=False, source=_describe(sources, train_ds, dev_ds, "sentences"),
                    split_sources=sources, task_type=TOKEN_CLASSIFICATION)


def _describe(sources: dict[str, str], train, dev, unit: str) -> str:
    parts = [f"{len(train)} {unit} from {sources['train']}"] if train is not None else []
    parts.append(f"{len(dev)} {unit} from {sources['validation']}")
    return "; ".join(parts)


def load_task(cfg: DataConfig, need_train: bool) -> TaskData | None:
    """The examples of a question-answering or token-classification run, None for classification data."""
    kind = task_type_of(cfg)
    if kind == QUESTION_ANSWERING:
        return load_qa_task(cfg, need_train)
    if kind == TOKEN_CLASSIFICATION:
        return load_ner_task(cfg, need_train)
    return None
