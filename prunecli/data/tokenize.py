"""Tokenization, cached on disk under a key made of the data content, the tokenizer and the settings.

`tokenize_task_data(data, tokenizer, cfg, label2id)` turns raw examples into model inputs
(`input_ids`, `attention_mask`, `token_type_ids` when the tokenizer makes them, `labels`,
`example_id`). The cache lives in `--cache_dir`, else `$PRUNECLI_CACHE_DIR`, else
`~/.cache/prunecli`; a damaged entry is re-created, never fatal. Padding is dynamic (the collator's)
unless `pad_to_max_length`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from prunecli.data.examples import EXAMPLE_ID, LABEL, TaskData, TokenizedData
from prunecli.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    from datasets import Dataset

    from prunecli.config import DataConfig

logger = logging.getLogger("prunecli")

CACHE_VERSION = 1


def cache_root(cfg: DataConfig | None = None) -> Path:
    """--cache_dir, else $PRUNECLI_CACHE_DIR, else ~/.cache/prunecli."""
    if cfg is not None and cfg.cache_dir:
        return Path(cfg.cache_dir).expanduser()
    env = os.environ.get("PRUNECLI_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "prunecli"


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of everything that decides what a tokenizer outputs (vocabulary, normalisation, special tokens).

    The fast tokenizer's serialisation covers it all except its transient truncation/padding state,
    which is reset per call and removed here.
    """
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
        h.update(json.dumps(state, sort_keys=True).encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
        h.update(json.dumps(tokenizer.init_kwargs, sort_keys=True, default=str).encode())
    extra = {k: getattr(tokenizer, k, None) for k in ("padding_side", "truncation_side", "model_input_names")}
    h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()


def dataset_fingerprint(ds: Dataset, columns: tuple[str, ...]) -> str:
    """A hash of the content of `columns` (in row order): equal data gives an equal key, in any process."""
    h = hashlib.sha256()
    selected = ds.select_columns(list(columns))
    for start in range(0, len(ds), 10_000):
        chunk = selected[start:start + 10_000]
        h.update(json.dumps([chunk[c] for c in columns], ensure_ascii=False).encode())
    h.update(str(len(ds)).encode())
    return h.hexdigest()


def tokenize_task_data(data: TaskData, tokenizer, cfg: DataConfig, label2id: Mapping[str, int] | None) -> TokenizedData:
    """Tokenize every split of `data` (cached): columns input_ids, attention_mask, [token_type_ids], labels, example_id.

    `label2id` maps label names to the model's ids (the model config's `label2id`); None for regression.
    Padding is dynamic (done by the collator) unless `cfg.pad_to_max_length`. A `max_length` above what the
    tokenizer allows is lowered to `tokenizer.model_max_length` with a warning.
    """
    if data.task_type == "question_answering":
        from prunecli.tasks.qa import tokenize_qa

        return tokenize_qa(data, tokenizer, cfg)
    if not data.is_regression and not label2id:
        raise ValueError("classification data needs a label2id mapping")
    max_length = cfg.max_length
    limit = getattr(tokenizer, "model_max_length", None)
    if limit is not None and 0 < limit < max_length:
        logger.warning("--max_length %d is above this tokenizer's limit; using %d.", max_length, limit)
        max_length = int(limit)
    if max_length < 1:
        raise DataError(f"--max_length must be positive (got {cfg.max_length}).")
    if data.task_type == "token_classification":
        from prunecli.tasks.ner import tokenize_ner

        return tokenize_ner(data, tokenizer, dict(label2id), max_length=max_length,
                            label_all_tokens=cfg.label_all_tokens)
    settings = {
        "version": CACHE_VERSION, "tokenizer": tokenizer_fingerprint(tokenizer), "max_length": max_length,
        "padding": "max_length" if cfg.pad_to_max_length else "dynamic", "text_columns": list(data.text_columns),
        "label2id": sorted(label2id.items()) if label2id else None, "regression": data.is_regression,
    }
    root = cache_root(cfg) / "tokenized"
    splits = ({"train": data.train} if data.train is not None else {}) | data.eval_splits
    out: dict[str, Dataset] = {}
    from_cache: dict[str, bool] = {}
    for split, ds in splits.items():
        _check_labels(ds, data, split, label2id)
        columns = (*data.text_columns, LABEL, EXAMPLE_ID)
        key = hashlib.sha256(json.dumps({**settings, "data": dataset_fingerprint(ds, columns)}).encode()).hexdigest()
        cached = _load_cached(root / key[:40])
        from_cache[split] = cached is not None
        if cached is None:
            cached = _tokenize_split(ds, tokenizer, data, max_length, cfg.pad_to_max_length, label2id)
            _store_cached(cached, root / key[:40])
        out[split] = cached
    return TokenizedData(task=data, train=out.pop("train", None), eval_splits=out,
                         label2id=dict(label2id) if label2id else None, max_length=max_length, from_cache=from_cache)


def _check_labels(ds: Dataset, data: TaskData, split: str, label2id: Mapping[str, int] | None) -> None:
    if data.is_regression:
        return
    unknown = sorted(set(ds.unique(LABEL)) - set(label2id or {}))
    if unknown:
        where = data.split_sources.get(split, split)
        shown = ", ".join(repr(u) for u in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise DataError(f"{where}: column {LABEL!r} has labels the model does not know: {shown}.",
                        hint=f"the model's labels are {', '.join(label2id or {})}.")


def _tokenize_split(ds: Dataset, tokenizer, data: TaskData, max_length: int, pad_to_max: bool,
                    label2id: Mapping[str, int] | None) -> Dataset:
    def encode(batch: dict[str, list]) -> dict[str, list]:
        texts = [batch[c] for c in data.text_columns]
        encoded = dict(tokenizer(*texts, truncation=True, max_length=max_length,
                                 padding="max_length" if pad_to_max else False))
        if data.is_regression:
            encoded["labels"] = [float(v) for v in batch[LABEL]]
        else:
            encoded["labels"] = [label2id[v] for v in batch[LABEL]]
        encoded[EXAMPLE_ID] = batch[EXAMPLE_ID]
        return encoded

    with _quiet_datasets():
        return ds.map(encode, batched=True, batch_size=1000, remove_columns=ds.column_names, keep_in_memory=True)


@contextlib.contextmanager
def _quiet_datasets():
    """Hide datasets' own progress bars (map, save_to_disk) for the duration: they are noise in a CLI run."""
    import datasets

    bars_were_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()


def _load_cached(folder: Path) -> Dataset | None:
    if not (folder / "dataset_info.json").is_file():
        return None
    try:
        from datasets import load_from_disk

        return load_from_disk(str(folder))
    except Exception as err:  # a damaged cache entry is re-created, never fatal
        logger.warning("ignoring unreadable tokenization cache %s (%s)", folder, err)
        return None


def _store_cached(ds: Dataset, folder: Path) -> None:
    """Write a cache entry atomically (to a temporary sibling, then rename); failures only cost speed."""
    tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        with _quiet_datasets():
            ds.save_to_disk(str(tmp))
        try:
            os.replace(tmp, folder)
        except OSError:  # another process stored the same entry first
            shutil.rmtree(tmp, ignore_errors=True)
    except Exception as err:
        shutil.rmtree(tmp, ignore_errors=True)
        logger.warning("could not write the tokenization cache %s (%s); continuing without it", folder, err)
