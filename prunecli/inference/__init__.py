"""Inference: ONNX export with an onnxruntime check (`onnx`), and side-by-side speed measurements (`benchmark`).

Everything here works on any folder that `prunecli.models.load_classifier` loads: dense, sparse (zeros stored
densely) or compacted (pruned heads and neurons physically removed; the compacted architectures are registered
with transformers' Auto classes by `import prunecli`, which importing this package implies). torch,
transformers and onnxruntime are imported only inside the functions that need them::

    from prunecli.inference import export_onnx, check_onnx, benchmark_models
"""

from __future__ import annotations

_LAZY = {
    "export_onnx": "prunecli.inference.onnx",
    "check_onnx": "prunecli.inference.onnx",
    "onnx_metadata": "prunecli.inference.onnx",
    "onnxruntime_available": "prunecli.inference.onnx",
    "benchmark_models": "prunecli.inference.benchmark",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'prunecli.inference' has no attribute {name!r}")
