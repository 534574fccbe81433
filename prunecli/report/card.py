"""The model card (`README.md`) written beside a pruned checkpoint: what was pruned, how sparse, how good."""

from __future__ import annotations

import json
from typing import Any

from prunecli import __version__
from prunecli.report.render import markdown_table


def model_card(*, model_name: str, cfg: Any, metrics: dict[str, float], report: dict, recipe: dict) -> str:
    """A README.md for the output folder: what was pruned, how sparse it is, how well it scores."""
    metric_lines = "\n".join(f"| {k} | {v:.4f} |" for k, v in metrics.items() if isinstance(v, int | float))
    model_level = report.get("model", {})
    labels = {"matmul": "all Linear/matmul weights (INC's element-wise ratio)", "all": "all parameters",
              "pruned": "the pruned layers"}
    summary = "\n".join(
        f"- sparsity over {label}: {model_level[key]['sparsity']:.4f}"
        for key, label in labels.items()
        if isinstance(model_level.get(key), dict)
    )
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
        f"## Sparsity\n\n{summary}\n\n{markdown_table(report)}\n\n"
        f"## Recipe\n\nThe fully resolved recipe is in `prune_recipe.json`:\n\n"
        f"```json\n{json.dumps(recipe, indent=2)}\n```\n"
    )
