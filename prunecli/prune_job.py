"""`prunecli prune`: the shared training loop + the pruner + (optionally) the distiller.

The job turns the reference script's epoch-based options into optimizer steps once the
training loop knows its size, merges command-line values into the recipe as global values
(a recipe's local groups win over them, the reference rule), shows the plan, trains, and
writes a standard checkpoint plus `prune_recipe.json`, `sparsity_report.json` and a model card.
"""

from __future__ import annotations

import json
from typing import Any

from prunecli.config import DistillConfig, PruneConfig, RunConfig
from prunecli.errors import UserError

# The reference example always excluded the pooler; prunecli keeps that as the default when neither
# the recipe nor the command line says otherwise (the classifier head is excluded by the pruner itself).
DEFAULT_EXCLUDED = ["pooler"]
EVENTS_WHEN_UNSPECIFIED = 40


def pruning_steps(prune: PruneConfig, *, update_steps_per_epoch: int, num_train_epochs: int) -> dict[str, int]:
    """Start/end step and frequency from the epoch options, in optimizer steps.

    start = sparsity_warm_epochs x steps per epoch; end = (epochs - cooldown_epochs) x steps per epoch;
    frequency: as given, or about 40 pruning events between start and end (the reference's -1).
    """
    if prune.sparsity_warm_epochs < 0 or prune.cooldown_epochs < 0:
        raise UserError("--sparsity_warm_epochs and --cooldown_epochs must be >= 0")
    start = int(round(prune.sparsity_warm_epochs * update_steps_per_epoch))
    end = int(round((num_train_epochs - prune.cooldown_epochs) * update_steps_per_epoch))
    if end < start:
        raise UserError(
            f"pruning would end (step {end}) before it starts (step {start}): "
            f"--num_train_epochs {num_train_epochs} leaves no room for --sparsity_warm_epochs "
            f"{prune.sparsity_warm_epochs:g} and --cooldown_epochs {prune.cooldown_epochs:g}",
            hint="train for more epochs, or shorten the warm-up or cool-down",
        )
    frequency = prune.pruning_frequency
    if frequency is None or frequency == -1:
        frequency = max(1, (end - start) // EVENTS_WHEN_UNSPECIFIED)
    elif frequency < 1:
        raise UserError(f"--pruning_frequency must be >= 1 (or -1 for automatic), got {frequency}")
    return {"start_step": start, "end_step": end, "pruning_frequency": frequency}


COOLDOWN_LR_DECAYS = ("none", "linear", "cosine")


def pruning_lr_factor(event_steps: list[int], total_steps: int, *, cooldown_decay: str = "none",
                      rewind_ratio: float | None = None):
    """A learning-rate multiplier of the optimizer step, shaped by the pruning events (None when it is 1).

    - `rewind_ratio` r: from each pruning event to the next, the factor falls linearly from 1 to r and is
      rewound to 1 at the event (oBERT's rewinding between pruning steps; r = 0.1 there). 1 before the
      first event.
    - `cooldown_decay`: after the last event the factor falls from 1 towards 0 at the last step, linearly or
      along a half cosine (fine-tuning the final masks with a decaying rate); `none` keeps it at 1.

    `k` is the number of optimizer steps done, so `factor(k)` is the rate of step k + 1: an event after
    step e starts its interval at factor(e) = 1.
    """
    import math

    if cooldown_decay not in COOLDOWN_LR_DECAYS:
        raise UserError(f"--cooldown_lr_decay {cooldown_decay!r} is not one of {', '.join(COOLDOWN_LR_DECAYS)}.")
    if rewind_ratio is not None and not 0.0 <= rewind_ratio <= 1.0:
        raise UserError(f"--lr_rewind_ratio must be in [0, 1] (got {rewind_ratio}).", hint="oBERT used 0.1")
    if cooldown_decay == "none" and rewind_ratio is None:
        return None
    events = sorted(set(event_steps))
    last = events[-1] if events else 0

    def factor(k: int) -> float:
        if k >= last:
            if cooldown_decay == "none" or total_steps <= last:
                return 1.0
            fraction = min(1.0, (k - last) / (total_steps - last))
            return 1.0 - fraction if cooldown_decay == "linear" else 0.5 * (1.0 + math.cos(math.pi * fraction))
        if rewind_ratio is None or k < events[0]:
            return 1.0
        i = next(j for j in range(len(events) - 1, -1, -1) if events[j] <= k)
        fraction = (k - events[i]) / (events[i + 1] - events[i])
        return 1.0 - (1.0 - rewind_ratio) * fraction

    return factor


def build_recipe(prune: PruneConfig, steps: dict[str, int]):
    """The run's recipe: the --recipe file (or an empty one), with command-line values as global values.

    Explicit command-line options override the recipe's top-level keys. The steps computed from
    epochs fill start/end (and the frequency) only where the recipe's top level does not set them,
    and an explicit --pruning_frequency always wins.
    """
    from prunecli.recipe import Recipe, load_recipe

    recipe = load_recipe(prune.recipe) if prune.recipe else Recipe.from_dict({}, source="command line")
    explicit = {
        "target_sparsity": prune.target_sparsity,
        "initial_sparsity": prune.initial_sparsity,
        "pattern": prune.pruning_pattern,
        "pruning_type": prune.pruning_type,
        "pruning_scope": prune.pruning_scope,
        "sparsity_decay_type": prune.sparsity_decay_type,
    }
    if prune.pruning_frequency not in (None, -1):
        explicit["pruning_frequency"] = steps["pruning_frequency"]
    fill = {key: value for key, value in steps.items() if getattr(recipe, key, None) is None}
    if recipe.excluded_op_names is None:
        fill["excluded_op_names"] = list(DEFAULT_EXCLUDED)
    return recipe.with_globals(**fill).with_globals(**explicit)


def _plan_table(plan: list[dict[str, Any]], excluded_heads: list[str]):
    from rich.table import Table

    table = Table(title="Pruning plan", title_justify="left")
    for col in ("group", "layers", "pattern", "type", "scope", "target", "steps (start-end/every)"):
        table.add_column(col)
    for group in plan:
        layers = group["layers"]
        shown = "\n".join(layers) if len(layers) <= 8 else "\n".join(layers[:6] + [f"... {len(layers) - 6} more"])
        table.add_row(
            str(group["index"]),
            shown,
            str(group["pattern"]),
            str(group["pruning_type"]),
            str(group["pruning_scope"]),
            f"{group['target_sparsity']:.2f}",
            f"{group['start_step']}-{group['end_step']}/{group['pruning_frequency']}",
        )
    if excluded_heads:
        table.caption = f"Not pruned (classification head): {', '.join(excluded_heads)}"
    return table


def model_card(*, model_name: str, cfg: RunConfig, metrics: dict[str, float], report: dict, recipe: dict) -> str:
    """A README.md for the output folder: what was pruned, how sparse it is, how well it scores."""
    from prunecli.report import markdown_table

    metric_lines = "\n".join(f"| {k} | {v:.4f} |" for k, v in metrics.items() if isinstance(v, int | float))
    model_level = report.get("model", {})
    labels = {"matmul": "all Linear/matmul weights (INC's element-wise ratio)", "all": "all parameters",
              "pruned": "the pruned layers"}
    summary = "\n".join(
        f"- sparsity over {label}: {model_level[key]['sparsity']:.4f}"
        for key, label in labels.items()
        if isinstance(model_level.get(key), dict)
    )
    task = cfg.data.task_name or "custom data"
    return (
        f"---\nlibrary_name: transformers\ntags:\n- pruned\n- sparse\n- prunecli\n---\n\n"
        f"# {model_name}: pruned with prunecli\n\n"
        f"Pruned from `{cfg.train.model_name_or_path}` on {task} with "
        f"[prunecli](https://pypi.org/project/prunecli/). Pruned weights are stored as exact zeros in a "
        f"standard checkpoint: `AutoModelForSequenceClassification.from_pretrained` loads it as is.\n\n"
        f"## Evaluation\n\n| metric | value |\n|---|---|\n{metric_lines}\n\n"
        f"## Sparsity\n\n{summary}\n\n{markdown_table(report)}\n\n"
        f"## Recipe\n\nThe fully resolved recipe is in `prune_recipe.json`:\n\n"
        f"```json\n{json.dumps(recipe, indent=2)}\n```\n"
    )


def run(cfg: RunConfig) -> dict[str, Any]:
    """Run `prunecli prune`. Returns the training results plus the sparsity report."""
    from rich.console import Console

    from prunecli import jobs
    from prunecli.pruner import Pruner
    from prunecli.report import render_report, sparsity_report
    from prunecli.training import Trainer

    prune = cfg.prune or PruneConfig()
    distill = cfg.distill or DistillConfig()
    # Validate the recipe and pruning options first: a typo should cost a second, not a model load.
    build_recipe(prune, {"start_step": 0, "end_step": 2**31 - 1, "pruning_frequency": 1})
    pruning_lr_factor([0], 1, cooldown_decay=prune.cooldown_lr_decay, rewind_ratio=prune.lr_rewind_ratio)
    model, tokenizer, data, tokenized = jobs.prepare_training(cfg, check_output=not prune.dry_run)
    adam_beta2 = 0.9 if cfg.train.adam_beta2 is None else cfg.train.adam_beta2  # the reference example's betas
    trainer = Trainer(cfg, model, tokenizer, tokenized, adam_beta2=adam_beta2)
    epochs = trainer.num_train_epochs
    steps = pruning_steps(prune, update_steps_per_epoch=trainer.update_steps_per_epoch, num_train_epochs=epochs)
    recipe = build_recipe(prune, steps)
    pruner = Pruner(trainer.unwrapped_model, recipe)

    console = Console()
    is_main = trainer.accelerator.is_main_process
    if is_main:
        console.print(_plan_table(pruner.plan(), list(pruner.excluded_heads)))
        console.print(
            f"{trainer.update_steps_per_epoch} optimizer steps per epoch, {trainer.max_train_steps} in all "
            f"({epochs} epochs)."
        )
    if prune.dry_run:
        return {"plan": pruner.plan(), "steps": steps}

    if distill.distill_loss_weight > 0:
        from prunecli.distill import Distiller, check_teacher_compatible

        teacher_path = distill.teacher_model_name_or_path or cfg.train.model_name_or_path
        teacher, _ = jobs.load_model_and_tokenizer(teacher_path, data, cfg, training=False)
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
    events = sorted({step for group in pruner.groups for step in group.schedule.event_steps()})
    trainer.set_lr_factor(pruning_lr_factor(events, trainer.max_train_steps, cooldown_decay=prune.cooldown_lr_decay,
                                            rewind_ratio=prune.lr_rewind_ratio))
    results = trainer.fit()

    resolved = pruner.resolved_recipe()
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
        from pathlib import Path

        extra["README.md"] = model_card(
            model_name=Path(output_dir).name, cfg=cfg, metrics=metrics, report=report, recipe=resolved
        )
        trainer.save_final(output_dir, extra_files=extra)
    if is_main:
        render_report(report, console)
    results["sparsity_report"] = report
    results["steps"] = steps
    return results

