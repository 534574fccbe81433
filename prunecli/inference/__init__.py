"""Inference: ONNX export with an onnxruntime check (`onnx`), and side-by-side speed measurements (`benchmark`).

Everything here works on any folder that `AutoModelForSequenceClassification.from_pretrained` loads: dense,
sparse (zeros stored densely) or compacted (pruned heads and neurons physically removed; the compacted
architectures are registered with transformers' Auto classes by `import prunecli`, which importing this
package implies). torch, transformers and onnxruntime are imported only inside the functions that need them::

    from prunecli.inference import export_onnx, check_onnx, benchmark_models, load_classifier
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

_LAZY = {
    "export_onnx": "prunecli.inference.onnx",
    "check_onnx": "prunecli.inference.onnx",
    "onnx_metadata": "prunecli.inference.onnx",
    "onnxruntime_available": "prunecli.inference.onnx",
    "benchmark_models": "prunecli.inference.benchmark",
}

__all__ = ["load_classifier", "weight_files", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'prunecli.inference' has no attribute {name!r}")


@contextlib.contextmanager
def quiet_transformers():
    """Hide transformers' weight-loading progress bar and its load report for the duration (restored after)."""
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    level = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bar:
            hf_logging.enable_progress_bar()


def load_classifier(name_or_path: str | Path, *, quiet: bool = True) -> tuple[Any, dict[str, Any]]:
    """Load a sequence classifier for inference: (model in eval mode on CPU, facts about the load).

    `resolve_model_path` maps the packaged MiniLM's aliases; the folder must hold config.json. Weights load from
    safetensors, else with `weights_only=True`; no model code from the checkpoint ever runs. A folder saved from a
    bare encoder (e.g. a BertModel) loads with a newly initialised head, which is fine for timing: the facts say
    so (`new_head`). Any problem is a `CheckpointError` naming the path.
    """
    from prunecli.data.demo import resolve_model_path
    from prunecli.errors import CheckpointError
    from prunecli.training.models import _check_model_folder, _load_error

    given = str(name_or_path)
    resolved = resolve_model_path(given)
    try:
        _check_model_folder(resolved, given)
    except CheckpointError as err:
        if err.hint:
            raise
        raise CheckpointError(err.message, hint="pass a model folder (config.json and weights, e.g. one written "
                              "by prunecli finetune, prune or compact), or the alias minilm.") from None
    from transformers import AutoModelForSequenceClassification

    try:
        with quiet_transformers() if quiet else contextlib.nullcontext():
            model, loading = AutoModelForSequenceClassification.from_pretrained(
                resolved, weights_only=True, output_loading_info=True
            )
    except Exception as err:
        raise _load_error(given, "a sequence classifier", err) from None
    model.eval()
    missing = sorted(loading.get("missing_keys", []) or [])
    facts = {
        "path": given, "resolved_path": str(Path(resolved).resolve()) if Path(resolved).exists() else resolved,
        "architecture": type(model).__name__, "model_type": getattr(model.config, "model_type", None),
        "missing_keys": len(missing), "new_head": bool(missing),
    }
    if missing:
        logging.getLogger("prunecli").info("%s: %d weights newly initialised (%s ...)", given, len(missing),
                                           ", ".join(missing[:3]))
    return model, facts


def weight_files(folder: str | Path) -> list[Path]:
    """The weight files `from_pretrained` reads in a checkpoint folder: safetensors (one file or shards) when
    present, else pytorch_model*.bin. Empty for anything else (a hub id, a folder without weights)."""
    path = Path(folder)
    if not path.is_dir():
        return []
    safetensors = sorted(p for p in path.glob("*.safetensors") if p.is_file())
    if safetensors:
        index = path / "model.safetensors.index.json"
        if index.is_file():  # shards: exactly the files the index names
            import json

            try:
                names = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
                return sorted(path / n for n in names if (path / n).is_file())
            except (OSError, ValueError, KeyError, TypeError):
                pass
        return [p for p in safetensors if p.name.startswith("model")] or safetensors
    return sorted(p for p in path.glob("pytorch_model*.bin") if p.is_file())
