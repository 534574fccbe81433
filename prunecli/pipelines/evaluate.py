"""Score a checkpoint, or a folder written by `prunecli export`, with its task's metric: what `prunecli evaluate`,
the demo and Python callers run.

    from prunecli.config import DataConfig, RunConfig, TrainConfig
    from prunecli.pipelines.evaluate import evaluate

    result = evaluate("sparse_mrpc", RunConfig(data=DataConfig(), train=TrainConfig()))
    result["metrics"]  # {"accuracy": ..., "f1": ...}

With no data options the checkpoint's recorded data (its run_args.json) is used. An exported folder is scored
through onnxruntime (`prunecli.inference.runtime.evaluate_exported`): the accuracy a user reads is that of the
file they ship.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from prunecli.config import RunConfig


def evaluate(checkpoint: str, cfg: RunConfig) -> dict[str, Any]:
    """Score `checkpoint` on the evaluation split(s) of `cfg.data`.

    Returns {"checkpoint", "task_name", "data", "num_examples", "metrics"} (an exported folder adds "runtime"
    and "precision"). Every process of a multi-process run returns the same metrics.
    """
    from prunecli.inference.runtime import is_exported

    if is_exported(checkpoint):
        from prunecli.inference.runtime import evaluate_exported

        return evaluate_exported(checkpoint, cfg)
    from transformers import set_seed

    from prunecli.data.sources import load_task_data
    from prunecli.data.tokenize import tokenize_task_data
    from prunecli.models.folders import with_recorded_data
    from prunecli.models.loading import load_model_and_tokenizer
    from prunecli.training.setup import partial_state
    from prunecli.training.trainer import Trainer

    state = partial_state()
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
    return {
        "checkpoint": checkpoint, "task_name": data.task_name, "data": data.source,
        "num_examples": {name: len(ds) for name, ds in data.eval_splits.items()}, "metrics": metrics,
    }
