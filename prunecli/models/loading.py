"""Loading models and tokenizers: for a task (`finetune`, `prune`, `evaluate`), for inference (`benchmark`,
`onnx`, `compact`), and a checkpoint's tokenizer.

Weights load from safetensors, else with `weights_only=True`; model code from a checkpoint runs only with
`--trust_remote_code` (never for inference loads); a tokenizer never takes more tokens than the model has
positions. The compacted architectures load because `import prunecli` registers them with transformers' Auto
classes (`prunecli.models.architectures`). Every problem a user can cause is a `CheckpointError` naming the path.
torch and transformers are imported inside the functions.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunecli.errors import CheckpointError
from prunecli.models.folders import check_model_folder, load_error, resolve_model_path

if TYPE_CHECKING:  # pragma: no cover
    from prunecli.config import RunConfig
    from prunecli.data.examples import TaskData

logger = logging.getLogger("prunecli")
# Any one of these in a folder means a tokenizer was saved there (fast, slow WordPiece / BPE, SentencePiece).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model",
                   "sentencepiece.bpe.model", "tokenizer.model")


@contextlib.contextmanager
def quiet_transformers():
    """Hide transformers' weight-loading progress bar and its load report for the duration (restored after)."""
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    level = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bar:
            hf_logging.enable_progress_bar()


def _is_default_labels(label2id: dict[str, int] | None) -> bool:
    return not label2id or all(str(k).startswith("LABEL_") for k in label2id)


def max_positions(config) -> int | None:
    """How many tokens the model can take (position embeddings, less RoBERTa's offset), or None if unbounded."""
    positions = getattr(config, "max_position_embeddings", None)
    if not isinstance(positions, int) or positions <= 0:
        return None
    model_type = getattr(config, "model_type", "") or ""
    offset = 2 if "roberta" in model_type or model_type in ("camembert", "longformer") else 0
    return positions - offset


def clamp_to_positions(tokenizer, config) -> None:
    """Lower `tokenizer.model_max_length` to the tokens the model of `config` can take (its position
    embeddings): never feed more tokens than the model has positions. A tokenizer of None is left alone."""
    positions = max_positions(config)
    if tokenizer is not None and positions and (tokenizer.model_max_length is None
                                                or tokenizer.model_max_length > positions):
        tokenizer.model_max_length = positions


def data_label_ids(config, data: TaskData, path: str, *, training: bool, new_task: bool = False
                   ) -> dict[str, int] | None:
    """The label ids a model uses on `data` (None for regression and question-answering data), or a
    CheckpointError naming `path` when an evaluated model cannot score it (another number of outputs than the
    data's labels). `new_task`: the model's head is another task's, so its label names are not kept.

    Training: the model's own label ids are kept when its labels are the data's labels, else the data's sorted
    labels define new ids. Evaluation: the model's named labels rule (unknown data labels are refused when the
    data is tokenized); a model with only default names (LABEL_0, ...) must have one output per data label.
    """
    if data.is_regression:
        if not training and config.num_labels != 1:
            raise CheckpointError(f"{path} has {config.num_labels} outputs; this data is a regression task (1 output).",
                                  hint="evaluate it on classification data, or fine-tune a regression model.")
        return None
    from prunecli.tasks import QUESTION_ANSWERING

    if data.task_type == QUESTION_ANSWERING:
        return None
    model_labels = None if _is_default_labels(config.label2id) or new_task else dict(config.label2id)
    labels = list(data.label_list or [])
    if model_labels is not None and (not training or set(model_labels) == set(labels)):
        return {str(k): int(v) for k, v in model_labels.items()}
    if not training and config.num_labels != len(labels):
        raise CheckpointError(f"{path} has {config.num_labels} outputs and no label names; the data has "
                              f"{len(labels)} labels ({', '.join(labels)}).",
                              hint="evaluate it on the data it was fine-tuned on.")
    if model_labels is not None:
        logger.warning("the model was trained with labels %s, the data has %s: using the data's labels.",
                       sorted(model_labels), labels)
    return {label: i for i, label in enumerate(labels)}


def check_same_task(config, data: TaskData, path: str, *, role: str = "", hint: str | None = None) -> None:
    """A CheckpointError naming `path` (and its `role`, e.g. "the distillation teacher") when the model (its config's
    architecture) is for another task type than `data` (a question-answering model scored on NER data, say)."""
    from prunecli.tasks import DESCRIPTIONS, model_task_type

    model_type = model_task_type(config)
    if model_type is not None and model_type != data.task_type:
        raise CheckpointError(f"{role + ' ' if role else ''}{path} is a model for {DESCRIPTIONS[model_type]}; this "
                              f"data is for {DESCRIPTIONS[data.task_type]}.",
                              hint=hint or "evaluate it on data of its own task (run_args.json in the checkpoint "
                                           "names it), or fine-tune a model for this task first.")


def check_teacher_task(path: str, data: TaskData, cfg: RunConfig) -> None:
    """Before a pruning run starts: a distillation teacher fine-tuned for another task type than the data is a
    CheckpointError naming it (its config alone is read; a missing folder is left to the teacher's loading)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(resolve_model_path(path),
                                            trust_remote_code=bool(cfg.train.trust_remote_code))
    except Exception:  # noqa: BLE001 - the full load reports it, with its own message
        return
    check_same_task(config, data, path, role="the distillation teacher",
                    hint="distil from a model fine-tuned for this task (--teacher_model_name_or_path; by default the "
                         "model being pruned is the teacher), or prune without distillation (--distill_loss_weight "
                         "0).")


def load_model_and_tokenizer(path: str, data: TaskData, cfg: RunConfig, *, training: bool = True):
    """Load a sequence classifier and its tokenizer, with the data's label maps written into the config.

    Training: the model's own label ids are kept when its labels are the data's labels (a fine-tuned
    model being pruned), else the data's sorted labels define new ids. Evaluation: the model's labels
    rule, and `tokenize_task_data` rejects data labels the model does not know. Weights load from
    safetensors when present and otherwise with `weights_only=True`; model code from the checkpoint runs
    only with --trust_remote_code. Returns (model, tokenizer).
    """
    from transformers import AutoConfig, AutoTokenizer

    from prunecli.tasks import QUESTION_ANSWERING, auto_model_class, model_task_type

    tc = cfg.train
    resolved = resolve_model_path(path)
    check_model_folder(resolved, path)
    trust = bool(tc.trust_remote_code)
    try:
        config = AutoConfig.from_pretrained(resolved, trust_remote_code=trust)
    except Exception as err:
        raise load_error(path, "its config", err) from None

    task_type = data.task_type
    model_type = model_task_type(config)
    if not training:
        check_same_task(config, data, path)
    new_task = training and model_type not in (None, task_type)  # another task's head: this task starts a new one
    label2id = data_label_ids(config, data, path, training=training, new_task=new_task)
    if task_type == QUESTION_ANSWERING:  # one start and one end logit per token: no labels
        if model_type != QUESTION_ANSWERING:
            config.num_labels = 2
    elif data.is_regression:
        config.num_labels = 1
        config.problem_type = "regression"
    else:
        config.num_labels = len(label2id)
        config.label2id = label2id
        config.id2label = {i: label for label, i in label2id.items()}
        config.problem_type = "single_label_classification" if task_type == "classification" else None
    if training and data.task_name:
        config.finetuning_task = data.task_name

    try:
        model = auto_model_class(task_type).from_pretrained(
            resolved, config=config, trust_remote_code=trust,
            ignore_mismatched_sizes=tc.ignore_mismatched_sizes or new_task, weights_only=True,
        )
    except RuntimeError as err:
        if "ignore_mismatched_sizes" in str(err):
            raise CheckpointError(f"{path}: its classifier head has another number of outputs than the "
                                  f"{config.num_labels} this data needs.",
                                  hint="pass --ignore_mismatched_sizes to start a new head.") from None
        raise load_error(path, "its weights", err) from None
    except Exception as err:
        raise load_error(path, "its weights", err) from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved, use_fast=not cfg.data.use_slow_tokenizer,
                                                  trust_remote_code=trust)
    except Exception as err:
        raise load_error(path, "its tokenizer", err) from None

    clamp_to_positions(tokenizer, model.config)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:  # GPT-style tokenizers
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load_classifier(name_or_path: str | Path, *, quiet: bool = True) -> tuple[Any, dict[str, Any]]:
    """Load a sequence classifier for inference: (model in eval mode on CPU, facts about the load). A checkpoint
    whose config names a question-answering or token-classification architecture loads with that Auto class
    (`prunecli.tasks`), so compact, benchmark and inspect work on every task type.

    `resolve_model_path` maps the packaged MiniLM's aliases; the folder must hold config.json. Weights load from
    safetensors, else with `weights_only=True`; no model code from the checkpoint ever runs. A folder saved from a
    bare encoder (e.g. a BertModel) loads with a newly initialised head, which is fine for timing: the facts say
    so (`new_head`). Any problem is a `CheckpointError` naming the path.
    """
    given = str(name_or_path)
    resolved = resolve_model_path(given)
    check_model_folder(resolved, given)
    from transformers import AutoConfig

    from prunecli.tasks import CLASSIFICATION, auto_model_class, model_task_type

    try:
        with quiet_transformers() if quiet else contextlib.nullcontext():
            task_type = model_task_type(AutoConfig.from_pretrained(resolved)) or CLASSIFICATION
            model, loading = auto_model_class(task_type).from_pretrained(
                resolved, weights_only=True, output_loading_info=True
            )
    except Exception as err:
        raise load_error(given, "a sequence classifier", err) from None
    model.eval()
    missing = sorted(loading.get("missing_keys", []) or [])
    facts = {
        "path": given, "resolved_path": str(Path(resolved).resolve()) if Path(resolved).exists() else resolved,
        "architecture": type(model).__name__, "model_type": getattr(model.config, "model_type", None),
        "missing_keys": len(missing), "new_head": bool(missing), "task": task_type,
    }
    if missing:
        logger.info("%s: %d weights newly initialised (%s ...)", given, len(missing), ", ".join(missing[:3]))
    return model, facts


def load_checkpoint_tokenizer(name_or_path: str, *, required: bool):
    """The tokenizer saved with a checkpoint, or None when it has none and `required` is false (a model saved
    alone); a `CheckpointError` naming the path when it is required.

    A local folder without tokenizer files has no tokenizer: transformers would otherwise build an empty one
    from the config's model type (special tokens only), which would tokenize every word as [UNK]."""
    from transformers import AutoTokenizer

    resolved = resolve_model_path(name_or_path)
    if Path(resolved).is_dir() and not any((Path(resolved) / name).is_file() for name in TOKENIZER_FILES):
        if required:
            raise CheckpointError(f"{name_or_path} has no tokenizer (no tokenizer.json, tokenizer_config.json or "
                                  "vocab file).", hint="save the tokenizer with the model "
                                  "(`tokenizer.save_pretrained(folder)`), or leave out the data options.")
        return None
    try:
        with quiet_transformers():
            return AutoTokenizer.from_pretrained(resolved)
    except Exception as err:
        if required:
            raise load_error(name_or_path, "its tokenizer", err) from None
        return None
