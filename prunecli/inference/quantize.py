"""INT8 quantization of an exported classifier with onnxruntime's own tools (no hand-written quantization).

`quantize_int8(fp32.onnx, int8.onnx)` runs `onnxruntime.quantization.quant_pre_process` (shape inference and
graph optimisation, which lets the quantizer see every MatMul's shapes) and then `quantize_dynamic` with
per-channel, signed 8-bit weights (QInt8): weights are stored as int8 with one scale per output channel,
activations are quantized on the fly per batch. Static (calibrated, QDQ) quantization is left out: it measured
slower than dynamic on this machine's CPUs (docs/deploy.md gives the figures).

`compare_logits(reference, session, rows)` is the check an INT8 file gets instead of the float32 tolerance:
the largest absolute logit difference and the share of examples whose argmax (predicted class) agrees.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prunecli.inference.onnx import OUTPUT_NAME, import_onnxruntime, pad_batch

logger = logging.getLogger("prunecli")

#: How `quantize_int8` quantizes, recorded in export.json and the model card.
INT8_METHOD = {"method": "dynamic", "weight_type": "QInt8", "per_channel": True, "tool": "onnxruntime.quantization"}


def quantize_int8(fp32_path: str | Path, output_path: str | Path, *, per_channel: bool = True,
                  preprocess: bool = True) -> dict[str, Any]:
    """Write the dynamically quantized (int8 weights) copy of the ONNX file `fp32_path` to `output_path`.

    `preprocess`: run `quant_pre_process` first (into a temporary file beside `output_path`, removed after);
    if it fails on a graph, quantization goes on without it and the result says so. Returns the settings used
    ({"method", "weight_type", "per_channel", "tool", "preprocessed"}).
    """
    import_onnxruntime()
    from onnxruntime.quantization import QuantType, quant_pre_process, quantize_dynamic

    output = Path(output_path)
    source = Path(fp32_path)
    with tempfile.TemporaryDirectory(prefix=".quantize-", dir=output.parent) as tmp:
        prepared = source
        done = False
        if preprocess:
            candidate = Path(tmp) / "preprocessed.onnx"
            try:
                quant_pre_process(str(source), str(candidate), skip_symbolic_shape=False, auto_merge=True)
            except OSError:  # a full disk is a write failure, not a graph problem
                raise
            except Exception as err:  # a graph the symbolic shape inference cannot read: quantize it as it is
                logger.warning("quant_pre_process failed (%s: %s); quantizing without it", type(err).__name__,
                               str(err).splitlines()[0][:200] if str(err) else "")
            else:
                prepared, done = candidate, True
        quantize_dynamic(str(prepared), str(output), per_channel=per_channel, weight_type=QuantType.QInt8)
    return {**INT8_METHOD, "per_channel": per_channel, "preprocessed": done}


def compare_logits(reference: Callable[[dict[str, Any]], Any], session: Any, rows: Sequence[dict[str, Sequence[int]]],
                   *, pad_id: int = 0, batch_size: int = 32) -> dict[str, Any]:
    """Run `rows` (tokenized examples) through `reference(feeds) -> logits` and the onnxruntime `session` in
    batches; return {"examples", "max_abs_diff", "argmax_agreement"} (agreement: a share in [0, 1])."""
    import numpy as np

    names = [i.name for i in session.get_inputs()]
    agree, total, worst, classes = 0, 0, 0.0, 0
    for start in range(0, len(rows), batch_size):
        feeds = pad_batch(rows[start:start + batch_size], names, pad_id)
        ref = np.asarray(reference(feeds), dtype=np.float32)
        got = session.run([OUTPUT_NAME], feeds)[0].astype(np.float32)
        worst = max(worst, float(np.max(np.abs(got - ref))) if ref.size else 0.0)
        classes = int(ref.shape[1]) if ref.ndim == 2 else 1
        if classes > 1:
            agree += int((ref.argmax(axis=1) == got.argmax(axis=1)).sum())
        total += int(ref.shape[0])
    share = agree / total if total and classes > 1 else None  # a regression head has no argmax
    return {"examples": total, "max_abs_diff": worst, "argmax_agreement": share}
