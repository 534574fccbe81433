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

NAME = "finetune"


@with_options(DATA_OPTIONS, TRAINING_OPTIONS, OUTPUT_OPTIONS, {"with_tracking": WithTracking})
def command(model_name_or_path: ModelPath, **options: Any) -> None:
    """Train a dense model: GLUE, SQuAD question answering, CoNLL named entities, or your own files."""
    from prunecli.cli.app import run_config
    from prunecli.pipelines.finetune import finetune

    finetune(run_config({"model_name_or_path": model_name_or_path, **options}), on_event=render)


def render(kind: str, payload: dict[str, Any]) -> None:
    """The end-of-run summary table."""
    from prunecli.cli.tables import render_summary

    if kind == "summary":
        extra = {"model": payload["model"], "data": payload["data"]}
        if payload["output_dir"]:
            extra["saved to"] = payload["output_dir"]
        render_summary(payload["results"], title="Fine-tuning summary", extra=extra)
