"""Export a checkpoint to a deployment folder: one ONNX file (float32 or INT8), checked, with what serving needs.

`export_model(model_dir, output_dir, quantize=None | "int8")` is `prunecli export MODEL --output_dir OUT`, for
Python users too; `compact --onnx` and `prune --export` call it as well. In order:

1. check the options and paths (a missing model, an unknown `--quantize`, a non-empty output folder stop here,
   before anything is loaded);
2. load the checkpoint (dense, sparse or compacted) and the examples to check on: the data the checkpoint
   recorded (its run_args.json) or the data given, else a few sample sentences through its tokenizer;
3. in a staging folder: export float32 ONNX (dynamic batch and sequence axes) and check its logits within 1e-4
   of PyTorch's; with `int8`, quantize it with onnxruntime's dynamic quantization (per-channel QInt8 weights)
   and measure the largest logit difference and the share of argmax predictions that agree with PyTorch;
4. write `model.onnx`, `config.json` (labels), the tokenizer, the checkpoint's run_args.json (so `prunecli
   evaluate OUT` finds its data), a model card (`README.md`) and `export.json` (source, settings, checks,
   versions), then rename the staging folder into place: a full disk leaves nothing behind.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prunecli.errors import UserError
from prunecli.inference.runtime import EXPORT_FILE, ONNX_FILE, is_exported
from prunecli.models.folders import megabytes

logger = logging.getLogger("prunecli")

SCHEMA = "prunecli.export/1"
#: Where `compact --onnx` and `prune --export` put the deployment folder: beside the model it holds.
EXPORT_DIR = "onnx"
CHECK_EXAMPLES = 128
#: The source's sparsity report (prune writes it), summarised in export.json and the card.
SPARSITY_REPORT = "sparsity_report.json"
#: Checked on when the checkpoint recorded no data and none is given (it has a tokenizer).
SAMPLE_SENTENCES = (
    "A gripping, beautifully acted film that stays with you long after the credits.",
    "The plot is thin and the jokes fall flat.",
    "It was fine.",
    "The company said on Tuesday that its quarterly profit rose 12 percent, beating analysts' forecasts.",
    "Neither the soundtrack nor the cinematography could save this tedious, overlong mess.",
    "Is this the right way to the station?",
    "She sold the house in 2019 and moved to a small village near the coast with her two dogs.",
    "Absolutely wonderful!",
    "The results were mixed: some readers loved it, others found it confusing and slow.",
    "He did not think the meeting would start on time, and it did not.",
    "Prices fell sharply after the announcement.",
    "I would not recommend it to anyone.",
)


def check_quantize(quantize: str | None) -> None:
    """Refuse a `--quantize` value that is not declared in prunecli.settings (exit 2, naming the option)."""
    from prunecli.settings import BY_NAME

    problem = BY_NAME["quantize"].problem(quantize)
    if problem:
        raise UserError(problem + ".", hint="leave --quantize out for a float32 file.")


def require_export_tools() -> None:
    """onnx, onnxscript and onnxruntime are installed (the `onnx` extra), checked before any model is loaded."""
    from prunecli.inference.onnx import import_onnxruntime, require_exporter

    require_exporter()
    import_onnxruntime()


def check_output(output_dir: str | Path | None, overwrite: bool, source: str, what: str = "the exported model"
                 ) -> Path:
    """The folder to write `what` to: required, not the source, empty unless `overwrite` (a UserError naming
    it). `prunecli compact` checks its output folder with it too."""
    from prunecli.training import checkpoint as ckpt

    if not output_dir:
        raise UserError(f"--output_dir is required: where {what} is written.")
    target = Path(output_dir).absolute()
    if target == Path(source).absolute():
        raise UserError(f"--output_dir is the checkpoint itself; {what} goes to a new folder.")
    checked = ckpt.check_output_dir(str(output_dir), overwrite, None, resumable=False)
    assert checked is not None
    return checked


def export_model(model_dir: str | Path, output_dir: str | Path, *, quantize: str | None = None, data=None,
                 check_examples: int = CHECK_EXAMPLES, overwrite: bool = False,
                 source_name: str | None = None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Export the sequence classifier in `model_dir` (a folder or the alias `minilm`) to `output_dir`.

    `quantize`: None (float32) or "int8". `data` (a `prunecli.config.DataConfig`) chooses the check examples
    (None: the data recorded in the checkpoint, else sample sentences); at most `check_examples` of them.
    `source_name`: how export.json names the source (default: its path). `progress` is called with a line once
    the inputs are checked and the long part starts. Returns the export record, which is also written as
    `output_dir/export.json`.

    Raises UserError (exit 2 in the CLI), with nothing written, for a missing or corrupt model, an unknown
    `quantize`, a non-empty `output_dir` without `overwrite`, or a folder that cannot be written (full disk);
    RuntimeError (a bug) when the float32 file's logits differ from PyTorch's by more than 1e-4.
    """
    from prunecli.config import DataConfig
    from prunecli.models.folders import DATA_SOURCE_FIELDS, check_model_folder, resolve_model_path
    from prunecli.models.loading import load_checkpoint_tokenizer, load_classifier

    given = str(model_dir)
    check_quantize(quantize)
    if check_examples < 1:
        raise UserError(f"--check_examples must be at least 1 (got {check_examples}).")
    resolved = resolve_model_path(given)
    check_model_folder(resolved, given)  # before the output folder, so a wrong argument is named first
    if is_exported(resolved):
        raise UserError(f"{given} is already an exported ONNX folder.",
                        hint="export the checkpoint it came from (its export.json names it).")
    target = check_output(output_dir, overwrite, resolved)
    require_export_tools()
    if progress is not None:
        progress(f"exporting {given} to ONNX" + (f" and quantizing it to {quantize}" if quantize else "")
                 + ", checked against PyTorch")
    data = data if data is not None else DataConfig()
    model, _ = load_classifier(given)
    tokenizer = load_checkpoint_tokenizer(given, required=any(getattr(data, f) for f in DATA_SOURCE_FIELDS))
    rows, checked_on = check_rows(given, tokenizer, model, data, check_examples)
    started = time.perf_counter()
    record = write_export(model, tokenizer, target, source=Path(resolved), rows=rows, checked_on=checked_on,
                          quantize=quantize, source_name=source_name or str(resolved))
    logger.info("exported %s to %s in %.1f s", given, target, time.perf_counter() - started)
    return record


def check_rows(checkpoint: str, tokenizer, model, data, n: int) -> tuple[list[dict[str, list[int]]], str]:
    """Up to `n` tokenized examples (lists of token ids, no padding) to check the export on, and what they are:
    the data given or recorded in the checkpoint, else sample sentences, else random token ids (no tokenizer)."""
    from prunecli.models.folders import DATA_SOURCE_FIELDS, with_recorded_data
    from prunecli.pipelines.compact import check_inputs

    data = with_recorded_data(checkpoint, data)
    if tokenizer is not None and not any(getattr(data, f) for f in DATA_SOURCE_FIELDS):
        encoded = tokenizer(list(SAMPLE_SENTENCES[:n]), truncation=True, max_length=data.max_length)
        rows = [{k: list(encoded[k][i]) for k in encoded if k in ("input_ids", "attention_mask", "token_type_ids")}
                for i in range(len(encoded["input_ids"]))]
        return rows, f"{len(rows)} sample sentences (no data recorded or given)"
    inputs, described = check_inputs(checkpoint, tokenizer, model, data, n)
    return rows_of(inputs), described


def rows_of(inputs: dict[str, Any]) -> list[dict[str, list[int]]]:
    """A padded batch of model inputs (tensors with an attention mask) as unpadded rows of token lists."""
    mask = inputs["attention_mask"]
    return [{k: [int(t) for t, m in zip(v[i].tolist(), mask[i].tolist(), strict=True) if m]
             for k, v in inputs.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
            for i in range(len(mask))]


def write_export(model, tokenizer, target: Path, *, source: Path, rows: list[dict[str, list[int]]],
                 checked_on: str, quantize: str | None = None, source_name: str | None = None) -> dict[str, Any]:
    """Export the loaded `model` (with `tokenizer`, None: none) into the folder `target`, atomically; see the
    module docstring. `source` is the folder the model came from (its run files are read); `rows` the check
    examples, `checked_on` their description. Returns the export record."""
    from prunecli.models.loading import quiet_transformers
    from prunecli.training import checkpoint as ckpt

    target = Path(target)
    try:
        with ckpt.atomic_directory(target) as staging, quiet_transformers():
            record = stage_export(model, tokenizer, staging, source=source, rows=rows, checked_on=checked_on,
                            quantize=quantize, source_name=source_name or str(source))
    except OSError as err:
        # A full disk, a file size limit, a read-only folder: the staging folder is gone, the target untouched.
        raise UserError(f"cannot write the exported model to {target}: {err.strerror or err}; nothing was written.",
                        hint="free some disk space or choose another --output_dir.") from None
    return record


def stage_export(model, tokenizer, staging: Path, *, source: Path, rows, checked_on: str, quantize: str | None,
           source_name: str) -> dict[str, Any]:
    import torch

    from prunecli import __version__
    from prunecli.inference.onnx import check_onnx, export_onnx, make_session, onnx_metadata
    from prunecli.inference.quantize import compare_logits, quantize_int8
    from prunecli.inference.timing import versions
    from prunecli.models.folders import weight_files
    from prunecli.pipelines.compact import REPORT_FILE, write_json
    from prunecli.report.card import export_card
    from prunecli.tasks import output_logits
    from prunecli.training.checkpoint import EVAL_RESULTS, RUN_ARGS

    started = time.perf_counter()
    model.eval()
    float_dir = staging / ".float32" if quantize else staging
    float_dir.mkdir(exist_ok=True)
    fp32_path = export_onnx(model, float_dir / ONNX_FILE)
    fp32_bytes = fp32_path.stat().st_size
    checked = check_onnx(model, fp32_path, rows)
    if not checked["passed"]:
        raise RuntimeError(f"the float32 ONNX file differs from PyTorch by {checked['max_abs_diff']:.3g} (> "
                           f"{checked['tolerance']:g}): a bug in prunecli; nothing was written")
    checks: dict[str, Any] = {"float32": {k: checked[k] for k in ("passed", "max_abs_diff", "tolerance", "cases")}}
    meta = onnx_metadata(fp32_path)
    quantization = None
    if quantize == "int8":
        quantization = quantize_int8(fp32_path, staging / ONNX_FILE)
        shutil.rmtree(float_dir)
        pad_id = getattr(model.config, "pad_token_id", None) or 0

        def reference(feeds):  # any task's logits (question answering: start and end stacked, as exported)
            with torch.inference_mode():
                return output_logits(model(**{k: torch.from_numpy(v) for k, v in feeds.items()})).float().numpy()

        checks["int8"] = compare_logits(reference, make_session(staging / ONNX_FILE), rows, pad_id=pad_id)
    model.config.save_pretrained(staging)
    if tokenizer is not None:
        tokenizer.save_pretrained(staging)
    if (source / RUN_ARGS).is_file():
        (staging / RUN_ARGS).write_bytes((source / RUN_ARGS).read_bytes())
    onnx_bytes = (staging / ONNX_FILE).stat().st_size
    source_bytes = sum(f.stat().st_size for f in weight_files(source))
    record = {
        "schema": SCHEMA, "source": source_name, "precision": quantize or "fp32", "quantization": quantization,
        "onnx": {"file": ONNX_FILE, "exporter": meta["exporter"], "opset": meta["opset"],
                 "attn_implementation": meta["attn_implementation"], "inputs": meta["inputs"],
                 "outputs": meta["outputs"]},
        "file_bytes": onnx_bytes, "file_mb": megabytes(onnx_bytes), "float32_file_mb": megabytes(fp32_bytes),
        "source_file_mb": megabytes(source_bytes) if source_bytes else None,
        "params": sum(p.numel() for p in model.parameters()), "model_type": model.config.model_type,
        "checked_on": checked_on, "checks": checks,
        "source_metrics": _read_json(source / EVAL_RESULTS),
        "source_sparsity": (_read_json(source / SPARSITY_REPORT) or {}).get("model"),
        "compact": _compact_summary(_read_json(source / REPORT_FILE)),
        "prunecli_version": __version__, "versions": versions(), "seconds": round(time.perf_counter() - started, 2),
    }
    (staging / "README.md").write_text(export_card(record), encoding="utf-8")
    write_json(staging / EXPORT_FILE, record)
    return record


def _read_json(path: Path) -> Any:
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _compact_summary(report: Any) -> dict[str, Any] | None:
    if not isinstance(report, dict):
        return None
    keys = ("heads_removed", "neurons_removed", "params_before", "params_after")
    return {k: report.get(k) for k in keys}
