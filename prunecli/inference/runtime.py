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
    from prunecli.models.loading import load_checkpoint_tokenizer, quiet_transformers

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
    return ExportedModel(folder, session, tokenizer, config, record)
