"""Loading models: checkpoint folders and the MiniLM alias, the compacted architectures, one set of load errors.

`folders` says what a model path names (torch-free), `loading` loads models and tokenizers, `architectures`
makes transformers' Auto classes load compacted checkpoints (`import prunecli` installs its hook). The names
below are imported lazily, so importing this package costs nothing::

    from prunecli.models import load_classifier, resolve_model_path
"""

from __future__ import annotations

_LAZY = {
    "MINILM_ALIASES": "prunecli.models.folders",
    "minilm_path": "prunecli.models.folders",
    "resolve_model_path": "prunecli.models.folders",
    "check_model_folder": "prunecli.models.folders",
    "load_error": "prunecli.models.folders",
    "weight_files": "prunecli.models.folders",
    "with_recorded_data": "prunecli.models.folders",
    "load_classifier": "prunecli.models.loading",
    "load_checkpoint_tokenizer": "prunecli.models.loading",
    "load_model_and_tokenizer": "prunecli.models.loading",
    "max_positions": "prunecli.models.loading",
    "quiet_transformers": "prunecli.models.loading",
    "compact_model": "prunecli.models.architectures",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'prunecli.models' has no attribute {name!r}")
