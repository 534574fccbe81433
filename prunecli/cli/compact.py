"""`prunecli compact CHECKPOINT --output_dir OUT`: remove pruned heads and neurons, keep the function.

The compacted checkpoint is an ordinary folder (safetensors, config, tokenizer, model card, the recipe).
Before it is written, the logits of the sparse and the compacted model are compared on real inputs (the
checkpoint's own data when it recorded one, or the data options given; else random token ids): a
difference above 1e-4 would be a bug in prunecli, and nothing is written then. `--onnx` also exports
`model.onnx` (dynamic batch and sequence axes) and checks it against PyTorch with onnxruntime.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from prunecli.cli.options import DataDir, MaxLength, OutputDir, Overwrite, TaskName, ValidationFile, _opt
from prunecli.errors import UserError

NAME = "compact"
TOLERANCE = 1e-4  # float32 logits of the sparse and the compacted model
HALF_TOLERANCE = 1e-2  # a float16 / bfloat16 model: removing units changes the rounding of its sums
CHECK_EXAMPLES = 64
REPORT_FILE = "compact_report.json"
CARRIED = ("prune_recipe.json", "eval_results.json", "run_args.json", "sparsity_report.json")
logger = logging.getLogger("prunecli")


def command(
    checkpoint: Annotated[str, typer.Argument(help="A pruned checkpoint folder (any sequence classifier).")],
    output_dir: OutputDir = None,
    overwrite_output_dir: Overwrite = False,
    onnx: Annotated[bool, typer.Option("--onnx", help="Also export model.onnx and check it with onnxruntime.")]
    = False,
    task_name: TaskName = None,
    data_dir: DataDir = None,
    validation_file: ValidationFile = None,
    max_length: MaxLength = 128,
    check_examples: Annotated[int, _opt("check_examples", "Examples on which the logits are compared.", "Data")]
    = CHECK_EXAMPLES,
) -> None:
    """Remove pruned attention heads and FFN neurons: a smaller, faster model with the same outputs."""
    from rich.console import Console

    from prunecli.config import DataConfig
    from prunecli.inference import load_classifier

    if not output_dir:
        raise UserError("--output_dir is required: where the compacted checkpoint is written.")
    if check_examples < 1:
        raise UserError(f"--check_examples must be at least 1 (got {check_examples}).")
    target = _check_output(output_dir, overwrite_output_dir, checkpoint)
    data = DataConfig(task_name=task_name, data_dir=data_dir, validation_file=validation_file, max_length=max_length)
    model, _ = load_classifier(checkpoint)
    tokenizer = _tokenizer(checkpoint, required=any((task_name, data_dir, validation_file)))
    inputs, described = check_inputs(checkpoint, tokenizer, model, data, check_examples)
    report = run(model, tokenizer, target, source=Path(checkpoint), inputs=inputs, onnx=onnx)
    report["checked_on"] = described
    _write_json(target / REPORT_FILE, report)
    render(report, Console())


def _tokenizer(checkpoint: str, *, required: bool):
    """The checkpoint's tokenizer; without one (a model saved alone) the check uses random token ids and the
    output has no tokenizer, unless data options need it."""
    from transformers import AutoTokenizer

    from prunecli.data.demo import resolve_model_path
    from prunecli.training.models import _load_error

    try:
        return AutoTokenizer.from_pretrained(resolve_model_path(checkpoint))
    except Exception as err:
        if required:
            raise _load_error(checkpoint, "its tokenizer", err) from None
        logger.warning("%s has no tokenizer: the logits are compared on random token ids, and the compacted "
                       "folder has no tokenizer either", checkpoint)
        return None


def _check_output(output_dir: str, overwrite: bool, checkpoint: str) -> Path:
    from prunecli.training import checkpoint as ckpt

    target = Path(output_dir).absolute()
    if target == Path(checkpoint).absolute():
        raise UserError("--output_dir is the checkpoint itself; the compacted model goes to a new folder.")
    checked = ckpt.check_output_dir(output_dir, overwrite, None, resumable=False)
    assert checked is not None
    return checked


def check_inputs(checkpoint: str, tokenizer, model, data, n: int) -> tuple[dict, str]:
    """Model inputs to compare the logits on: real examples of the checkpoint's data (or of the data options),
    else random token ids of mixed lengths. Returns (inputs, a description of them)."""
    import torch

    from prunecli.cli.evaluate import _defaults_from_checkpoint
    from prunecli.data.sources import load_task_data

    data = _defaults_from_checkpoint(checkpoint, data)
    if tokenizer is not None and any(getattr(data, f) for f in ("task_name", "data_dir", "validation_file")):
        try:
            task = load_task_data(data, need_train=False)
        except UserError as err:
            logger.warning("cannot read the data to check on (%s); using random token ids", err.message)
        else:
            split = next(iter(task.eval_splits.values()))
            rows = split.select(range(min(n, len(split))))
            texts = [list(rows[c]) for c in task.text_columns]
            encoded = tokenizer(*texts, truncation=True, max_length=data.max_length, padding=True,
                                return_tensors="pt")
            return dict(encoded), f"{len(rows)} examples of {task.source}"
    generator = torch.Generator().manual_seed(0)
    vocab = int(getattr(model.config, "vocab_size", 100))
    length = min(data.max_length, 64)
    input_ids = torch.randint(5, max(6, vocab), (n, length), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    for i in range(n):  # mixed lengths: padding must be handled identically
        attention_mask[i, 1 + (i * 7) % length:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}, f"{n} random token sequences (no data given)"


def _logits(model, inputs: dict) -> Any:
    import torch

    with torch.inference_mode():
        return model(**inputs).logits.float()


def run(model, tokenizer, target: Path, *, source: Path | None, inputs: dict, onnx: bool = False,
        card_extra: str = "") -> dict[str, Any]:
    """Compact `model` (in place) and write it to `target` atomically; returns the compaction report.

    Raises UserError when nothing can be removed, RuntimeError when the logits moved (a bug).
    """
    from prunecli.architectures import base_model_type, compact_model
    from prunecli.sparsity.compact import plan_compaction
    from prunecli.structure import StructureError
    from prunecli.training import checkpoint as ckpt

    model.eval()
    try:
        plan = plan_compaction(model)  # a layout it cannot map names the module
        base_model_type(model.config)  # one whose compacted checkpoint it could not save names the model type
    except StructureError as err:
        raise UserError(f"cannot compact this model: {err.message}", err.hint) from None
    if plan.heads_removed == 0 and plan.neurons_removed == 0:
        raise UserError("nothing to compact: no attention head or feed-forward neuron of this model is entirely "
                        "zero", hint="prune with the head or neuron pattern (see recipes/compact.json); 4x1 and "
                        "2:4 zeros stay inside the matrices.")
    params_before = _params(model)
    tolerance = _tolerance(model)
    before = _logits(model, inputs)
    compact_model(model, plan)
    difference = _check(before, _logits(model, inputs), tolerance, "compaction changed the logits")
    report = {"source": str(source) if source else None, "plan": plan.summary(),
              "heads_removed": plan.heads_removed, "neurons_removed": plan.neurons_removed,
              "params_before": params_before, "params_after": _params(model),
              "model_type": model.config.model_type, "max_logit_difference": difference,
              "tolerance": tolerance, "file_mb_before": _weights_mb(source) if source else None}
    try:
        with ckpt.atomic_directory(target) as staging:
            model.save_pretrained(staging)
            report["reloaded_logit_difference"] = _check(before, _logits(_reload(staging, model), inputs), tolerance,
                                                         "the saved checkpoint, loaded back, gives other logits")
            if tokenizer is not None:
                tokenizer.save_pretrained(staging)
            for name in CARRIED:
                if source is not None and (source / name).is_file():
                    (staging / name).write_bytes((source / name).read_bytes())
            report["file_mb_after"] = _weights_mb(staging)
            if onnx:
                report["onnx"] = _export(model, staging, inputs)
            (staging / "README.md").write_text(card(report, card_extra), encoding="utf-8")
            _write_json(staging / REPORT_FILE, report)
    except OSError as err:  # a full disk, a read-only folder: the staging folder is gone, the target untouched
        raise UserError(f"cannot write the compacted checkpoint to {target}: {err.strerror or err}; nothing was "
                        "written.", hint="free some disk space or choose another --output_dir.") from None
    return report


def _tolerance(model) -> float:
    import torch

    dtype = next(model.parameters()).dtype
    return TOLERANCE if dtype in (torch.float32, torch.float64) else HALF_TOLERANCE


def _check(before, after, tolerance: float, what: str) -> float:
    """The largest logit difference; a RuntimeError (a bug in prunecli, nothing written) above `tolerance`."""
    difference = float((before - after).abs().max())
    if difference > tolerance:
        raise RuntimeError(f"{what} by {difference:.3g} (> {tolerance:g}): a bug in prunecli; nothing was written")
    return difference


def _reload(folder: Path, model):
    """The staged checkpoint loaded as a user will load it (Auto class, the architectures `import prunecli`
    registers), so a folder that would not load back the same is never published."""
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(folder, dtype=next(model.parameters()).dtype).eval()


def _export(model, folder: Path, inputs: dict) -> dict[str, Any]:
    from prunecli.inference.onnx import check_onnx, export_onnx

    path = export_onnx(model, folder / "model.onnx")
    rows = [{k: v[i][inputs["attention_mask"][i].bool()].tolist() for k, v in inputs.items()}
            for i in range(len(inputs["input_ids"]))]
    checked = check_onnx(model, path, rows)
    if not checked["passed"]:
        raise RuntimeError(f"the ONNX export differs from PyTorch by {checked['max_abs_diff']:.3g}: a bug")
    return {"file": "model.onnx", "max_abs_diff": checked["max_abs_diff"], "tolerance": checked["tolerance"],
            "provider": checked.get("provider")}


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _weights_mb(folder: Path | None) -> float | None:
    from prunecli.inference import weight_files

    files = weight_files(folder) if folder is not None else []
    return round(sum(f.stat().st_size for f in files) / 2**20, 2) if files else None


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def card(report: dict[str, Any], extra: str = "") -> str:
    """The model card of a compacted checkpoint: what was removed, what it costs to run, how to load it."""
    from prunecli import __version__

    rows = "\n".join(f"| `{p['block']}` | {p['unit']}s | {p['kept']} of {p['of']} |" for p in report["plan"])
    loading = ("`AutoModelForSequenceClassification.from_pretrained` loads it as is."
               if not report["model_type"].startswith("prunecli-") else
               "Its layers differ in size, so it needs `import prunecli` first (which registers the architecture "
               "`" + report["model_type"] + "` with transformers; no remote code):\n\n```python\nimport prunecli\n"
               "from transformers import AutoModelForSequenceClassification\nmodel = "
               "AutoModelForSequenceClassification.from_pretrained(path)\n```")
    return (f"---\nlibrary_name: transformers\ntags:\n- pruned\n- compact\n- prunecli\n---\n\n"
            f"# Compacted with prunecli {__version__}\n\n"
            f"Pruned attention heads and feed-forward neurons were removed from `{report['source']}`: "
            f"{report['heads_removed']} heads and {report['neurons_removed']} neurons. The model computes the same "
            f"function (largest logit difference {report['max_logit_difference']:.2g} on the check inputs). "
            f"Parameters: {report['params_before']:,} -> {report['params_after']:,}.\n\n{loading}\n\n"
            f"| block | unit | kept |\n|---|---|---:|\n{rows}\n{extra}")


def render(report: dict[str, Any], console) -> None:
    """The compaction summary: units kept per block, parameters and file size before and after."""
    from rich.table import Table

    from prunecli.report.names import group_names

    table = Table(title="Compaction", title_justify="left", header_style="bold")
    for col in ("blocks", "unit", "kept"):
        table.add_column(col, justify="left" if col != "kept" else "right")
    by_kept: dict[tuple[str, str], list[str]] = {}
    for p in report["plan"]:
        by_kept.setdefault((p["unit"], f"{p['kept']} of {p['of']}"), []).append(p["block"])
    for (unit, kept), blocks in by_kept.items():
        table.add_row("\n".join(group.text for group in group_names(blocks)), f"{unit}s", kept)
    console.print(table)
    mb = ""
    if report.get("file_mb_before") and report.get("file_mb_after"):
        mb = f", weights {report['file_mb_before']:.1f} MB -> {report['file_mb_after']:.1f} MB"
    console.print(f"parameters {report['params_before']:,} -> {report['params_after']:,}{mb}; largest logit "
                  f"difference {report['max_logit_difference']:.2g} on {report.get('checked_on', 'the check')}",
                  highlight=False)
    if report.get("onnx"):
        o = report["onnx"]
        console.print(f"ONNX: {o['file']} (max difference vs PyTorch {o.get('max_abs_diff', float('nan')):.2g})",
                      highlight=False)
