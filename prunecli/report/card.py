"""The model card (`README.md`) written beside a pruned checkpoint: what was pruned, how sparse, how good."""

from __future__ import annotations

import json
from typing import Any

from prunecli import __version__
from prunecli.report.render import markdown_table


def model_card(*, model_name: str, cfg: Any, metrics: dict[str, float], report: dict, recipe: dict) -> str:
    """A README.md for the output folder: what was pruned, how sparse it is, how well it scores."""
    metric_lines = "\n".join(f"| {k} | {v:.4f} |" for k, v in metrics.items() if isinstance(v, int | float))
    from prunecli.tasks import AUTO_CLASSES, DESCRIPTIONS, task_type_of

    kind = report.get("task") or task_type_of(cfg.data)
    task = f"{cfg.data.task_name or 'custom data'} ({DESCRIPTIONS[kind]})"
    return (
        f"---\nlibrary_name: transformers\ntags:\n- pruned\n- sparse\n- prunecli\n---\n\n"
        f"# {model_name}: pruned with prunecli\n\n"
        f"Pruned from `{cfg.train.model_name_or_path}` on {task} with "
        f"prunecli {__version__}. Pruned weights are stored as exact zeros in a "
        f"standard checkpoint: `{AUTO_CLASSES[kind]}.from_pretrained` loads it as is.\n\n"
        f"## Evaluation\n\n| metric | value |\n|---|---|\n{metric_lines}\n\n"
        f"## Sparsity\n\n{markdown_table(report)}\n\n"
        f"## Recipe\n\n{recipe_summary(recipe)}\n"
    )


def recipe_summary(recipe: dict) -> str:
    """The resolved recipe in a few lines: one row per group, the training method and how many units each
    head/neuron group removed. The whole recipe (every layer name, every removed unit's index: tens of KB for a
    structured BERT-base) stays in `prune_recipe.json`."""
    rows = ["| group | pattern | target | pruning type | scope | layers | steps |", "|---|---|---|---|---|---|---|"]
    for index, group in enumerate(recipe.get("pruning_configs") or []):
        steps = f"{group.get('start_step')}-{group.get('end_step')}, every {group.get('pruning_frequency')}"
        rows.append(f"| {index} | {group.get('pattern')} | {group.get('target_sparsity')} | "
                    f"{group.get('pruning_type')} | {group.get('pruning_scope')} | {len(group.get('layers') or [])} "
                    f"| {steps} |")
    lines = ["The fully resolved recipe, every layer and removed unit listed, is in `prune_recipe.json`.", "",
             *rows, ""]
    removed: dict[tuple[int, str], list[int]] = {}
    for entry in recipe.get("pruned_units") or []:
        counts = removed.setdefault((entry.get("group"), entry.get("unit")), [0, 0, 0])
        counts[0] += len(entry.get("pruned") or [])
        counts[1] += int(entry.get("units") or 0)
        counts[2] += 1
    lines += [f"- group {group}: {gone} of {total} {unit}s removed across {blocks} blocks"
              for (group, unit), (gone, total, blocks) in removed.items()]
    if recipe.get("training"):
        lines.append("- training: " + ", ".join(f"{k}={json.dumps(v)}" for k, v in recipe["training"].items()))
    if recipe.get("excluded_heads"):
        lines.append("- never pruned (task head): " + ", ".join(f"`{name}`" for name in recipe["excluded_heads"]))
    return "\n".join(lines).rstrip() + "\n"
