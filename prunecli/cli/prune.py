"""`prunecli prune`: the shared training loop + the pruner + (optionally) the distiller.

The command turns the reference script's epoch-based options into optimizer steps once the training
loop knows its size, merges command-line values into the recipe as global values (a recipe's local
groups win over them, the reference rule), shows the plan, trains, and writes a standard checkpoint
plus `prune_recipe.json`, `sparsity_report.json` and a model card.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from prunecli.cli.options import (
    DATA_OPTIONS,
    DISTILL_OPTIONS,
    OUTPUT_OPTIONS,
    PRUNING_OPTIONS,
    TRAINING_OPTIONS,
    DoPrune,
    ModelPath,
    WithTracking,
    with_options,
)
from prunecli.config import PruneConfig, RunConfig
from prunecli.errors import UserError

NAME = "prune"


@with_options(PRUNING_OPTIONS, DISTILL_OPTIONS, DATA_OPTIONS, TRAINING_OPTIONS, OUTPUT_OPTIONS,
              {"do_prune": DoPrune, "with_tracking": WithTracking})
def command(ctx: typer.Context, model_name_or_path: ModelPath, **options: Any) -> None:
    """Train a sparse model from a dense fine-tuned one (snip-momentum, NxM / N:M / channel, distillation)."""
    from prunecli.cli.app import explicit_options, run_config

    run(run_config({"model_name_or_path": model_name_or_path, **options}), explicit=explicit_options(ctx, options))


def pruning_steps(prune: PruneConfig, *, update_steps_per_epoch: int, num_train_epochs: float) -> dict[str, int]:
    """Start/end step (optimizer steps) from the epoch options, and the frequency as given (-1: automatic,
    resolved by the schedule's one rule)."""
    from prunecli.sparsity.schedule import window_for

    start, end = window_for("--sparsity_warm_epochs / --cooldown_epochs", update_steps_per_epoch, num_train_epochs,
                            warm_epochs=prune.sparsity_warm_epochs, cooldown_epochs=prune.cooldown_epochs)
    frequency = -1 if prune.pruning_frequency is None else prune.pruning_frequency
    if frequency < 1 and frequency != -1:
        raise UserError(f"--pruning_frequency must be >= 1 (or -1 for automatic), got {frequency}")
    return {"start_step": start, "end_step": end, "pruning_frequency": frequency}


def build_recipe(prune: PruneConfig, steps: dict[str, int]):
    """The run's recipe: the --recipe file (or an empty one), with command-line values as global values.

    Explicit command-line options override the recipe's top-level keys. The steps computed from
    epochs fill start/end (and the frequency) only where the recipe's top level does not set them,
    and an explicit --pruning_frequency always wins. Every other default is the recipe model's.
    """
    from prunecli.sparsity.recipe import Recipe, load_recipe

    recipe = load_recipe(prune.recipe) if prune.recipe else Recipe.from_dict({}, source="command line")
    explicit = {
        "target_sparsity": prune.target_sparsity,
        "initial_sparsity": prune.initial_sparsity,
        "pattern": prune.pruning_pattern,
        "pruning_type": prune.pruning_type,
        "pruning_scope": prune.pruning_scope,
        "sparsity_decay_type": prune.sparsity_decay_type,
    }
    return recipe.with_steps(steps, pruning_frequency=prune.pruning_frequency).with_globals(**explicit)


def run(cfg: RunConfig, *, explicit: frozenset[str] | None = None) -> dict[str, Any]:
    """Run `prunecli prune`. Returns the training results plus the sparsity report.

    `explicit`: the options given on the command line, which win over the recipe's `training` block (None: those
    that differ from their defaults)."""
    from rich.console import Console

    from prunecli.cli.tables import plan_table
    from prunecli.models.loading import load_model_and_tokenizer
    from prunecli.report import sparsity_report
    from prunecli.report.card import model_card
    from prunecli.report.render import render_report
    from prunecli.sparsity.pruner import Pruner
    from prunecli.sparsity.recipe_training import apply_training, values_used
    from prunecli.training.models import prepare_training
    from prunecli.training.setup import pruning_lr_factor
    from prunecli.training.trainer import Trainer

    # Validate the recipe and pruning options first: a typo should cost a second, not a model load.
    checked = build_recipe(cfg.prune or PruneConfig(), {"start_step": 0, "end_step": 2**31 - 1, "pruning_frequency": 1})
    cfg, from_recipe = apply_training(cfg, checked.training, explicit)
    prune, distill = cfg.prune, cfg.distill
    pruning_lr_factor([0], 1, cooldown_decay=prune.cooldown_lr_decay, rewind_ratio=prune.lr_rewind_ratio)
    model, tokenizer, data, tokenized = prepare_training(cfg, check_output=not prune.dry_run)
    adam_beta2 = 0.9 if cfg.train.adam_beta2 is None else cfg.train.adam_beta2  # the reference example's betas
    trainer = Trainer(cfg, model, tokenizer, tokenized, adam_beta2=adam_beta2)
    epochs = trainer.num_train_epochs
    # --max_train_steps may end inside an epoch: the window is reckoned on the run's real length
    run_epochs = trainer.max_train_steps / trainer.update_steps_per_epoch
    steps = pruning_steps(prune, update_steps_per_epoch=trainer.update_steps_per_epoch, num_train_epochs=run_epochs)
    recipe = build_recipe(prune, steps)
    pruner = Pruner(trainer.unwrapped_model, recipe)

    console = Console()
    is_main = trainer.accelerator.is_main_process
    if is_main:
        console.print(plan_table(pruner.plan(), list(pruner.excluded_heads)))
        if from_recipe:
            listed = ", ".join(f"--{key} {value}" for key, value in from_recipe.items())
            console.print(f"From the recipe's training block: {listed}", highlight=False, soft_wrap=True)
        console.print(
            f"{trainer.update_steps_per_epoch} optimizer steps per epoch, {trainer.max_train_steps} in all "
            f"({epochs} epochs)."
        )
    if prune.dry_run:
        return {"plan": pruner.plan(), "steps": steps}

    if distill.distill_loss_weight > 0:
        from prunecli.training.distill import Distiller, check_teacher_compatible

        teacher_path = distill.teacher_model_name_or_path or cfg.train.model_name_or_path
        teacher, _ = load_model_and_tokenizer(teacher_path, data, cfg, training=False)
        distiller = Distiller(teacher, distill).to(trainer.accelerator.device)
        check_teacher_compatible(trainer.unwrapped_model.config, teacher.config, distill.distill_type,
                                 hidden=distiller.uses_hidden)
        trainer.set_loss_fn(distiller)
        trainer.output_hidden_states = distiller.output_hidden_states
        if is_main:
            console.print(
                f"Distillation: {distill.distill_type} from {teacher_path}, weight {distill.distill_loss_weight:g}"
                + (" (teacher outputs cached across epochs)" if distiller.cache is not None else "")
            )

    trainer.add_plugin(pruner)
    trainer.set_lr_factor(pruning_lr_factor(pruner.event_steps(), trainer.max_train_steps,
                                            cooldown_decay=prune.cooldown_lr_decay, rewind_ratio=prune.lr_rewind_ratio))
    results = trainer.fit()

    resolved = pruner.resolved_recipe()
    if recipe.training is not None:  # the method as it ran, so the saved recipe reruns it
        resolved["training"] = values_used(cfg, recipe.training.to_dict())
    resolved["computed_from_epochs"] = {
        "update_steps_per_epoch": trainer.update_steps_per_epoch,
        "num_train_epochs": epochs,
        "sparsity_warm_epochs": prune.sparsity_warm_epochs,
        "cooldown_epochs": prune.cooldown_epochs,
        **steps,
    }
    state = {name: tensor.detach().cpu() for name, tensor in trainer.unwrapped_model.state_dict().items()}
    report = sparsity_report(state, recipe=resolved)
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
        render_report(report, console)
    if prune.compact and output_dir and is_main:
        results["compact"] = _compact(trainer, Path(output_dir), tokenized, console)
    results["sparsity_report"] = report
    results["steps"] = steps
    return results


COMPACT_DIR = "compact"


def _compact(trainer, output_dir, tokenized, console) -> dict[str, Any] | None:
    """`--compact`: the trained model without its pruned heads and neurons, in OUTPUT_DIR/compact, checked on
    the first evaluation examples. A run whose zeros form no whole head or neuron only says so."""
    import copy

    from prunecli.cli import compact
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
        console.print(f"[yellow]--compact:[/yellow] {err.message}", highlight=False)
        return None
    compact.render(report, console)
    return report

