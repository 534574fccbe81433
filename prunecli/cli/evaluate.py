"""`prunecli evaluate CHECKPOINT`: score a checkpoint with its task's metric (GLUE, SQuAD EM/F1, seqeval F1)."""

from __future__ import annotations

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
    """`prunecli.pipelines.evaluate.evaluate`, then a rich table or, with as_json, JSON on stdout (once, from
    the main process)."""
    from prunecli.pipelines.evaluate import evaluate
    from prunecli.training.progress import setup_logging
    from prunecli.training.setup import partial_state

    main = partial_state().is_main_process
    setup_logging("warning" if as_json and cfg.train.log_level == "info" else cfg.train.log_level, main)
    result = evaluate(checkpoint, cfg)
    if main:
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
