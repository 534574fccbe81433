"""GLUE TSV folders for the benchmark: derived folders (held-out split, subsets) and tokenized arrays.

Derived folders copy the original lines byte for byte (header, UTF-8 BOM, quotes, trailing spaces,
line endings), so any reader of the classic GLUE layout, prunecli's included, reads them exactly as
it reads the originals. They live under bench/work/ (git-ignored): GLUE data is never copied into
the repository.

The pure-Python parts (reading, splitting, writing) import nothing heavy; `tokenize_folder` imports
transformers (prunecli's environment) and prefers prunecli's own data layer when it is there.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

# Columns of the classic layout, found by header name (the MRPC header starts with a UTF-8 BOM).
TASK_COLUMNS = {
    "mrpc": {"label": "Quality", "texts": ("#1 String", "#2 String")},
    "sst2": {"label": "label", "texts": ("sentence",)},
}
TASK_FOLDERS = {"mrpc": "MRPC", "sst2": "SST-2"}


@dataclass
class GlueFile:
    """One TSV file as its raw lines: `header` and `lines` keep their line endings and every byte."""

    header: str
    lines: list[str]
    task: str

    @property
    def columns(self) -> list[str]:
        return self.header.lstrip("\ufeff").rstrip("\r\n").split("\t")

    def _index(self, name: str) -> int:
        try:
            return self.columns.index(name)
        except ValueError:
            raise ValueError(f"column {name!r} not in the {self.task} header {self.columns}") from None

    def fields(self, line: str) -> list[str]:
        # No quote processing: MRPC sentences contain unbalanced double quotes (csv.QUOTE_NONE semantics).
        return line.rstrip("\r\n").split("\t")

    def labels(self) -> list[int]:
        col = self._index(TASK_COLUMNS[self.task]["label"])
        return [int(self.fields(line)[col]) for line in self.lines]

    def texts(self) -> list[tuple[str, ...]]:
        cols = [self._index(c) for c in TASK_COLUMNS[self.task]["texts"]]
        return [tuple(self.fields(line)[c] for c in cols) for line in self.lines]


def read_glue_file(path: str | Path, task: str) -> GlueFile:
    if task not in TASK_COLUMNS:
        raise ValueError(f"unsupported task {task!r} (bench tasks: {sorted(TASK_COLUMNS)})")
    with open(path, encoding="utf-8", newline="") as fh:
        raw = fh.read().splitlines(keepends=True)
    if not raw:
        raise ValueError(f"{path} is empty")
    lines = [line for line in raw[1:] if line.strip("\r\n")]
    return GlueFile(header=raw[0], lines=lines, task=task)


def write_glue_file(path: Path, header: str, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = [line if line.endswith("\n") else line + "\n" for line in lines]
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(header if header.endswith("\n") else header + "\n")
        fh.writelines(body)


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def stratified_holdout(labels: list[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (kept, held out), both in original order; each label keeps its share (rounded)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"holdout fraction must be in (0, 1), got {fraction}")
    rng = random.Random(seed)
    by_label: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    held: set[int] = set()
    for label in sorted(by_label):
        members = by_label[label][:]
        rng.shuffle(members)
        held.update(members[: round(fraction * len(members))])
    kept = [i for i in range(len(labels)) if i not in held]
    return kept, sorted(held)


def seeded_subset(n_total: int, n: int, seed: int) -> list[int]:
    """The first `n` indices of a seeded shuffle, returned in original order."""
    if n >= n_total:
        return list(range(n_total))
    order = list(range(n_total))
    random.Random(seed).shuffle(order)
    return sorted(order[:n])


def derive_folder(
    src: str | Path,
    dst: str | Path,
    task: str,
    *,
    holdout: float | None = None,
    max_train_samples: int | None = None,
    seed: int = 0,
) -> dict:
    """Write a GLUE folder under `dst` derived from `src`; returns (and writes) its manifest.

    holdout: train.tsv = src train minus a stratified `holdout` share, dev.tsv = that share (for
    choosing hyperparameters without touching dev). max_train_samples: train.tsv = a seeded subset
    of the (remaining) train lines. Otherwise dev.tsv is the source dev.tsv, byte for byte.
    Idempotent: an existing folder with the same manifest is left as it is.
    """
    src, dst = Path(src), Path(dst)
    manifest = {
        "source": str(src.resolve()),
        "task": task,
        "holdout": holdout,
        "max_train_samples": max_train_samples,
        "seed": seed,
        "source_sha256": {name: sha256(src / name) for name in ("train.tsv", "dev.tsv")},
    }
    manifest_path = dst / "bench_manifest.json"
    if manifest_path.exists():
        old = json.loads(manifest_path.read_text())
        if {k: old.get(k) for k in manifest} == manifest:
            return old
    train = read_glue_file(src / "train.tsv", task)
    if holdout:
        kept, held = stratified_holdout(train.labels(), holdout, seed)
        dev_lines = [train.lines[i] for i in held]
        dev_header = train.header
    else:
        kept = list(range(len(train.lines)))
        dev = read_glue_file(src / "dev.tsv", task)
        dev_lines, dev_header = dev.lines, dev.header
    if max_train_samples is not None:
        kept = [kept[i] for i in seeded_subset(len(kept), max_train_samples, seed)]
    train_lines = [train.lines[i] for i in kept]
    write_glue_file(dst / "train.tsv", train.header, train_lines)
    write_glue_file(dst / "dev.tsv", dev_header, dev_lines)
    manifest["counts"] = {"train": len(train_lines), "dev": len(dev_lines)}
    manifest["sha256"] = {name: sha256(dst / name) for name in ("train.tsv", "dev.tsv")}
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


# ---- tokenization (prunecli's environment) --------------------------------------------------------------


def _ragged(rows: list[list[int]]):
    import numpy as np

    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(r) for r in rows])
    flat = np.fromiter((t for r in rows for t in r), dtype=np.int32, count=int(offsets[-1]))
    return flat, offsets


def _tokenize_prunecli(folder: Path, task: str, model_dir: str, max_length: int) -> dict[str, dict]:
    """Tokenize with prunecli's data layer: the same code `prunecli prune` runs, so both tools see identical ids.

    Labels are mapped with the checkpoint's `label2id` when it names the task's labels (a checkpoint
    fine-tuned by prunecli does), else by the task's label order (MRPC: equivalent = 1).
    """
    from transformers import AutoConfig, AutoTokenizer

    from prunecli.config import DataConfig
    from prunecli.data.sources import load_task_data
    from prunecli.data.tokenize import tokenize_task_data

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    cfg = DataConfig(task_name=task, data_dir=str(folder), max_length=max_length)
    data = load_task_data(cfg, need_train=True)
    names = list(data.label_list or [])
    model_label2id = {str(k).lower(): int(v) for k, v in (AutoConfig.from_pretrained(model_dir).label2id or {}).items()}
    if names and all(n.lower() in model_label2id for n in names):
        label2id = {n: model_label2id[n.lower()] for n in names}
    else:
        label2id = {n: i for i, n in enumerate(names)}
    tokenized = tokenize_task_data(data, tokenizer, cfg, label2id)
    if len(tokenized.eval_splits) != 1:
        raise ValueError(f"{task}: the INC driver takes one evaluation split, got {list(tokenized.eval_splits)}")
    splits = {}
    for split, ds in (("train", tokenized.train), ("eval", next(iter(tokenized.eval_splits.values())))):
        splits[split] = {"input_ids": list(ds["input_ids"]),
                         "token_type_ids": list(ds["token_type_ids"]) if "token_type_ids" in ds.column_names else None,
                         "labels": [int(x) for x in ds["labels"]]}
    return {"splits": splits, "pad_token_id": tokenizer.pad_token_id or 0, "tokenized_by": "prunecli.data",
            "label2id": label2id}


def tokenize_folder(folder: str | Path, task: str, model_dir: str, out_npz: str | Path, max_length: int = 128) -> dict:
    """Write the tokenized train/dev of a GLUE folder to `out_npz` (ragged arrays) for bench/inc_prune.py.

    Tokenized by prunecli's data layer. Returns the meta.
    """
    import numpy as np

    folder = Path(folder)
    chosen = _tokenize_prunecli(folder, task, model_dir, max_length)
    arrays = {}
    for split, enc in chosen["splits"].items():
        arrays[f"{split}_input_ids"], arrays[f"{split}_offsets"] = _ragged(enc["input_ids"])
        if enc["token_type_ids"] is not None:
            arrays[f"{split}_token_type_ids"], _ = _ragged(enc["token_type_ids"])
        arrays[f"{split}_labels"] = np.asarray(enc["labels"], dtype=np.int64)
    meta = {k: v for k, v in chosen.items() if k != "splits"}
    meta.update({"task": task, "folder": str(folder), "model": str(model_dir), "max_length": max_length,
                 "n_train": len(chosen["splits"]["train"]["labels"]),
                 "n_eval": len(chosen["splits"]["eval"]["labels"]),
                 "sha256": {n: sha256(folder / n) for n in ("train.tsv", "dev.tsv")}})
    out_npz = Path(out_npz)
    out_npz.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_npz.with_suffix(".tmp.npz")
    np.savez(tmp, meta=np.asarray(json.dumps(meta)), **arrays)
    tmp.replace(out_npz)
    return meta
