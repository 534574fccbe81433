"""`prunecli finetune`: train a dense classifier and save it as a standard Hugging Face checkpoint."""

from __future__ import annotations

from typing import Any

from prunecli.cli.options import (
    DATA_OPTIONS,
    OUTPUT_OPTIONS,
    TRAINING_OPTIONS,
    ModelPath,
    WithTracking,
    with_options,
)
from prunecli.config import RunConfig

NAME = "finetune"


@with_options(DATA_OPTIONS, TRAINING_OPTIONS, OUTPUT_OPTIONS, {"with_tracking": WithTracking})
def command(model_name_or_path: ModelPath, **options: Any) -> None:
    """Train a dense classifier (GLUE task, a GLUE folder, or your own csv/json/tsv files)."""
    from prunecli.cli.app import run_config

    run(run_config({"model_name_or_path": model_name_or_path, **options}))


def run(cfg: RunConfig) -> dict[str, Any]:
    """Train a dense classifier and save it to --output_dir. Returns the Trainer's results (+ output_dir)."""
    from prunecli.cli.tables import render_summary
    from prunecli.training.models import prepare_training
    from prunecli.training.trainer import Trainer

    model, tokenizer, data, tokenized = prepare_training(cfg)
    beta2 = 0.999 if cfg.train.adam_beta2 is None else cfg.train.adam_beta2
    trainer = Trainer(cfg, model, tokenizer, tokenized, adam_beta2=beta2)
    results = trainer.fit()
    output_dir = trainer.save_final()
    results["output_dir"] = str(output_dir) if output_dir else None
    if trainer.is_main_process:
        extra = {"model": cfg.train.model_name_or_path, "data": data.source}
        if output_dir:
            extra["saved to"] = str(output_dir)
        render_summary(results, title="Fine-tuning summary", extra=extra)
    return results
