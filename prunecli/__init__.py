"""prunecli: training-time pruning for Hugging Face transformers classifiers.

The library works without the CLI. The public API is imported lazily so that
`import prunecli` (and `prunecli --help`) stays fast and torch-free until needed::

    from prunecli import Pruner, load_recipe, sparsity_report
    from prunecli import PruningCallback  # for transformers.Trainer
    from prunecli import compact_model  # remove pruned heads and neurons

Importing prunecli also makes transformers' Auto classes load compacted checkpoints (per-layer heads and
neurons, `prunecli compact`); see `prunecli.models.architectures`. That costs nothing until transformers loads.
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "Pruner": "prunecli.sparsity.pruner",
    "Recipe": "prunecli.sparsity.recipe",
    "PruningGroup": "prunecli.sparsity.recipe",
    "load_recipe": "prunecli.sparsity.recipe",
    "register_criterion": "prunecli.sparsity.criteria",
    "sparsity_report": "prunecli.report",
    "PruningCallback": "prunecli.training.callback",
    "compact_model": "prunecli.models.architectures",
}

__all__ = ["__version__", *_LAZY]

from prunecli.models.architectures import install_registration_hook as _install  # noqa: E402

_install()


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'prunecli' has no attribute {name!r}")
