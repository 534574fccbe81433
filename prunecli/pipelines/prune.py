"""Prune from a configuration: the shared training loop + the pruner + (optionally) the distiller.

`prune(cfg)` is `prunecli prune` as a function. In order:

1. check every input (options, paths, the recipe with the command-line values as its top-level values,
   its `training` block merged into the options): nothing is loaded yet;
2. load the data and the model, build the training loop, which knows the number of optimizer steps;
3. compute the pruning window from the epoch options and that size, and build the run's recipe once;
4. train, save a standard checkpoint plus `prune_recipe.json`, `sparsity_report.json` and a model card,
   and with `compact` a copy without the pruned heads and neurons in OUTPUT_DIR/compact; with `export`, the
   final model (the compacted one when there is one) exported to ONNX in OUTPUT_DIR/onnx (`prunecli export`).

What a person should see (the plan, notes, the sparsity report) goes to `on_event(kind, payload)`; the CLI
renders it. Kinds: `plan` ({"plan", "excluded_heads"}), `note` (a sentence), `report` (the sparsity report),
`compact` (the compaction report), `compact_skipped` (why nothing was compacted), `export` (the export record).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunecli.config import DistillConfig, PruneConfig, RunConfig
from prunecli.errors import UserError
from prunecli.settings import BY_NAME, GROUP_SETTINGS, TRAINING_SETTINGS

if TYPE_CHECKING:  # pragma: no cover
    from prunecli.sparsity.recipe import Recipe

logger = logging.getLogger("prunecli")

OnEvent = Callable[[str, Any], None]
COMPACT_DIR = "compact"
#: The reference example's AdamW beta2 for pruning (finetune keeps torch's 0.999).
PRUNE_ADAM_BETA2 = 0.9


def run_recipe(prune: PruneConfig) -> Recipe:
    """The run's recipe before its step window: the `recipe` file (or an empty one), with the command-line
    values as its top-level values (a recipe's local groups win over them, the reference rule).

    Validated here, keys, ranges and cross-key rules; only start/end steps may still be filled in.
    """
    from prunecli.sparsity.recipe import Recipe, load_recipe

    recipe = load_recipe(prune.recipe) if prune.recipe else Recipe.from_dict({}, source="command line")
    given = {s.key: getattr(prune, s.name) for s in GROUP_SETTINGS.values()
             if s.section == "prune" and s.key != "pruning_frequency"}
    # -1 ("about 40 events") is what no frequency means; it does not override a recipe's own
    return recipe.with_globals(**given).with_steps({}, pruning_frequency=prune.pruning_frequency)


def pruning_window(prune: PruneConfig, *, update_steps_per_epoch: int, num_train_epochs: float) -> dict[str, int]:
    """Start/end step (optimizer steps) from the epoch options, and the frequency as given (-1: automatic,
    resolved by the schedule's one rule)."""
    from prunecli.sparsity.schedule import window_for

    start, end = window_for("--sparsity_warm_epochs / --cooldown_epochs", update_steps_per_epoch, num_train_epochs,
                            warm_epochs=prune.sparsity_warm_epochs, cooldown_epochs=prune.cooldown_epochs)
    frequency = -1 if prune.pruning_frequency is None else prune.pruning_frequency
    return {"start_step": start, "end_step": end, "pruning_frequency": frequency}


def apply_training(cfg: RunConfig, training, explicit: frozenset[str] | None = None
                   ) -> tuple[RunConfig, dict[str, Any]]:
    """`cfg` with a recipe's `training` block (a TrainingSettings, or None) as the defaults of its options: the one
    place the block is merged.

    A key applies unless its option was given: `explicit` names the options set on the command line; without it
    (a call from Python) an option counts as given when its value differs from its default.
    Returns the new configuration and the keys applied.
    """
    if training is None:
        return cfg, {}
    sections = {"prune": cfg.prune or PruneConfig(), "distill": cfg.distill or DistillConfig()}
    applied: dict[str, Any] = {}
    for key, value in training.to_dict().items():
        setting = TRAINING_SETTINGS[key]
        current = getattr(sections[setting.section], setting.name)
        given = setting.name in explicit if explicit is not None else current != setting.default
        if not given:
            applied[key] = value
            sections[setting.section] = dataclasses.replace(sections[setting.section], **{setting.name: value})
    return dataclasses.replace(cfg, **sections), applied


def values_used(cfg: RunConfig, keys) -> dict[str, Any]:
    """The values `cfg` runs with for the training-block keys `keys`."""
    return {key: getattr(getattr(cfg, TRAINING_SETTINGS[key].section), BY_NAME[key].name) for key in keys}


def check_prune(cfg: RunConfig, *, explicit: frozenset[str] | None = None
                ) -> tuple[RunConfig, Recipe, dict[str, Any]]:
    """Every check of a prune run that needs no data and no model: the recipe with the command-line values, its
    `training` block merged into the options, then the options and paths.

    Returns the configuration the run uses (sections filled in, the block applied), the run's recipe still
    without its step window (`run_recipe`), and the keys the block set.
    """
    from prunecli.pipelines.checks import check_run

    cfg = dataclasses.replace(cfg, prune=cfg.prune or PruneConfig(), distill=cfg.distill or DistillConfig())
    recipe = run_recipe(cfg.prune)
    cfg, from_recipe = apply_training(cfg, recipe.training, explicit)
    check_run(cfg)
    _check_epochs(cfg)
    if cfg.prune.export:
        _check_export(cfg)
    return cfg, recipe, from_recipe


def _check_export(cfg: RunConfig) -> None:
    """--export needs a model on disk to export (--output_dir) and the ONNX tools, known before training."""
    from prunecli.pipelines.export import require_export_tools

    if not cfg.train.output_dir:
        raise UserError(f"--export {cfg.prune.export} needs --output_dir: the run's model is exported from there.")
    require_export_tools()


def _check_epochs(cfg: RunConfig) -> None:
    """Warm-up and cool-down epochs that leave no room for pruning, refused before the data is read (the exact
    window waits for the number of steps per epoch; with --max_train_steps the run's length is known only then)."""
    epochs, warm, cool = cfg.train.num_train_epochs, cfg.prune.sparsity_warm_epochs, cfg.prune.cooldown_epochs
    if not cfg.train.max_train_steps and warm + cool > epochs:
        raise UserError(f"--sparsity_warm_epochs / --cooldown_epochs: {epochs:g} epochs leave no room for {warm:g} "
                        f"warm-up and {cool:g} cool-down epochs",
                        hint="train for more epochs, or shorten the warm-up or cool-down")


def prune(cfg: RunConfig, *, explicit: frozenset[str] | None = None, on_event: OnEvent | None = None
          ) -> dict[str, Any]:
    """Run a prune job (see the module docstring). Returns the training results plus `sparsity_report`, `steps`
    and, with `compact`, `compact`; with `dry_run`, only `plan` and `steps`.

    `explicit`: the options given on the command line, which win over the recipe's `training` block (None: those
    that differ from their defaults). `on_event`: receives what a person should see (default: notes logged).
    """
    cfg, unwindowed, from_recipe = check_prune(cfg, explicit=explicit)
    show = on_event or _log_event

    from prunecli.models.loading import check_teacher_task, load_model_and_tokenizer
    from prunecli.report import sparsity_report
    from prunecli.report.card import model_card
    from prunecli.sparsity.pruner import Pruner
    from prunecli.training.models import prepare_training
    from prunecli.training.setup import pruning_lr_factor
    from prunecli.training.trainer import Trainer

    prune_cfg, distill = cfg.prune, cfg.distill
    model, tokenizer, data, tokenized = prepare_training(cfg, check_output=not prune_cfg.dry_run)
    adam_beta2 = PRUNE_ADAM_BETA2 if cfg.train.adam_beta2 is None else cfg.train.adam_beta2
    trainer = Trainer(cfg, model, tokenizer, tokenized, adam_beta2=adam_beta2)
    epochs = trainer.num_train_epochs
    # --max_train_steps may end inside an epoch: the window is reckoned on the run's real length
    run_epochs = trainer.max_train_steps / trainer.update_steps_per_epoch
    steps = pruning_window(prune_cfg, update_steps_per_epoch=trainer.update_steps_per_epoch,
                           num_train_epochs=run_epochs)
    # the one recipe of the run: its window fills start/end (and the frequency) where the recipe sets none
    recipe = unwindowed.with_steps(steps)
    pruner = Pruner(trainer.unwrapped_model, recipe)

    teacher_path = distill.teacher_model_name_or_path or cfg.train.model_name_or_path
    if distill.distill_loss_weight > 0:  # a teacher of another task is known before the plan, dry runs included
        check_teacher_task(teacher_path, data, cfg)
    is_main = trainer.accelerator.is_main_process
    if is_main:
        show("plan", {"plan": pruner.plan(), "excluded_heads": list(pruner.excluded_heads)})
        if from_recipe:
            show("note", "From the recipe's training block: "
                 + ", ".join(f"--{key} {value}" for key, value in from_recipe.items()))
        show("note", f"{trainer.update_steps_per_epoch} optimizer steps per epoch, {trainer.max_train_steps} in all "
             f"({epochs} epochs).")
    if prune_cfg.dry_run:
        return {"plan": pruner.plan(), "steps": steps}

    if distill.distill_loss_weight > 0:
        from prunecli.training.distill import Distiller, check_teacher_compatible

        teacher, _ = load_model_and_tokenizer(teacher_path, data, cfg, training=False)
        distiller = Distiller(teacher, distill, task_type=data.task_type).to(trainer.accelerator.device)
        check_teacher_compatible(trainer.unwrapped_model.config, teacher.config, distill.distill_type,
                                 hidden=distiller.uses_hidden)
        trainer.set_loss_fn(distiller)
        trainer.output_hidden_states = distiller.output_hidden_states
        if is_main:
            show("note", f"Distillation: {distill.distill_type} from {teacher_path}, weight "
                 f"{distill.distill_loss_weight:g}"
                 + (" (teacher outputs cached across epochs)" if distiller.cache is not None else ""))

    trainer.add_plugin(pruner)
    trainer.set_lr_factor(pruning_lr_factor(pruner.event_steps(), trainer.max_train_steps,
                                            cooldown_decay=prune_cfg.cooldown_lr_decay,
                                            rewind_ratio=prune_cfg.lr_rewind_ratio))
    results = trainer.fit()

    resolved = pruner.resolved_recipe()
    if recipe.training is not None:  # the method as it ran, so the saved recipe reruns it
        resolved["training"] = values_used(cfg, recipe.training.to_dict())
    resolved["computed_from_epochs"] = {
        "update_steps_per_epoch": trainer.update_steps_per_epoch,
        "num_train_epochs": epochs,
        "sparsity_warm_epochs": prune_cfg.sparsity_warm_epochs,
        "cooldown_epochs": prune_cfg.cooldown_epochs,
        **steps,
    }
    state = {name: tensor.detach().cpu() for name, tensor in trainer.unwrapped_model.state_dict().items()}
    report = sparsity_report(state, recipe=resolved, config=trainer.unwrapped_model.config.to_dict())
    report["task"] = data.task_type  # the report and the card name the task the model was pruned for
    metrics = results.get("final_metrics") or {}
    output_dir = cfg.train.output_dir
    extra = {
        "prune_recipe.json": json.dumps(resolved, indent=2) + "\n",
        "sparsity_report.json": json.dumps(report, indent=2) + "\n",
    }
    if output_dir:
        extra["README.md"] = model_card(
            model_name=Path(output_dir).name, cfg=cfg, metrics=metrics, report=report, recipe=resolved
        )
        trainer.save_final(output_dir, extra_files=extra)
    if is_main:
        show("report", report)
    if prune_cfg.compact and output_dir and is_main:
        results["compact"] = _compact(trainer, Path(output_dir), tokenized, show)
    if prune_cfg.export and output_dir and is_main:
        results["export"] = _export(Path(output_dir), prune_cfg.export, compacted=bool(results.get("compact")),
                                    show=show)
    results["sparsity_report"] = report
    results["steps"] = steps
    return results


def _compact(trainer, output_dir: Path, tokenized, show: OnEvent) -> dict[str, Any] | None:
    """`compact`: the trained model without its pruned heads and neurons, in OUTPUT_DIR/compact, checked on the
    first evaluation examples. A run whose zeros form no whole head or neuron only says so."""
    import copy

    from prunecli.pipelines.compact import CHECK_EXAMPLES, compact_and_save

    split = next(iter(tokenized.eval_splits.values()))
    rows = [split[i] for i in range(min(CHECK_EXAMPLES, len(split)))]
    inputs = trainer.collate(rows)
    inputs = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    model = copy.deepcopy(trainer.unwrapped_model).cpu()
    try:
        report = compact_and_save(model, trainer.tokenizer, output_dir / COMPACT_DIR, source=output_dir,
                                  inputs=inputs, checked_on=f"{len(rows)} evaluation examples")
    except UserError as err:
        show("compact_skipped", err.message)
        return None
    show("compact", report)
    return report


def _export(output_dir: Path, precision: str, *, compacted: bool, show: OnEvent) -> dict[str, Any]:
    """`export`: the compacted model (else the pruned one) exported to OUTPUT_DIR/onnx, checked on the run's
    evaluation data (recorded in the folder's run_args.json)."""
    from prunecli.pipelines.export import EXPORT_DIR, export_model

    source = output_dir / COMPACT_DIR if compacted else output_dir
    record = export_model(source, output_dir / EXPORT_DIR, quantize=None if precision == "fp32" else precision,
                          overwrite=True)
    show("export", record)
    return record


def _log_event(kind: str, payload: Any) -> None:
    """Without a renderer: sentences go to the log; tables are the caller's to show from the results."""
    if kind in ("note", "compact_skipped"):
        logger.info("%s", payload)
