"""ONNX export of a sequence classifier, and a check of onnxruntime's logits against PyTorch's on real inputs.

`export_onnx(model_or_folder, "model.onnx")` writes one self-contained ONNX file (weights inside; an external
data file only for models over ~2 GB, the protobuf limit) with inputs `input_ids`, `attention_mask` and, when
the model's forward takes it, `token_type_ids`, all int64 of shape (batch, sequence) with both axes dynamic,
and one output `logits` of shape (batch, num_labels).

Exporter: torch's dynamo exporter (`torch.onnx.export(..., dynamo=True)`, torch.export + onnxscript; torch
2.13's default, opset 20) with eager attention (the model's own `_attn_implementation` is set back after).
Eager attention gives the plain MatMul, Add (mask) and Softmax graph; sdpa's export adds a boolean mask with
`Where` and a NaN guard (`IsNaN`, `Where`) on every attention score tensor, which onnxruntime runs as separate
passes: 12-20% of a compacted MiniLM's CPU time (bench/NOTES.md, "Eager attention in the export"). If the
eager export fails it is retried with the model's own attention, then with the TorchScript exporter
(`dynamo=False`). The one used is logged and written into the file's metadata (`prunecli.exporter`,
`prunecli.attn_implementation`), read back by `onnx_metadata(path)`.

`check_onnx(model, path, examples)` runs the file in onnxruntime (CPUExecutionProvider) on batches built from
real tokenized examples (several batch sizes, two sequence lengths, padded rows) and compares with the PyTorch
logits: it reports the largest absolute difference and passes when it is within 1e-4 (float32 models).

onnx, onnxscript and onnxruntime are optional (`pip install 'prunecli[onnx]'`); without them these functions
raise a `UserError` with that command.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from prunecli.errors import UserError

logger = logging.getLogger("prunecli")

ONNX_HINT = "pip install 'prunecli[onnx]'  (onnx, onnxruntime and onnxscript)"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "logits"
#: float32 logits of onnxruntime and PyTorch agree to about 1e-6 on these models; 1e-4 leaves room for depth.
FLOAT32_TOLERANCE = 1e-4
#: Above this many bytes of weights the ONNX file cannot hold them (protobuf's 2 GiB limit), so they go to a
#: `<file>.data` beside it.
_EXTERNAL_DATA_BYTES = 1_900_000_000
_PROVIDER = "CPUExecutionProvider"


# ---- optional dependencies ------------------------------------------------------------------------------

def import_onnxruntime():
    """The onnxruntime module, or a UserError with the pip command."""
    try:
        import onnxruntime
    except ImportError:
        raise UserError("onnxruntime is not installed (needed to run ONNX models).", hint=ONNX_HINT) from None
    return onnxruntime


def require_exporter() -> None:
    missing = []
    for name in ("onnx", "onnxscript"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise UserError(f"ONNX export needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                        "not installed.", hint=ONNX_HINT)


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


# ---- the model as the exporter sees it ------------------------------------------------------------------

def model_input_names(model) -> list[str]:
    """The ONNX inputs of `model`: input_ids, attention_mask, and token_type_ids when its forward takes them."""
    import inspect

    params = inspect.signature(model.forward).parameters
    names = [n for n in INPUT_NAMES if n in params]
    if "input_ids" not in names or "attention_mask" not in names:
        raise UserError(f"{type(model).__name__} does not take input_ids and attention_mask; only text "
                        "sequence classifiers can be exported.")
    return names


def max_positions(config) -> int | None:
    """How many tokens the model can take (position embeddings, less RoBERTa's offset), or None if unbounded."""
    from prunecli.models.loading import max_positions as model_max_positions

    return model_max_positions(config)


def _logits_module(model, names: Sequence[str]):
    """A module taking the inputs positionally (in `names` order) and returning only the logits tensor."""
    import torch

    from prunecli.tasks import output_logits

    with_types = "token_type_ids" in names

    class LogitsOnly(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            extra = {"token_type_ids": token_type_ids} if with_types else {}
            # one tensor for every task: question answering's start and end logits stacked ([batch, tokens, 2])
            return output_logits(self.inner(input_ids=input_ids, attention_mask=attention_mask, return_dict=True,
                                            **extra))

    return LogitsOnly(model).eval()


def _sample_inputs(model, names: Sequence[str], max_length: int):
    """Tracing inputs: batch 2, `max_length` tokens (within the model's positions), the second row padded, so any
    mask-dependent branch is traced on its general (masked) path."""
    import torch

    positions = max_positions(model.config)
    length = max(4, min(max_length, positions) if positions else max_length)
    vocab = int(getattr(model.config, "vocab_size", 0) or 100)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (2, length), generator=gen, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, length // 2:] = 0
    values = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    return tuple(values[n] for n in names), positions


@contextlib.contextmanager
def _quiet_exporter():
    """The exporters print progress to stdout and warn a lot (torchvision ops, axis names): keep stdout clean
    (`--json` output) and show their messages only under --debug logging."""
    chatty = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [log.level for log in chatty]
    if not logger.isEnabledFor(logging.DEBUG):
        for log in chatty:
            log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
            if not logger.isEnabledFor(logging.DEBUG):
                warnings.simplefilter("ignore")
            yield
    finally:
        for log, level in zip(chatty, levels, strict=True):
            log.setLevel(level)


def _attn_implementation(model) -> str | None:
    return getattr(model.config, "_attn_implementation", None)


def _set_attn(model, impl: str | None) -> None:
    if impl is None or _attn_implementation(model) == impl:
        return
    setter = getattr(model, "set_attn_implementation", None)
    if callable(setter):
        setter(impl)
    else:  # pragma: no cover - older transformers
        model.config._attn_implementation = impl


def _weight_bytes(model) -> int:
    seen: set[int] = set()
    total = 0
    for tensor in [*model.parameters(), *model.buffers()]:
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
    return total


# ---- export ---------------------------------------------------------------------------------------------

def export_onnx(model_dir_or_model: Any, output_path: str | Path, *, opset: int | None = None,
                max_length: int = 128, attention: str = "eager") -> Path:
    """Export a sequence classifier (a checkpoint folder, an alias, or a loaded model) to one ONNX file.

    Dynamic `batch` and `sequence` axes on every input; output `logits`. Export runs in eval mode on CPU (a
    model elsewhere is copied to the CPU; the caller's model is left as it was). `opset`: the ONNX opset (default:
    the exporter's, 20 for dynamo). `max_length`: the sequence length of the tracing inputs (capped by the model's
    positions); the exported model accepts any length up to the model's positions. `attention`: the attention
    implementation the dynamo exporter tries first ("eager", see the module docstring; "sdpa" to compare).
    Writes only `output_path` (plus `<output_path>.data` for models over ~2 GB). Returns the path.
    """
    require_exporter()
    import torch

    if isinstance(model_dir_or_model, (str, Path)):
        from prunecli.models.loading import load_classifier

        model, _ = load_classifier(model_dir_or_model)
    else:
        model = model_dir_or_model
    output = Path(output_path)
    if output.is_dir():
        raise UserError(f"{output} is a folder; pass the path of the .onnx file to write.")
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        device = next(model.parameters()).device
    except StopIteration:  # pragma: no cover - a model without parameters
        device = torch.device("cpu")
    if device.type != "cpu":
        model = copy.deepcopy(model).cpu()
    names = model_input_names(model)
    large = _weight_bytes(model) > _EXTERNAL_DATA_BYTES
    was_training, original_attn = model.training, _attn_implementation(model)
    model.eval()
    attempts: list[tuple[str, str | None]] = [("dynamo", attention)]
    if original_attn != attention:
        attempts.append(("dynamo", original_attn))
    attempts.append(("torchscript", "eager"))
    errors: list[str] = []
    try:
        for exporter, attn in attempts:
            _set_attn(model, attn)
            try:
                with _quiet_exporter():
                    if exporter == "dynamo":
                        _export_dynamo(model, names, output, opset, max_length, large)
                    else:
                        _export_torchscript(model, names, output, opset, max_length)
            except OSError:  # a full disk or a size limit: no other exporter can write the file either
                raise
            except Exception as err:  # the next exporter or attention may succeed
                first = _reason(err)
                errors.append(f"{exporter} exporter ({attn or 'default'} attention): {first}")
                logger.warning("ONNX export with the %s exporter (%s attention) failed: %s", exporter,
                               attn or "default", first)
                continue
            if not large:
                _write_metadata(output, exporter, attn)
            logger.info("exported %s to %s with the %s exporter (%s attention)", type(model).__name__, output,
                        exporter, attn or "default")
            return output
    finally:
        _set_attn(model, original_attn)
        model.train(was_training)
    raise UserError(f"cannot export {type(model).__name__} to ONNX: " + "; ".join(errors),
                    hint="run with --debug for the exporters' messages; torch's exporter may not support an op "
                    "of this model.")


def _reason(err: BaseException) -> str:
    """One line on why an export failed: the innermost cause (the dynamo exporter wraps it in step banners)."""
    while err.__cause__ is not None:
        err = err.__cause__
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return f"{type(err).__name__}: {lines[0][:300] if lines else ''}"


def _export_dynamo(model, names: Sequence[str], output: Path, opset: int | None, max_length: int,
                   large: bool) -> None:
    import torch

    args, positions = _sample_inputs(model, names, max_length)
    batch = torch.export.Dim("batch")
    sequence = torch.export.Dim("sequence", max=positions) if positions else torch.export.Dim("sequence")
    program = torch.onnx.export(
        _logits_module(model, names), args, None, input_names=list(names), output_names=[OUTPUT_NAME],
        dynamic_shapes={n: {0: batch, 1: sequence} for n in names}, opset_version=opset, dynamo=True,
        verbose=False, optimize=True,
    )
    program.save(output, external_data=large)


def _export_torchscript(model, names: Sequence[str], output: Path, opset: int | None, max_length: int) -> None:
    import torch

    args, _ = _sample_inputs(model, names, max_length)
    kwargs = {"opset_version": opset} if opset else {}
    torch.onnx.export(
        _logits_module(model, names), args, str(output), input_names=list(names), output_names=[OUTPUT_NAME],
        dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names}, OUTPUT_NAME: {0: "batch"}},
        dynamo=False, do_constant_folding=True, verbose=False, **kwargs,
    )


def _write_metadata(path: Path, exporter: str, attn: str | None) -> None:
    import onnx
    import torch

    proto = onnx.load(str(path))
    for node in proto.graph.node:  # the dynamo exporter's per-node debug records (stack traces: 3/4 of a tiny file)
        del node.metadata_props[:]
    props = {p.key: p.value for p in proto.metadata_props}
    props.update({"prunecli.exporter": exporter, "prunecli.attn_implementation": attn or "default",
                  "prunecli.torch": torch.__version__})
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def onnx_metadata(path: str | Path) -> dict[str, Any]:
    """What `export_onnx` recorded in a file: exporter (dynamo / torchscript), attention, torch version, the opset,
    the inputs and the output names (without loading the weights)."""
    require_exporter()
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    props = {p.key: p.value for p in proto.metadata_props}
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    return {
        "exporter": props.get("prunecli.exporter"), "attn_implementation": props.get("prunecli.attn_implementation"),
        "torch": props.get("prunecli.torch"), "opset": opset, "inputs": [i.name for i in proto.graph.input],
        "outputs": [o.name for o in proto.graph.output], "producer": proto.producer_name,
    }


# ---- onnxruntime ----------------------------------------------------------------------------------------

#: Graph rewrites left out of CPU sessions: onnxruntime's fused SkipLayerNormalization kernel was slower on
#: CPU than the Add and LayerNormalization it replaces (dense MiniLM at batch 32 x 128: 639 -> 566 ms; a
#: compacted one: 232 -> 198 ms), and it is a cost that pruning cannot shrink.
DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)


def make_session(onnx_path: str | Path, threads: int | None = None,
                 disabled_optimizers: Sequence[str] = DISABLED_OPTIMIZERS):
    """An onnxruntime InferenceSession on the CPU; `threads`: intra-op threads (default: onnxruntime's own)."""
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(onnx_path), sess_options=options, providers=[_PROVIDER],
                                disabled_optimizers=list(disabled_optimizers))


def _rows(examples: Any) -> list[dict[str, list[int]]]:
    """Tokenized examples as a list of {input name: token list}: accepts a list of mappings (dataset rows,
    tokenizer outputs per example), or one mapping of per-example lists (a tokenizer's batch output, a dataset
    slice)."""
    if isinstance(examples, Mapping):
        columns = {k: examples[k] for k in INPUT_NAMES if k in examples}
        if "input_ids" not in columns:
            raise UserError("the examples have no input_ids.")
        n = len(columns["input_ids"])
        items: Iterable[Mapping] = ({k: v[i] for k, v in columns.items()} for i in range(n))
    else:
        items = examples
    rows = []
    for item in items:
        if "input_ids" not in item:
            raise UserError("the examples have no input_ids.")
        ids = [int(t) for t in _as_list(item["input_ids"])]
        if not ids:
            continue
        row = {"input_ids": ids}
        for key in ("attention_mask", "token_type_ids"):
            if key in item and item[key] is not None:
                row[key] = [int(t) for t in _as_list(item[key])][:len(ids)]
        if "attention_mask" in row:  # drop padding the examples came with (either side); batches are re-padded
            keep = [i for i, m in enumerate(row["attention_mask"]) if m]
            row = {k: [v[i] for i in keep if i < len(v)] for k, v in row.items()}
        rows.append(row)
    if not rows:
        raise UserError("no examples to check the ONNX model on.")
    return rows


def _as_list(value: Any) -> list:
    return value.tolist() if hasattr(value, "tolist") else list(value)


def pad_batch(rows: Sequence[Mapping[str, Sequence[int]]], names: Sequence[str], pad_id: int = 0,
              length: int | None = None) -> dict[str, Any]:
    """Right-pad rows to the longest (or cut them to `length`): int64 numpy arrays for `names`."""
    import numpy as np

    width = length or max(len(r["input_ids"]) for r in rows)
    out = {n: np.zeros((len(rows), width), dtype=np.int64) for n in names}
    if "input_ids" in out:
        out["input_ids"].fill(pad_id)
    for i, row in enumerate(rows):
        ids = list(row["input_ids"])[:width]
        n = len(ids)
        out["input_ids"][i, :n] = ids
        if "attention_mask" in out:
            out["attention_mask"][i, :n] = 1
        if "token_type_ids" in out and "token_type_ids" in row:
            out["token_type_ids"][i, :n] = list(row["token_type_ids"])[:n]
    return out


def _check_batches(rows: list[dict], batch_sizes: Sequence[int]) -> list[tuple[str, list[dict], int | None]]:
    """(label, rows, cut length) for each batch size at natural lengths and cut to about half, plus one batch
    that is certainly padded (its second row shortened)."""
    batches = []
    for size in batch_sizes:
        chosen = [rows[i % len(rows)] for i in range(size)]
        longest = max(len(r["input_ids"]) for r in chosen)
        batches.append((f"batch {size}", chosen, None))
        if longest > 2:
            batches.append((f"batch {size}, cut to {max(2, longest // 2)}", chosen, max(2, longest // 2)))
    base = rows[0]
    if len(base["input_ids"]) > 2:
        short = {k: v[: max(1, len(base["input_ids"]) // 2)] for k, v in base.items()}
        batches.append(("padded pair", [base, short], None))
    return batches


def check_onnx(model: Any, onnx_path: str | Path, examples: Any, *, batch_sizes: Sequence[int] = (1, 3, 8),
               tolerance: float | None = None, session: Any = None) -> dict[str, Any]:
    """Compare onnxruntime's logits with PyTorch's on batches of real tokenized `examples`.

    `model`: the PyTorch model (or its folder). `examples`: tokenized examples (a list of {"input_ids": [...],
    "attention_mask": [...], ...} or one mapping of such lists; a tokenizer's output works). Each batch size
    runs at the examples' own lengths (padded to the longest of the batch) and cut to half that length, and one
    pair of rows of different lengths is always included, so padding is exercised. `tolerance`: the largest
    allowed absolute difference (default 1e-4 for float32 models, 1e-2 for half precision).

    Returns {"passed", "max_abs_diff", "tolerance", "max_abs_logit", "provider", "onnx_path", "cases": [{"case",
    "batch_size", "sequence_length", "padded", "max_abs_diff"}]}.
    """
    import numpy as np
    import torch

    from prunecli.tasks import output_logits

    if isinstance(model, (str, Path)):
        from prunecli.models.loading import load_classifier

        model, _ = load_classifier(model)
    sess = session if session is not None else make_session(onnx_path)
    names = [i.name for i in sess.get_inputs()]
    wanted = model_input_names(model)
    if set(names) != set(wanted):
        raise UserError(f"{onnx_path} takes {', '.join(names)} but the model takes {', '.join(wanted)}: it was "
                        "exported from another model.")
    dtype = next(model.parameters()).dtype
    if tolerance is None:
        tolerance = FLOAT32_TOLERANCE if dtype in (torch.float32, torch.float64) else 1e-2
    rows = _rows(examples)
    pad_id = getattr(model.config, "pad_token_id", None) or 0
    cases, worst, largest = [], 0.0, 0.0
    was_training = model.training
    model.eval()
    try:
        for label, chosen, length in _check_batches(rows, batch_sizes):
            feeds = pad_batch(chosen, names, pad_id, length)
            with torch.inference_mode():
                ref = output_logits(model(**{k: torch.from_numpy(v) for k, v in feeds.items()}))
                ref = ref.float().cpu().numpy()
            got = sess.run([OUTPUT_NAME], feeds)[0].astype(np.float32)
            if got.shape != ref.shape:
                raise UserError(f"{onnx_path} returned logits of shape {got.shape}, PyTorch {ref.shape}.")
            diff = float(np.max(np.abs(got - ref))) if ref.size else 0.0
            if not np.isfinite(got).all():
                diff = float("inf")
            worst, largest = max(worst, diff), max(largest, float(np.max(np.abs(ref))) if ref.size else 0.0)
            mask = feeds["attention_mask"]
            cases.append({"case": label, "batch_size": int(mask.shape[0]), "sequence_length": int(mask.shape[1]),
                          "padded": bool((mask == 0).any()), "max_abs_diff": diff})
    finally:
        model.train(was_training)
    return {"passed": bool(worst <= tolerance), "max_abs_diff": worst, "tolerance": float(tolerance),
            "max_abs_logit": largest, "provider": _PROVIDER, "onnx_path": str(onnx_path), "cases": cases}
