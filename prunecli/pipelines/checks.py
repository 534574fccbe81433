"""Every check of a run's inputs that needs no data and no model: options, paths, the recipe.

`finetune` and `prune` call `check_run` first, so a bad `--learning_rate` or a missing `--train_file` costs a
second, not a model load.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from prunecli.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from prunecli.config import RunConfig


def check_paths(cfg: RunConfig) -> None:
    """The files and folders the options name exist (the model is the loader's: a hub id is no path)."""
    data = cfg.data
    for name, want_dir in (("data_dir", True), ("train_file", False), ("validation_file", False)):
        value = getattr(data, name)
        if value is None:
            continue
        path = Path(value)
        if not (path.is_dir() if want_dir else path.is_file()):
            kind = "folder" if want_dir else "file"
            raise UserError(f"--{name} {value}: no such {kind}.", hint="Check the path.")
    resume = cfg.train.resume_from_checkpoint
    if resume and resume != "latest" and not Path(resume).is_dir():
        raise UserError(f"--resume_from_checkpoint {resume}: no such folder.",
                        hint="Give a checkpoint folder written by --checkpointing_steps, or `latest`.")


def check_run(cfg: RunConfig) -> None:
    """Refuse options outside their ranges or choices, options that cannot work together, and missing paths.

    The recipe is the prune pipeline's to check (`prunecli.pipelines.prune.run_recipe`).
    """
    from prunecli.config import check_values
    from prunecli.training.setup import validate_train_config

    check_values(cfg)
    validate_train_config(cfg)
    if not cfg.train.model_name_or_path:
        raise UserError("--model_name_or_path is required.")
    check_paths(cfg)
