"""What `prunecli benchmark` reports about each model beside its timings: parameters (and non-zero ones), matmul
FLOPs per example, precision, and the size of the files it ships (a checkpoint's weight files, or an exported
folder's `model.onnx`, in MB of 10^6 bytes)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prunecli.models.folders import megabytes

logger = logging.getLogger("prunecli")


def count_flops(model, names: Sequence[str], sequence_length: int) -> dict[str, Any]:
    """Matmul FLOPs of a batch-1 forward at `sequence_length` (FlopCounterMode), total and the encoder's part."""
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from prunecli.inference.onnx import _attn_implementation, _set_attn

    ids = np.ones((1, sequence_length), dtype=np.int64)  # FLOPs do not depend on the token ids
    feeds = {"input_ids": ids, "attention_mask": ids, "token_type_ids": np.zeros_like(ids)}
    feeds = {n: feeds[n] for n in names}
    original = _attn_implementation(model)
    attention = original
    try:  # sdpa's fused CPU kernel is not counted by FlopCounterMode; eager's matmuls are
        _set_attn(model, "eager")
        attention = "eager"
    except Exception:  # an architecture without eager attention: its attention matmuls may be missing
        logger.info("%s: counting FLOPs with %s attention", type(model).__name__, original)
    try:
        counter = FlopCounterMode(display=False, depth=None)
        with torch.inference_mode(), counter:
            model(**{k: torch.from_numpy(v) for k, v in feeds.items()})
    finally:
        _set_attn(model, original)
    total = int(counter.get_total_flops())
    encoder = None
    fqn = _encoder_name(model)
    if fqn is not None:
        counts = counter.get_flop_counts().get(f"{type(model).__name__}.{fqn}")
        if counts:
            encoder = int(sum(counts.values()))
    return {"flops_per_example": total, "encoder_flops_per_example": encoder, "flops_attention": attention,
            "flops_sequence_length": sequence_length}


def _encoder_name(model) -> str | None:
    base = getattr(model, "base_model", model)
    module = next((getattr(base, n) for n in ("encoder", "transformer") if hasattr(base, n)), None)
    if module is None:
        return None
    return next((name for name, sub in model.named_modules() if sub is module and name), None)


def parameters(model) -> tuple[int, int]:
    """(parameters, non-zero parameters) of a torch model."""
    import torch

    total = nonzero = 0
    for p in model.parameters():  # shared (tied) parameters are listed once
        total += p.numel()
        nonzero += int(torch.count_nonzero(p.detach()))
    return total, nonzero


def file_facts(model_dir: str) -> dict[str, Any]:
    """The weight files of a checkpoint folder and their size (MB = 10^6 bytes)."""
    from prunecli.models.folders import weight_files

    files = weight_files(model_dir)
    size = sum(f.stat().st_size for f in files)
    return {"file_bytes": size, "file_mb": megabytes(size), "weight_files": [f.name for f in files]}


def precision(model) -> str:
    """fp32, fp16 or bf16: the dtype of a torch model's parameters."""
    import torch

    dtype = next(model.parameters()).dtype
    return {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype, str(dtype))


def exported_facts(exported, given: str, sequence_length: int) -> dict[str, Any]:
    """The facts of an exported folder (`prunecli.inference.runtime.ExportedModel`): what export.json records,
    the ONNX file's size; no FLOPs (there is no torch model to count them on)."""
    from prunecli.tasks import model_task_type

    size = exported.file_bytes
    return {"task": model_task_type(exported.config),
            "path": given, "resolved_path": str(Path(given).resolve()), "architecture": "ONNX",
            "model_type": getattr(exported.config, "model_type", None), "missing_keys": 0, "new_head": False,
            "format": "onnx", "precision": exported.precision, "params": exported.record.get("params"),
            "nonzero_params": None, "flops_per_example": None, "encoder_flops_per_example": None,
            "flops_attention": None, "flops_sequence_length": sequence_length, "file_bytes": size,
            "file_mb": megabytes(size), "weight_files": ["model.onnx"]}
