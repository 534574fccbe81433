"""Fine-tune from a configuration: train a dense classifier and save it as a standard Hugging Face checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prunecli.config import RunConfig

#: torch's (and the HF Trainer's) AdamW beta2, finetune's default.
FINETUNE_ADAM_BETA2 = 0.999


def finetune(cfg: RunConfig, *, on_event: Callable[[str, Any], None] | None = None) -> dict[str, Any]:
    """Train a dense classifier and save it to `cfg.train.output_dir`; every input is checked before the data
    and the model are loaded. Returns the Trainer's results plus `output_dir` (None when nothing was saved).

    `on_event("summary", {"results", "model", "data", "output_dir"})` is called once, on the main process, at
    the end (the CLI renders it as a table).
    """
    from prunecli.pipelines.checks import check_run
    from prunecli.training.models import prepare_training
    from prunecli.training.trainer import Trainer

    check_run(cfg)
    model, tokenizer, data, tokenized = prepare_training(cfg)
    beta2 = FINETUNE_ADAM_BETA2 if cfg.train.adam_beta2 is None else cfg.train.adam_beta2
    trainer = Trainer(cfg, model, tokenizer, tokenized, adam_beta2=beta2)
    results = trainer.fit()
    output_dir = trainer.save_final()
    results["output_dir"] = str(output_dir) if output_dir else None
    if on_event is not None and trainer.is_main_process:
        on_event("summary", {"results": results, "model": cfg.train.model_name_or_path, "data": data.source,
                             "output_dir": results["output_dir"]})
    return results
