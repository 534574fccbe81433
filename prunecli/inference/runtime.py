"""An exported deployment folder (`prunecli export`) run through onnxruntime: what evaluate and benchmark score.

A deployment folder holds `model.onnx`, `config.json` (the labels), the tokenizer and `export.json` (what
`prunecli.pipelines.export` recorded: source, precision, checks). `is_exported(path)` tells such a folder from a
checkpoint without reading it; `load_exported(path)` opens it: an onnxruntime session on the CPU, the tokenizer and
the config, with `logits(feeds)` for batches of token ids. Nothing here imports torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prunecli.errors import CheckpointError, UserError
from prunecli.models.folders import megabytes

ONNX_FILE = "model.onnx"
EXPORT_FILE = "export.json"


def is_exported(path: str | Path) -> bool:
    """True for a folder `prunecli export` wrote (model.onnx and export.json beside it)."""
    folder = Path(path)
    return (folder / ONNX_FILE).is_file() and (folder / EXPORT_FILE).is_file()


def read_export_record(path: str | Path) -> dict[str, Any]:
    """The folder's export.json; a CheckpointError naming the file when it is unreadable."""
    record_path = Path(path) / EXPORT_FILE
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot read {record_path}: {getattr(err, 'strerror', None) or err}",
                              hint="export the model again with prunecli export.") from None
    if not isinstance(record, dict):
        raise CheckpointError(f"{record_path} is not an export record (not a JSON object).",
                              hint="export the model again with prunecli export.")
    return record


def precision(record: dict[str, Any]) -> str:
    """fp32 or int8: the precision an export record names."""
    return str(record.get("precision") or "fp32")


@dataclass
class ExportedModel:
    """An open deployment folder: its onnxruntime session, tokenizer (None if the folder has none), config
    and export record."""

    folder: Path
    session: Any
    tokenizer: Any
    config: Any
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.session.get_inputs()]

    @property
    def precision(self) -> str:
        return precision(self.record)

    @property
    def file_bytes(self) -> int:
        return (self.folder / ONNX_FILE).stat().st_size

    def logits(self, feeds: dict[str, Any]) -> Any:
        """Logits (numpy, float32) of a batch of int64 numpy feeds keyed by input name (extra keys ignored)."""
        from prunecli.inference.onnx import OUTPUT_NAME

        names = self.input_names
        return self.session.run([OUTPUT_NAME], {n: feeds[n] for n in names})[0]


def load_exported(path: str | Path, *, threads: int | None = None) -> ExportedModel:
    """Open a deployment folder for inference (CPU, `threads` intra-op threads; default onnxruntime's)."""
    from prunecli.inference.onnx import make_session
    from prunecli.models.loading import clamp_to_positions, load_checkpoint_tokenizer, quiet_transformers

    folder = Path(path)
    if not is_exported(folder):
        raise CheckpointError(f"{path} is not an exported model folder (no {ONNX_FILE} and {EXPORT_FILE}).",
                              hint="write one with prunecli export MODEL --output_dir OUT.")
    record = read_export_record(folder)
    try:
        session = make_session(folder / ONNX_FILE, threads)
    except UserError:  # onnxruntime is not installed
        raise
    except Exception as err:  # onnxruntime's own errors (a truncated or foreign file) carry no common base
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise CheckpointError(f"onnxruntime cannot load {folder / ONNX_FILE}: {reason}",
                              hint="the file may be truncated; export the model again.") from None
    from transformers import AutoConfig

    try:
        with quiet_transformers():
            config = AutoConfig.from_pretrained(folder)
    except Exception as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise CheckpointError(f"cannot read {folder / 'config.json'}: {reason}",
                              hint="export the model again.") from None
    tokenizer = load_checkpoint_tokenizer(str(folder), required=False)
    clamp_to_positions(tokenizer, config)
    return ExportedModel(folder, session, tokenizer, config, record)


def evaluate_exported(path: str | Path, cfg, *, threads: int | None = None) -> dict[str, Any]:
    """Score the deployment folder `path` through onnxruntime on the evaluation split(s) of `cfg.data` (a
    RunConfig; the data the folder recorded when it names none), with the task's GLUE metric, exactly as
    `prunecli evaluate` scores a checkpoint: the same data options, label checks and metric names.

    Data of another task (other labels, another number of outputs) is a UserError naming the folder. Returns
    {"checkpoint", "task_name", "data", "num_examples", "metrics", "runtime", "precision"}.
    """
    import numpy as np

    from prunecli.data.glue import metric_suffix
    from prunecli.data.metrics import compute_metrics
    from prunecli.data.sources import load_task_data
    from prunecli.data.tokenize import tokenize_task_data
    from prunecli.inference.onnx import pad_batch
    from prunecli.models.folders import with_recorded_data
    from prunecli.models.loading import check_same_task, data_label_ids

    given = str(path)
    deployed = load_exported(given, threads=threads)
    if deployed.tokenizer is None:
        raise CheckpointError(f"{given} has no tokenizer, which scoring text needs.",
                              hint="export the model again from a checkpoint saved with its tokenizer.")
    data_cfg = with_recorded_data(given, cfg.data)
    data = load_task_data(data_cfg, need_train=False, seed=cfg.train.seed)
    check_same_task(deployed.config, data, given)
    label2id = data_label_ids(deployed.config, data, given, training=False)
    tokenized = tokenize_task_data(data, deployed.tokenizer, data_cfg, label2id)
    names = deployed.input_names
    pad_id = deployed.tokenizer.pad_token_id if deployed.tokenizer.pad_token_id is not None else 0
    batch_size = cfg.train.per_device_eval_batch_size
    metrics: dict[str, float] = {}
    for split, ds in tokenized.eval_splits.items():
        if data.task_type != "classification":
            scores = _token_task_scores(deployed, tokenized, split, data_cfg, pad_id, batch_size)
            metrics.update({f"{name}{metric_suffix(split)}": value for name, value in scores.items()})
            continue
        columns = [c for c in (*names, "labels") if c in ds.column_names]
        table = ds.select_columns(columns)[:]
        predictions = []
        for start in range(0, len(ds), batch_size):
            rows = [{c: table[c][i] for c in columns if c != "labels"}
                    for i in range(start, min(start + batch_size, len(ds)))]
            logits = deployed.logits(pad_batch(rows, names, pad_id))
            predictions.append(logits[:, 0] if data.is_regression else logits.argmax(axis=-1))
        scores = compute_metrics(data.task_name, np.concatenate(predictions), np.asarray(table["labels"]),
                                 data.is_regression)
        metrics.update({f"{name}{metric_suffix(split)}": value for name, value in scores.items()})
    return {"checkpoint": given, "task_name": data.task_name, "data": data.source,
            "num_examples": {name: len(ds) for name, ds in data.eval_splits.items()}, "metrics": metrics,
            "runtime": "onnxruntime", "precision": deployed.precision}


def _token_task_scores(deployed: ExportedModel, tokenized, split: str, data_cfg, pad_id: int,
                       batch_size: int) -> dict[str, float]:
    """The task metric of a question-answering or token-classification split scored through onnxruntime, with
    the same post-processing the training loop uses (`prunecli.tasks.qa.score_split`: windows -> answers ->
    EM/F1; `prunecli.tasks.ner.score_split`: first sub-tokens -> tags -> seqeval)."""
    from prunecli.data.examples import EXAMPLE_ID
    from prunecli.inference.onnx import pad_batch

    ds = tokenized.eval_splits[split]
    names = deployed.input_names
    qa = tokenized.task.task_type == "question_answering"
    table = ds[:]
    outputs: dict[int, Any] = {}
    for start in range(0, len(ds), batch_size):
        index = range(start, min(start + batch_size, len(ds)))
        rows = [{c: table[c][i] for c in names if c in table} for i in index]
        logits = deployed.logits(pad_batch(rows, names, pad_id))
        for row, i in zip(logits, index, strict=True):
            length = len(table["input_ids"][i])
            outputs[int(table[EXAMPLE_ID][i])] = row[:length]
    raw = tokenized.task.eval_splits[split]
    if qa:  # logits [tokens, 2]: start and end, stacked by the export
        from prunecli.tasks.qa import score_split

        examples, offsets = tokenized.eval_windows[split]
        order = range(len(examples))  # a window's example_id is its index
        return score_split(raw, examples, offsets, [outputs[i][:, 0] for i in order],
                           [outputs[i][:, 1] for i in order], data_cfg)
    from prunecli.tasks.ner import score_split

    labels = {int(table[EXAMPLE_ID][i]): table["labels"][i] for i in range(len(ds))}
    order = raw[EXAMPLE_ID]  # a sentence's example_id is its row's
    id2label = {int(k): v for k, v in deployed.config.id2label.items()}
    return score_split(raw, [outputs[i].argmax(axis=-1) for i in order], [labels[i] for i in order], id2label)


def describe_export(path: str | Path) -> dict[str, Any]:
    """What an exported folder is, from its export.json and file size alone (no session, no torch): `inspect`
    shows it. An unreadable export.json is said, not raised."""
    folder = Path(path)
    try:
        record = read_export_record(folder)
        problem = None
    except CheckpointError as err:
        record, problem = {}, err.message
    onnx = record.get("onnx") or {}
    checks = record.get("checks") or {}
    return {
        "path": str(path), "kind": "onnx", "precision": precision(record) if record else None,
        "file_mb": megabytes((folder / ONNX_FILE).stat().st_size), "source": record.get("source"),
        "quantization": record.get("quantization"), "exporter": onnx.get("exporter"), "opset": onnx.get("opset"),
        "inputs": onnx.get("inputs"), "checked_on": record.get("checked_on"), "checks": checks,
        "source_sparsity": record.get("source_sparsity"), "compact": record.get("compact"),
        "source_metrics": record.get("source_metrics"), "problem": problem,
    }
