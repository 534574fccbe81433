"""Compact a pruned checkpoint: remove its pruned heads and neurons, prove the function is kept, write the folder.

`compact_checkpoint` is what `prunecli compact CHECKPOINT --output_dir OUT` does, for Python users too;
`compact_and_save` is its second half for a model already in memory (`prune --compact` calls it at the end
of a run). The compacted checkpoint is an ordinary folder: safetensors, config, tokenizer, a model card, the
run's recipe and reports, and `compact_report.json`.

Before anything is published, the logits of the sparse and the compacted model are compared on real inputs
(the checkpoint's own data when it recorded one, or the data given; else random token ids), and again after
the staged folder is loaded back the way a user loads it: a difference above the tolerance is a bug in
prunecli (a RuntimeError) and nothing is written. The folder is written in a staging folder and renamed into
place, so a full disk or a failed check leaves neither a half-written folder nor the staging folder behind.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from prunecli.errors import UserError

TOLERANCE = 1e-4  # float32 logits of the sparse and the compacted model
HALF_TOLERANCE = 1e-2  # a float16 / bfloat16 model: removing units changes the rounding of its sums
CHECK_EXAMPLES = 64
REPORT_FILE = "compact_report.json"
CARRIED = ("prune_recipe.json", "eval_results.json", "run_args.json", "sparsity_report.json")
logger = logging.getLogger("prunecli")


def compact_checkpoint(checkpoint: str | Path, output_dir: str | Path, *, overwrite: bool = False, data=None,
                       check_examples: int = CHECK_EXAMPLES, onnx: bool = False) -> dict[str, Any]:
    """Compact the sequence classifier in `checkpoint` (a folder, or the alias `minilm`) into `output_dir`.

    `data` (a `prunecli.config.DataConfig`) chooses the examples the logits are compared on; None uses the
    data recorded in the checkpoint's run_args.json, else `check_examples` random token sequences. `onnx`
    also writes the float32 export of `prunecli export` (model.onnx, checked with onnxruntime) into
    `output_dir/onnx`. Returns the report, which is also written as
    `output_dir/compact_report.json`.

    Raises UserError (exit 2 in the CLI) for what a user can fix: a missing or non-model checkpoint, a
    non-empty `output_dir` without `overwrite`, a model with nothing to remove or an architecture compaction
    does not support, a disk that cannot hold the result. Nothing is written then.
    """
    from prunecli.config import DataConfig
    from prunecli.models.folders import DATA_SOURCE_FIELDS, check_model_folder, resolve_model_path
    from prunecli.models.loading import load_checkpoint_tokenizer, load_classifier
    from prunecli.pipelines.export import check_output

    checkpoint = str(checkpoint)
    if check_examples < 1:
        raise UserError(f"--check_examples must be at least 1 (got {check_examples}).")
    resolved = resolve_model_path(checkpoint)
    check_model_folder(resolved, checkpoint)  # before the output folder, so a wrong argument is named first
    target = check_output(output_dir, overwrite, resolved, "the compacted model")
    if onnx:  # before the compaction, as `prune --export` checks it before training
        from prunecli.pipelines.export import require_export_tools

        require_export_tools()
    data = data if data is not None else DataConfig()
    model, _ = load_classifier(checkpoint)
    tokenizer = load_checkpoint_tokenizer(checkpoint, required=any(getattr(data, f) for f in DATA_SOURCE_FIELDS))
    if tokenizer is None:
        logger.warning("%s has no tokenizer: the logits are compared on random token ids, and the compacted "
                       "folder has no tokenizer either", checkpoint)
    inputs, described = check_inputs(checkpoint, tokenizer, model, data, check_examples)
    return compact_and_save(model, tokenizer, target, source=Path(resolved), inputs=inputs, onnx=onnx,
                            checked_on=described)


def check_inputs(checkpoint: str, tokenizer, model, data, n: int) -> tuple[dict, str]:
    """Model inputs to compare the logits on: `n` real examples of the data (`data`, or the data recorded in
    the checkpoint when `data` names none), else `n` random token sequences of mixed lengths. Returns
    (inputs, a description of them for the report)."""
    import torch

    from prunecli.data.sources import load_task_data
    from prunecli.models.folders import DATA_SOURCE_FIELDS, with_recorded_data

    data = with_recorded_data(checkpoint, data)
    if tokenizer is not None and any(getattr(data, f) for f in DATA_SOURCE_FIELDS):
        try:
            task = load_task_data(data, need_train=False)
        except UserError as err:
            logger.warning("cannot read the data to check on (%s); using random token ids", err.message)
        else:
            split = next(iter(task.eval_splits.values()))
            rows = split.select(range(min(n, len(split))))
            texts = [list(rows[c]) for c in task.text_columns]
            qa = task.task_type == "question_answering"
            encoded = tokenizer(*texts, truncation="only_second" if qa else True,
                                max_length=data.max_seq_length if qa else data.max_length, padding=True,
                                is_split_into_words=task.task_type == "token_classification", return_tensors="pt")
            return dict(encoded), f"{len(rows)} examples of {task.source}"
    generator = torch.Generator().manual_seed(0)
    vocab = int(getattr(model.config, "vocab_size", 100))
    length = min(data.max_length, 64)
    input_ids = torch.randint(5, max(6, vocab), (n, length), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    for i in range(n):  # mixed lengths: padding must be handled identically
        attention_mask[i, 1 + (i * 7) % length:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}, f"{n} random token sequences (no data given)"


def compact_and_save(model, tokenizer, target: Path, *, source: Path | None, inputs: dict, onnx: bool = False,
                     checked_on: str | None = None) -> dict[str, Any]:
    """Compact `model` (in place) and write it, with `tokenizer` (None: none), to `target` atomically; returns
    the compaction report, which is also written as `target/compact_report.json`.

    `source` is the folder the model came from: named in the report and in errors, and the run files it holds
    (recipe, reports, run_args.json) are carried over. `inputs` are the model inputs the logits are compared on;
    `checked_on` describes them in the report. Raises UserError when nothing can be removed, the architecture
    is not supported or the folder cannot be written (nothing is written then), RuntimeError when the logits
    moved (a bug).
    """
    from safetensors import SafetensorError

    from prunecli.models.architectures import base_model_type, compact_model
    from prunecli.models.folders import weights_megabytes
    from prunecli.models.loading import quiet_transformers
    from prunecli.sparsity.compact import plan_compaction
    from prunecli.structure import StructureError
    from prunecli.tasks import AUTO_CLASSES
    from prunecli.training import checkpoint as ckpt

    target = Path(target)
    named = f" {source}" if source is not None else ""
    model.eval()
    try:
        plan = plan_compaction(model)  # a layout it cannot map names the module
        base_model_type(model.config)  # one whose compacted checkpoint it could not save names the model type
    except StructureError as err:
        raise UserError(f"cannot compact{named}: {err.message}", err.hint) from None
    if plan.heads_removed == 0 and plan.neurons_removed == 0:
        raise UserError(f"nothing to compact in{named or ' this model'}: no attention head or feed-forward neuron "
                        "is entirely zero", hint="prune with the head or neuron pattern (`--recipe compact`); "
                        "4x1 and 2:4 zeros stay inside the matrices.")
    params_before = _params(model)
    tolerance = _tolerance(model)
    before = _logits(model, inputs)
    compact_model(model, plan)
    difference = _check(before, _logits(model, inputs), tolerance, "compaction changed the logits")
    task = _task_type(model)
    report = {"source": str(source) if source is not None else None, "plan": plan.summary(),
              "heads_removed": plan.heads_removed, "neurons_removed": plan.neurons_removed,
              "params_before": params_before, "params_after": _params(model),
              "model_type": model.config.model_type, "task": task,
              "auto_class": AUTO_CLASSES[task], "max_logit_difference": difference,
              "tolerance": tolerance, "file_mb_before": weights_megabytes(source)}
    if checked_on:
        report["checked_on"] = checked_on
    try:
        with ckpt.atomic_directory(target) as staging, quiet_transformers():  # no progress bars around the report
            model.save_pretrained(staging)
            report["reloaded_logit_difference"] = _check(before, _logits(_reload(staging, model), inputs), tolerance,
                                                         "the saved checkpoint, loaded back, gives other logits")
            if tokenizer is not None:
                tokenizer.save_pretrained(staging)
            for name in CARRIED:
                if source is not None and (source / name).is_file():
                    (staging / name).write_bytes((source / name).read_bytes())
            report["file_mb_after"] = weights_megabytes(staging)
            (staging / "README.md").write_text(compact_card(report), encoding="utf-8")
            write_json(staging / REPORT_FILE, report)
            if onnx:  # the float32 export of `prunecli export` of the staged folder (report included), in OUT/onnx
                report["onnx"] = _export(model, tokenizer, staging, target, inputs, checked_on)
                write_json(staging / REPORT_FILE, report)
    except (OSError, SafetensorError) as err:
        # A full disk, a file size limit, a read-only folder: the staging folder is gone, the target untouched.
        raise UserError(f"cannot write the compacted checkpoint to {target}: {_write_failure(err)}; nothing was "
                        "written.", hint="free some disk space or choose another --output_dir.") from None
    return report


def _write_failure(err: Exception) -> str:
    """The reason of a failed write in words: an OSError's strerror, or the OS message inside a SafetensorError
    (`Error while serializing: I/O error: No space left on device (os error 28)`)."""
    if isinstance(err, OSError):
        return err.strerror or str(err)
    text = (str(err).strip().splitlines() or [type(err).__name__])[0]
    found = re.search(r"I/O error: (.+?)(?: \(os error \d+\))?$", text)
    return found.group(1) if found else text


def _logits(model, inputs: dict) -> Any:
    import torch

    from prunecli.tasks import output_logits

    with torch.inference_mode():
        return output_logits(model(**inputs)).float()


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


def _task_type(model) -> str:
    from prunecli.tasks import CLASSIFICATION, model_task_type

    return model_task_type(model) or model_task_type(model.config) or CLASSIFICATION


def _reload(folder: Path, model):
    """The staged checkpoint loaded as a user will load it (Auto class, the architectures `import prunecli`
    registers), so a folder that would not load back the same is never published."""
    from prunecli.tasks import auto_model_class

    return auto_model_class(_task_type(model)).from_pretrained(folder, dtype=next(model.parameters()).dtype).eval()


def _export(model, tokenizer, staging: Path, target: Path, inputs: dict, checked_on: str | None) -> dict[str, Any]:
    """The float32 export of the compacted model in memory into the staged OUT/onnx, checked on the examples the
    compaction was checked on; inside compact's own staging folder, so one write and one failure message cover
    both."""
    from prunecli.pipelines.export import EXPORT_DIR, rows_of, stage_export

    folder = staging / EXPORT_DIR
    folder.mkdir()
    record = stage_export(model, tokenizer, folder, source=staging, rows=rows_of(inputs),
                          checked_on=checked_on or f"{len(inputs['input_ids'])} examples", quantize=None,
                          source_name=str(target))
    return {"folder": EXPORT_DIR, "file": f"{EXPORT_DIR}/model.onnx", "max_abs_diff":
            record["checks"]["float32"]["max_abs_diff"], "tolerance": record["checks"]["float32"]["tolerance"]}


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def write_json(path: Path, obj: Any) -> None:
    """Write `obj` as indented JSON with a final newline (the format of every report prunecli writes)."""
    Path(path).write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def compact_card(report: dict[str, Any]) -> str:
    """The model card of a compacted checkpoint: what was removed, what it costs to run, how to load it."""
    from prunecli import __version__

    rows = "\n".join(f"| `{p['block']}` | {p['unit']}s | {p['kept']} of {p['of']} |" for p in report["plan"])
    auto = report.get("auto_class", "AutoModelForSequenceClassification")
    loading = (f"`{auto}.from_pretrained` loads it as is."
               if not report["model_type"].startswith("prunecli-") else
               "Its layers differ in size, so it needs `import prunecli` first (which registers the architecture "
               "`" + report["model_type"] + "` with transformers; no remote code):\n\n```python\nimport prunecli\n"
               f"from transformers import {auto}\nmodel = {auto}.from_pretrained(path)\n```")
    return (f"---\nlibrary_name: transformers\ntags:\n- pruned\n- compact\n- prunecli\n---\n\n"
            f"# Compacted with prunecli {__version__}\n\n"
            f"Pruned attention heads and feed-forward neurons were removed from `{report['source']}`: "
            f"{report['heads_removed']} heads and {report['neurons_removed']} neurons. The model computes the same "
            f"function (largest logit difference {report['max_logit_difference']:.2g} on the check inputs). "
            f"Parameters: {report['params_before']:,} -> {report['params_after']:,}.\n\n{loading}\n\n"
            f"| block | unit | kept |\n|---|---|---:|\n{rows}\n")
