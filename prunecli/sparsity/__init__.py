"""The pruning library: recipes, patterns, criteria, schedules, allocation and the Pruner.

Depends on torch and pydantic only (no training loop, data, CLI or rich), so it can be used in any
training code. Names are imported lazily: `import prunecli.sparsity` is cheap.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "Pruner": "prunecli.sparsity.pruner",
    "Recipe": "prunecli.sparsity.recipe",
    "PruningGroup": "prunecli.sparsity.recipe",
    "GroupSettings": "prunecli.sparsity.recipe",
    "load_recipe": "prunecli.sparsity.recipe",
    "parse_pruning_type": "prunecli.sparsity.recipe",
    "parse_pattern": "prunecli.sparsity.patterns",
    "Criterion": "prunecli.sparsity.criteria",
    "register_criterion": "prunecli.sparsity.criteria",
    "Schedule": "prunecli.sparsity.schedule",
    "TASK_HEAD_NAMES": "prunecli.sparsity.matching",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'prunecli.sparsity' has no attribute {name!r}")
