"""prunecli: training-time pruning for Hugging Face transformers classifiers.

The library works without the CLI. The public API is imported lazily so that
`import prunecli` (and `prunecli --help`) stays fast and torch-free until needed::

    from prunecli import Pruner, Recipe
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "Pruner": "prunecli.pruner",
    "Recipe": "prunecli.recipe",
    "PruningGroup": "prunecli.recipe",
    "load_recipe": "prunecli.recipe",
    "sparsity_report": "prunecli.report",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'prunecli' has no attribute {name!r}")
