"""Pipelines: whole jobs from a run configuration, what the CLI, the demo, bench/ and Python callers run.

    from prunecli.config import RunConfig, DataConfig, TrainConfig, PruneConfig
    from prunecli.pipelines import prune

    results = prune(RunConfig(data=DataConfig(task_name="sst2"),
                              train=TrainConfig(model_name_or_path="dense", output_dir="sparse"),
                              prune=PruneConfig(target_sparsity=0.9, pruning_pattern="4x1")))

Each pipeline checks every input (options, recipe, paths) before it reads data or loads a model, and reports
what it does through an optional `on_event` callback instead of printing (`prunecli.cli` renders the events).
"""

from __future__ import annotations

from typing import Any

__all__ = ["check_run", "finetune", "prune"]


def __getattr__(name: str) -> Any:  # lazy: importing the room pulls in no torch
    if name == "prune":
        from prunecli.pipelines.prune import prune

        return prune
    if name == "finetune":
        from prunecli.pipelines.finetune import finetune

        return finetune
    if name == "check_run":
        from prunecli.pipelines.checks import check_run

        return check_run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
