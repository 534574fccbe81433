"""`prunecli evaluate CHECKPOINT`: score a checkpoint with its task's metric (GLUE, SQuAD EM/F1, seqeval F1)."""

from __future__ import annotations

import dataclasses
import logging
import sys
from typing import Annotated, Any

import typer

from prunecli.cli.options import EVALUATE_DATA_OPTIONS, EvalBS, Seed, TrustRemote, with_options
from prunecli.config import EVALUATE_BATCH_SIZE, RunConfig

NAME = "evaluate"
logger = logging.getLogger("prunecli")


@with_options(EVALUATE_DATA_OPTIONS,
              {"per_device_eval_batch_size": EvalBS, "seed": Seed, "trust_remote_code": TrustRemote},
              defaults={"per_device_eval_batch_size": EVALUATE_BATCH_SIZE})
def command(
    checkpoint: Annotated[str, typer.Argument(help="A checkpoint folder written by prunecli or any HF model, or "
                                              "a folder written by prunecli export (scored with onnxruntime).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
    **options: Any,
) -> None:
    """Score a checkpoint or an exported ONNX folder with its task's metric (GLUE, SQuAD EM and F1, entity F1)."""
    from prunecli.cli.app import run_config

    options.pop("train_file", None)  # finetune's data options can be reused as they are
    run(checkpoint, run_config(options), as_json=as_json)


def run(checkpoint: str, cfg: RunConfig, as_json: bool = False) -> dict[str, Any]:
    """Score a checkpoint on the evaluation split(s); print a rich table or, with as_json, JSON on stdout.

    Returns {"checkpoint", "task_name", "data", "num_examples", "metrics"}. An exported folder (`prunecli export`)
    is scored through onnxruntime (`prunecli.inference.runtime.evaluate_exported`): the file that is shipped.
    """
    from prunecli.inference.runtime import is_exported

    if is_exported(checkpoint):
        from prunecli.inference.runtime import evaluate_exported
        from prunecli.training.progress import setup_logging

        setup_logging("warning" if as_json and cfg.train.log_level == "info" else cfg.train.log_level, True)
        result = evaluate_exported(checkpoint, cfg)
        show(result, as_json)
        return result
    from transformers import set_seed

    from prunecli.data.sources import load_task_data
    from prunecli.data.tokenize import tokenize_task_data
    from prunecli.models.folders import with_recorded_data
    from prunecli.models.loading import load_model_and_tokenizer
    from prunecli.training.progress import setup_logging
    from prunecli.training.setup import partial_state
    from prunecli.training.trainer import Trainer

    state = partial_state()
    setup_logging("warning" if as_json and cfg.train.log_level == "info" else cfg.train.log_level,
                  state.is_main_process)
    cfg.data = with_recorded_data(checkpoint, cfg.data)
    with state.main_process_first():
        data = load_task_data(cfg.data, need_train=False, seed=cfg.train.seed)
    set_seed(cfg.train.seed)
    model, tokenizer = load_model_and_tokenizer(checkpoint, data, cfg, training=False)
    with state.main_process_first():
        tokenized = tokenize_task_data(data, tokenizer, cfg.data, None if data.is_regression else model.config.label2id)
    # Evaluation writes nothing: no output folder, trackers or checkpoints, whatever the config says.
    eval_train = dataclasses.replace(cfg.train, output_dir=None, report_to=None, checkpointing_steps=None)
    trainer = Trainer(RunConfig(data=cfg.data, train=eval_train), model, tokenizer, tokenized)
    metrics = trainer.evaluate()
    result = {
        "checkpoint": checkpoint, "task_name": data.task_name, "data": data.source,
        "num_examples": {name: len(ds) for name, ds in data.eval_splits.items()}, "metrics": metrics,
    }
    if trainer.is_main_process:
        show(result, as_json)
    return result


def show(result: dict[str, Any], as_json: bool) -> None:
    """The metrics as a table, or as JSON on stdout."""
    from prunecli.cli.tables import render_metrics
    from prunecli.training import checkpoint as ckpt

    if as_json:
        sys.stdout.write(ckpt.json_text(result))
        sys.stdout.flush()
    else:
        render_metrics(result)
