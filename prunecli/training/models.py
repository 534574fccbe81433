"""Everything `finetune` and `prune` do before the loop: logging, the output folder, data, the model with the
data's labels (`prunecli.models.loading.load_model_and_tokenizer`) and the cached tokenization."""

from __future__ import annotations

import logging
from pathlib import Path

from prunecli.config import RunConfig
from prunecli.data.sources import load_task_data
from prunecli.data.tokenize import tokenize_task_data
from prunecli.errors import UserError
from prunecli.models.loading import load_model_and_tokenizer
from prunecli.training import checkpoint as ckpt

logger = logging.getLogger("prunecli")


def check_output_dir(cfg: RunConfig) -> Path | None:
    """The absolute output folder, after refusing a non-empty one (unless --overwrite_output_dir or resuming)."""
    tc = cfg.train
    return ckpt.check_output_dir(tc.output_dir, tc.overwrite_output_dir, tc.resume_from_checkpoint)


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
