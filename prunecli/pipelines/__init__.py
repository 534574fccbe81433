"""Pipelines: whole jobs from a run configuration, what the CLI, the demo, bench/ and Python callers run.

    from prunecli.config import DataConfig, PruneConfig, RunConfig, TrainConfig
    from prunecli.pipelines.prune import prune

    results = prune(RunConfig(data=DataConfig(task_name="sst2"),
                              train=TrainConfig(model_name_or_path="dense", output_dir="sparse"),
                              prune=PruneConfig(target_sparsity=0.9, pruning_pattern="4x1")))

- `prune.prune(cfg)`: `prunecli prune`; `finetune.finetune(cfg)`: `prunecli finetune`;
- `checks.check_run(cfg)`: every check of the options and paths, which both run before loading anything;
- `compact`: remove pruned heads and neurons and save the smaller model;
- `evaluate.evaluate(checkpoint, cfg)`: score a checkpoint or an exported folder with its task's metric;
- `export.export_model(model_dir, output_dir, quantize=...)`: a checked ONNX deployment folder (float32 or INT8).

Each pipeline reports what a person should see through an optional `on_event(kind, payload)` callback instead
of printing (`prunecli.cli` renders the events). The functions are not re-exported here: a function named
like its module would hide the module.
"""
