"""Loading a model and its tokenizer for a task, and everything `finetune` and `prune` do before the loop.

`load_model_and_tokenizer` writes the data's label maps into the config (a checkpoint's `id2label`
always says what its outputs mean), reads weights from safetensors or with `weights_only=True`, runs
model code from the checkpoint only with `--trust_remote_code`, and never feeds more tokens than the
model has positions. Every problem a user can cause is a `CheckpointError` naming the path.
"""

from __future__ import annotations

import logging
from pathlib import Path

from prunecli.config import RunConfig
from prunecli.data.demo import resolve_model_path
from prunecli.data.examples import TaskData
from prunecli.data.sources import load_task_data
from prunecli.data.tokenize import tokenize_task_data
from prunecli.errors import CheckpointError, UserError
from prunecli.training import checkpoint as ckpt

logger = logging.getLogger("prunecli")


def check_output_dir(cfg: RunConfig) -> Path | None:
    """The absolute output folder, after refusing a non-empty one (unless --overwrite_output_dir or resuming)."""
    tc = cfg.train
    return ckpt.check_output_dir(tc.output_dir, tc.overwrite_output_dir, tc.resume_from_checkpoint)


def _is_default_labels(label2id: dict[str, int] | None) -> bool:
    return not label2id or all(str(k).startswith("LABEL_") for k in label2id)


def _max_positions(config) -> int | None:
    positions = getattr(config, "max_position_embeddings", None)
    if not isinstance(positions, int) or positions <= 0:
        return None
    model_type = getattr(config, "model_type", "") or ""
    offset = 2 if "roberta" in model_type or model_type in ("camembert", "longformer") else 0
    return positions - offset


def load_model_and_tokenizer(path: str, data: TaskData, cfg: RunConfig, *, training: bool = True):
    """Load a sequence classifier and its tokenizer, with the data's label maps written into the config.

    Training: the model's own label ids are kept when its labels are the data's labels (a fine-tuned
    model being pruned), else the data's sorted labels define new ids. Evaluation: the model's labels
    rule, and `tokenize_task_data` rejects data labels the model does not know. Weights load from
    safetensors when present and otherwise with `weights_only=True`; model code from the checkpoint runs
    only with --trust_remote_code. Returns (model, tokenizer).
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    tc = cfg.train
    resolved = resolve_model_path(path)
    _check_model_folder(resolved, path)
    trust = bool(tc.trust_remote_code)
    try:
        config = AutoConfig.from_pretrained(resolved, trust_remote_code=trust)
    except Exception as err:
        raise _load_error(path, "its config", err) from None

    model_labels = None if _is_default_labels(config.label2id) else dict(config.label2id)
    if data.is_regression:
        if not training and config.num_labels != 1:
            raise CheckpointError(f"{path} has {config.num_labels} outputs; this data is a regression task (1 output).",
                                  hint="evaluate it on classification data, or fine-tune a regression model.")
        config.num_labels = 1
        config.problem_type = "regression"
    else:
        labels = list(data.label_list or [])
        if model_labels is not None and (not training or set(model_labels) == set(labels)):
            label2id = {str(k): int(v) for k, v in model_labels.items()}
        elif not training and config.num_labels != len(labels):
            raise CheckpointError(f"{path} has {config.num_labels} outputs and no label names; the data has "
                                  f"{len(labels)} labels ({', '.join(labels)}).",
                                  hint="evaluate it on the data it was fine-tuned on.")
        else:
            if model_labels is not None:
                logger.warning("the model was trained with labels %s, the data has %s: using the data's labels.",
                               sorted(model_labels), labels)
            label2id = {label: i for i, label in enumerate(labels)}
        config.num_labels = len(label2id)
        config.label2id = label2id
        config.id2label = {i: label for label, i in label2id.items()}
        config.problem_type = "single_label_classification"
    if training and data.task_name:
        config.finetuning_task = data.task_name

    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            resolved, config=config, trust_remote_code=trust, ignore_mismatched_sizes=tc.ignore_mismatched_sizes,
            weights_only=True,
        )
    except RuntimeError as err:
        if "ignore_mismatched_sizes" in str(err):
            raise CheckpointError(f"{path}: its classifier head has another number of outputs than the "
                                  f"{config.num_labels} this data needs.",
                                  hint="pass --ignore_mismatched_sizes to start a new head.") from None
        raise _load_error(path, "its weights", err) from None
    except Exception as err:
        raise _load_error(path, "its weights", err) from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved, use_fast=not cfg.data.use_slow_tokenizer,
                                                  trust_remote_code=trust)
    except Exception as err:
        raise _load_error(path, "its tokenizer", err) from None

    positions = _max_positions(model.config)
    if positions and (tokenizer.model_max_length is None or tokenizer.model_max_length > positions):
        tokenizer.model_max_length = positions  # never feed more tokens than the model has positions
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:  # GPT-style tokenizers
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _check_model_folder(resolved: str, given: str) -> None:
    path = Path(resolved)
    if path.is_dir():
        if not (path / "config.json").is_file():
            hint = "pass a folder with config.json and model weights"
            if ckpt.is_resumable_checkpoint(path):
                hint = "step_N / epoch_N folders are resumable states; use the run's output folder"
            raise CheckpointError(f"{given} is not a model folder (no config.json).", hint=hint + ".")
    elif given.startswith((".", "/", "~")) or given.count("/") > 1 or path.exists():
        # Hub ids look like `name` or `org/name`; anything else that is not a folder is a missing folder.
        raise CheckpointError(f"model folder {given} does not exist.")


def _load_error(path: str, what: str, err: Exception) -> CheckpointError:
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    local = Path(resolve_model_path(path)).is_dir()
    hint = "the files may be truncated or corrupted; re-save or re-download them." if local else \
        "it is not a local folder and the Hugging Face hub is not reachable: pass a model folder."
    return CheckpointError(f"cannot load {what} from {path}: {reason[:300]}", hint=hint)


def prepare_training(cfg: RunConfig, *, check_output: bool = True):
    """Everything before the Trainer, shared by `finetune` and `prune`: logging, output-folder check, data,
    model (with the data's labels), tokenizer and cached tokenization. Returns (model, tokenizer, data, tokenized).

    `check_output=False` skips the non-empty output folder check (e.g. `prune --dry_run` writes nothing).
    """
    from transformers import set_seed

    from prunecli.training.progress import setup_logging
    from prunecli.training.setup import partial_state

    tc = cfg.train
    state = partial_state()
    setup_logging(tc.log_level, state.is_main_process)
    if not tc.model_name_or_path:
        raise UserError("--model_name_or_path is required.")
    if check_output:
        output_dir = check_output_dir(cfg)
        if output_dir is None:
            logger.warning("no --output_dir: the trained model will not be saved.")
    with state.main_process_first():
        data = load_task_data(cfg.data, need_train=True, seed=tc.seed)
    logger.info("data: %s", data.source)
    set_seed(tc.seed)  # a new classifier head's initialisation
    model, tokenizer = load_model_and_tokenizer(tc.model_name_or_path, data, cfg, training=True)
    with state.main_process_first():
        tokenized = tokenize_task_data(data, tokenizer, cfg.data, None if data.is_regression else model.config.label2id)
    return model, tokenizer, data, tokenized
