"""Side-by-side inference measurements of sequence classifiers: latency, throughput, size and FLOPs.

`benchmark_models(["dense/", "compact/"])` loads every model (`AutoModelForSequenceClassification`, weights
only, no checkpoint code), then times each case on each backend, the models of a case taking turns, so that a
busy machine's slow spells hit every model of a case alike:

* cases: `b{N} s{L}` for every batch size N (default 1 and 32) at sequence length L (default 128), random token
  ids of the model's vocabulary with full attention masks; with data (a `DataConfig`), also `b{N} data`:
  batches of the evaluation split's first examples (default 256) in file order, each padded to its longest
  example (dynamic padding), as a deployed classifier sees them;
* backends: `pytorch` (CPU, `torch.inference_mode()`, `threads` intra-op threads, default torch's) and
  `onnxruntime` (each model exported with `export_onnx` to a temporary file, CPUExecutionProvider, the same
  number of intra-op threads, one inter-op thread, `make_session`'s graph rewrites) when onnxruntime is
  installed; without it the ONNX columns are skipped with a note;
* timing: `warmup` untimed calls, then `time.perf_counter()` around each call until at least `min_runs` calls
  and `min_time` seconds, stopped early only by the caps `max_time` seconds or `max_runs` calls (`capped`
  says so). The runs are taken in `rounds` (default 3) that take turns between the models of a case (A B C,
  A B C, ...), each round a share of the runs and seconds after one untimed call, so a slow spell of the
  machine, or a drift, reaches every model alike. In a data case round i times every `rounds`-th batch from
  the i-th, in whole passes, so every model is timed on the same mix of lengths. A run is one batch.
  Latency: median and p90 of all the runs, in ms; throughput: examples of the timed runs / their total time;
* per model: parameters (and non-zero ones), FLOPs per example (matmul FLOPs, 2*m*n*k, as torch's
  `FlopCounterMode` counts them, of a batch-1 forward at the benchmark's sequence length with eager attention,
  so the attention matmuls are counted; `encoder_flops_per_example` is the encoder's share when the model has
  an `encoder`/`transformer` module), and the weight files' size on disk;
* speed-up: the first model's median latency divided by this model's, per case and backend (>1 means faster);
* exported folders (`prunecli export`, float32 or INT8 `model.onnx`) are timed as they are, in onnxruntime only
  (no PyTorch figures, no FLOPs); their size is the ONNX file's, and `precision` says fp32 or int8.

The result is plain JSON-able data (schema in `benchmark_models`' docstring).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunecli.errors import CheckpointError, UserError
from prunecli.inference.facts import count_flops, exported_facts, file_facts, parameters, precision
from prunecli.inference.timing import Timing, load_average, summarize, time_round, usable_cpus, versions

if TYPE_CHECKING:  # pragma: no cover
    from prunecli.config import DataConfig

logger = logging.getLogger("prunecli")

SCHEMA = "prunecli.benchmark/1"
BACKENDS = ("pytorch", "onnxruntime")
DEFAULT_BATCH_SIZES = (1, 32)
DEFAULT_SEQUENCE_LENGTH = 128
DEFAULT_DATA_EXAMPLES = 256


@dataclasses.dataclass
class _Case:
    name: str
    batch_size: int
    kind: str  # "random" | "data"
    sequence_length: int | None = None


@dataclasses.dataclass
class _Model:
    given: str
    model: Any
    facts: dict[str, Any]
    names: list[str]  # model inputs
    batches: dict[str, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)  # case -> numpy feeds
    session: Any = None
    onnx: dict[str, Any] | None = None
    config: Any = None  # the model's config (a checkpoint's or an exported folder's)
    exported: Any = None  # an exported folder (`prunecli.inference.runtime.ExportedModel`): onnxruntime only


def parse_batch_sizes(text: str | Sequence[int]) -> list[int]:
    """`"1,32"` -> [1, 32]; a UserError for anything but positive integers."""
    items = text.split(",") if isinstance(text, str) else list(text)
    sizes = []
    for item in items:
        try:
            value = int(str(item).strip())
        except ValueError:
            value = 0
        if value < 1 or str(item).strip() != str(value):
            raise UserError(f"bad batch size list {text!r}: {str(item).strip()!r} is not a positive integer.",
                            hint="pass positive integers separated by commas, e.g. --batch_sizes 1,32")
        if value not in sizes:
            sizes.append(value)
    if not sizes:
        raise UserError("no batch sizes given.", hint="e.g. --batch_sizes 1,32")
    return sizes


_GENERIC_NAMES = frozenset({"model", "models", "checkpoint", "final", "best", "output", "out"})


def _label(path: str, taken: set[str]) -> str:
    """A short name for a model: its folder's name (with its parent's when the name says little, e.g. `model`),
    with more parents added until it is unique."""
    parts = Path(path.rstrip("/")).parts or (path,)
    start = 2 if len(parts) > 1 and parts[-1].lower() in _GENERIC_NAMES else 1
    for depth in range(start, len(parts) + 1):
        label = "/".join(parts[-depth:])
        if label not in taken:
            return label
    n = 2
    while f"{path}#{n}" in taken:
        n += 1
    return f"{path}#{n}"


# ---- inputs ---------------------------------------------------------------------------------------------

def _random_inputs(config, names: Sequence[str], batch_size: int, sequence_length: int, seed: int):
    """Random token ids of the vocabulary, full attention masks, zero token types: int64 numpy feeds."""
    import numpy as np

    vocab = int(getattr(config, "vocab_size", 0) or 100)
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, size=(batch_size, sequence_length), dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    return {n: feeds[n] for n in names}


def _check_length(entry: _Model, sequence_length: int) -> None:
    from prunecli.inference.onnx import max_positions

    positions = max_positions(entry.config)
    if positions is not None and sequence_length > positions:
        raise UserError(f"{entry.given} takes at most {positions} tokens; --sequence_length is {sequence_length}.",
                        hint=f"pass --sequence_length {positions} or less.")


def _load_tokenizer(entry: _Model):
    from transformers import AutoTokenizer

    from prunecli.models.loading import clamp_to_positions, quiet_transformers

    if entry.exported is not None:
        if entry.exported.tokenizer is None:
            raise CheckpointError(f"{entry.given} has no tokenizer, which real lengths need.",
                                  hint="leave out the data options (--task_name, --data_dir, --validation_file).")
        return entry.exported.tokenizer
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(entry.facts["resolved_path"])
    except Exception as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise CheckpointError(f"{entry.given} has no usable tokenizer, which real lengths need: {reason}",
                              hint="save the tokenizer with the model, or leave out the data options "
                              "(--task_name, --data_dir, --validation_file).") from None
    clamp_to_positions(tokenizer, entry.config)
    return tokenizer


def _data_rows(entry: _Model, data, cfg: DataConfig) -> tuple[list[dict[str, list[int]]], int, str]:
    """The first examples of the evaluation split, tokenized with this model's tokenizer (cached)."""
    from prunecli.data.tokenize import tokenize_task_data

    tokenizer = _load_tokenizer(entry)
    label2id = None if data.is_regression else {label: i for i, label in enumerate(data.label_list or [])}
    tokenized = tokenize_task_data(data, tokenizer, cfg, label2id)
    split = next(iter(tokenized.eval_splits))
    ds = tokenized.eval_splits[split]
    columns = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in ds.column_names]
    table = ds.select_columns(columns)[:]
    rows = [{c: table[c][i] for c in columns} for i in range(len(ds))]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return rows, int(pad_id), split


def _data_batches(rows: list[dict], names: Sequence[str], batch_size: int, pad_id: int) -> list[dict[str, Any]]:
    from prunecli.inference.onnx import pad_batch

    chunks = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    if len(chunks) > 1 and len(chunks[-1]) < batch_size:
        chunks.pop()  # latency is per batch: keep batches of one size
    return [pad_batch(chunk, names, pad_id) for chunk in chunks]


def _choose_backends(backends: Sequence[str] | str | None, notes: list[str]) -> list[str]:
    from prunecli.inference.onnx import ONNX_HINT, onnxruntime_available

    if backends is None or backends == "both" or backends == ["both"]:
        if onnxruntime_available():
            return list(BACKENDS)
        notes.append(f"onnxruntime is not installed: ONNX Runtime columns skipped ({ONNX_HINT}).")
        return ["pytorch"]
    chosen = [backends] if isinstance(backends, str) else list(backends)
    for name in chosen:
        if name not in BACKENDS:
            raise UserError(f"unknown backend {name!r}.", hint="use pytorch, onnxruntime or both.")
    if "onnxruntime" in chosen and not onnxruntime_available():
        raise UserError("--backend onnxruntime needs onnxruntime, which is not installed.", hint=ONNX_HINT)
    return [b for b in BACKENDS if b in chosen]


def benchmark_models(
    models: Sequence[str | Path],
    *,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    sequence_length: int = DEFAULT_SEQUENCE_LENGTH,
    backends: Sequence[str] | str | None = None,
    data: DataConfig | None = None,
    data_examples: int = DEFAULT_DATA_EXAMPLES,
    threads: int | None = None,
    timing: Timing | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure `models` side by side (see the module docstring); the first model is the speed-up baseline.

    `backends`: "pytorch", "onnxruntime", a list of them, or None/"both" (both when onnxruntime is installed).
    `data`: a DataConfig naming a dataset (task_name / data_dir / validation_file; max_length truncates) for the
    real-length cases, or None. `threads`: torch's and onnxruntime's intra-op threads (default: torch's current
    count; torch's setting is restored afterwards). `progress`: called with a line before each step.

    Returns {"schema", "models": [{"path", "label", "architecture", "model_type", "params", "nonzero_params",
    "flops_per_example", "encoder_flops_per_example", "flops_attention", "flops_sequence_length", "file_bytes",
    "file_mb", "weight_files", "new_head", "task", "format": "checkpoint" | "onnx", "precision": "fp32" | "int8" | ...,
    "onnx": {"exporter", "opset", "max_abs_diff", "seconds"} | None,
    "data": {"split", "examples", "mean_length", "max_length"} | None, "cases": {case: {backend: {"median_ms",
    "p90_ms", "mean_ms", "min_ms", "examples_per_s", "runs", "examples", "total_s", "capped", "rounds",
    "speedup"}}}}],
    "cases": {case: {"batch_size", "inputs": "random" | "data", "sequence_length"}}, "backends", "settings",
    "machine", "notes"}.
    """
    import torch

    if not models:
        raise UserError("no models to benchmark.", hint="pass one or more model folders: prunecli benchmark A B")
    sizes = parse_batch_sizes(batch_sizes)
    if sequence_length < 1:
        raise UserError(f"--sequence_length must be positive (got {sequence_length}).")
    if data_examples < 1:
        raise UserError(f"the number of data examples must be positive (got {data_examples}).")
    if threads is not None and threads < 1:
        raise UserError(f"--threads must be at least 1 (got {threads}).")
    timing = timing or Timing()
    timing.check()
    say = progress or (lambda message: None)
    notes: list[str] = []
    chosen = _choose_backends(backends, notes)
    task = _load_data(data, data_examples) if data is not None else None

    previous_threads = torch.get_num_threads()
    threads = threads or previous_threads
    load_before = load_average()
    torch.set_num_threads(threads)
    try:
        entries = _load_models(models, sequence_length, say, threads)
        if all(e.exported is not None for e in entries) and "onnxruntime" not in chosen:
            raise UserError(f"{entries[0].given} is an exported ONNX folder, which only onnxruntime runs.",
                            hint="use --backend onnxruntime or both (onnxruntime installed).")
        cases = [_Case(f"b{b} s{sequence_length}", b, "random", sequence_length) for b in sizes]
        for entry in entries:
            for case in cases:
                feeds = _random_inputs(entry.config, entry.names, case.batch_size, sequence_length,
                                       seed=case.batch_size)
                entry.batches[case.name] = [feeds]
        if task is not None:
            data_cfg, task_data = task
            cases += [_Case(f"b{b} data", b, "data") for b in sizes]
            for entry in entries:
                say(f"tokenizing {task_data.source} for {entry.facts['label']}")
                rows, pad_id, split = _data_rows(entry, task_data, data_cfg)
                lengths = [len(r["input_ids"]) for r in rows]
                if len(rows) < max(sizes):
                    notes.append(f"{entry.facts['label']}: {len(rows)} evaluation examples, fewer than a batch of "
                                 f"{max(sizes)}: its data cases time smaller batches.")
                entry.facts["data"] = {"split": split, "examples": len(rows), "mean_length": statistics.fmean(lengths),
                                       "max_length": max(lengths)}
                for b in sizes:
                    entry.batches[f"b{b} data"] = _data_batches(rows, entry.names, b, pad_id)
        with tempfile.TemporaryDirectory(prefix="prunecli-benchmark-") as tmp:
            if "onnxruntime" in chosen:
                for i, entry in enumerate(entries):
                    if entry.exported is None:  # an exported folder has its session already
                        _prepare_onnx(entry, Path(tmp) / f"model{i}.onnx", sequence_length, threads, say)
        for case in cases:
            for backend in chosen:
                say(f"timing {case.name}, {backend}: {', '.join(e.facts['label'] for e in entries)} "
                    f"in turns ({timing.rounds} rounds)")
                timed = [e for e in entries if backend == "onnxruntime" or e.exported is None]  # ONNX files: ORT only
                raw: list[list[dict[str, Any]]] = [[] for _ in timed]
                for index in range(timing.rounds):
                    for entry, taken in zip(timed, raw, strict=True):
                        taken.append(_measure(entry, case, backend, timing, index))
                for entry, taken in zip(timed, raw, strict=True):
                    entry.facts["cases"].setdefault(case.name, {})[backend] = summarize(taken)
    finally:
        torch.set_num_threads(previous_threads)
    _add_speedups(entries, cases, chosen)
    if "pytorch" in chosen and any(e.exported is not None for e in entries):
        notes.append("exported ONNX folders run only in onnxruntime: their PyTorch cells are empty.")
    if any(e.facts.get("new_head") for e in entries):
        notes.append("some models had no classifier head; a random one was added (fine for timing, not for "
                     "predictions).")
    if any(r.get("capped") for e in entries for c in e.facts["cases"].values() for r in c.values()):
        notes.append(f"some cases hit the cap of {timing.max_time:g} s or {timing.max_runs} runs before "
                     f"{timing.min_runs} runs and {timing.min_time:g} s: their figures rest on fewer runs.")
    models_out = [{k: v for k, v in e.facts.items() if k not in ("resolved_path", "missing_keys")} for e in entries]
    return {
        "schema": SCHEMA,
        "models": models_out,
        "cases": {c.name: {"batch_size": c.batch_size, "inputs": c.kind, "sequence_length": c.sequence_length}
                  for c in cases},
        "backends": chosen,
        "settings": {
            "batch_sizes": sizes, "sequence_length": sequence_length, "warmup": timing.warmup,
            "min_runs": timing.min_runs, "min_time_s": timing.min_time, "max_time_s": timing.max_time,
            "max_runs": timing.max_runs, "rounds": timing.rounds, "threads": threads,
            "data": None if task is None else {
                "source": task[1].source, "task_name": task[1].task_name, "examples": data_examples,
                "max_length": task[0].max_length,
            },
        },
        "machine": {
            "cpu_count": os.cpu_count(), "usable_cpus": usable_cpus(), "torch_threads": threads,
            "torch_interop_threads": torch.get_num_interop_threads(),
            "ort_intra_op_threads": threads if "onnxruntime" in chosen else None,
            "ort_disabled_optimizers": _disabled_optimizers() if "onnxruntime" in chosen else None,
            "load_average_before": load_before, "load_average_after": load_average(),
            "platform": platform.platform(), "machine": platform.machine(), "versions": versions(),
        },
        "notes": notes,
    }


def _disabled_optimizers() -> list[str]:
    from prunecli.inference.onnx import DISABLED_OPTIMIZERS

    return list(DISABLED_OPTIMIZERS)


def _load_data(cfg: DataConfig, examples: int):
    from prunecli.data.sources import load_task_data

    limit = examples if cfg.max_eval_samples is None else min(examples, cfg.max_eval_samples)
    cfg = dataclasses.replace(cfg, max_eval_samples=limit, pad_to_max_length=False)
    return cfg, load_task_data(cfg, need_train=False)


def _load_models(models: Sequence[str | Path], sequence_length: int, say, threads: int | None = None
                 ) -> list[_Model]:
    from prunecli.inference.onnx import model_input_names
    from prunecli.inference.runtime import is_exported
    from prunecli.models.loading import load_classifier

    entries: list[_Model] = []
    taken: set[str] = set()
    for given in map(str, models):
        say(f"loading {given}")
        label = _label(given, taken)
        taken.add(label)
        if is_exported(given):
            entry = _load_exported(given, sequence_length, threads)
            entry.facts["label"] = label
            _check_length(entry, sequence_length)
            entries.append(entry)
            continue
        model, facts = load_classifier(given)
        names = model_input_names(model)
        entry = _Model(given, model, facts, names, config=model.config)
        _check_length(entry, sequence_length)
        params, nonzero = parameters(model)
        facts.update({"label": label, "format": "checkpoint", "precision": precision(model), "params": params,
                      "nonzero_params": nonzero, **count_flops(model, names, sequence_length),
                      **file_facts(facts["resolved_path"]), "onnx": None, "data": None, "cases": {}})
        entries.append(entry)
    return entries


def _load_exported(given: str, sequence_length: int, threads: int | None) -> _Model:
    """An exported folder: its onnxruntime session and the facts export.json records (no FLOPs: no torch model)."""
    from prunecli.inference.runtime import load_exported

    exported = load_exported(given, threads=threads)
    facts = {**exported_facts(exported, given, sequence_length), "onnx": None, "data": None, "cases": {}}
    return _Model(given, None, facts, exported.input_names, session=exported.session, config=exported.config,
                  exported=exported)


def _prepare_onnx(entry: _Model, path: Path, sequence_length: int, threads: int, say) -> None:
    from prunecli.inference.onnx import export_onnx, make_session, onnx_metadata
    from prunecli.models.folders import megabytes

    say(f"exporting {entry.facts['label']} to ONNX")
    start = time.perf_counter()
    export_onnx(entry.model, path, max_length=sequence_length)
    meta = onnx_metadata(path)
    entry.session = make_session(path, threads)
    entry.onnx = {"exporter": meta["exporter"], "opset": meta["opset"], "attn_implementation":
                  meta["attn_implementation"], "seconds": round(time.perf_counter() - start, 2),
                  "file_mb": megabytes(path.stat().st_size), "max_abs_diff": 0.0}
    entry.facts["onnx"] = entry.onnx


def _measure(entry: _Model, case: _Case, backend: str, timing: Timing, index: int) -> dict[str, Any]:
    """Round `index` of `timing.rounds` of one model on one case and backend: its raw times."""
    import numpy as np
    import torch

    from prunecli.tasks import output_logits

    every = entry.batches[case.name]
    batches = every[index::timing.rounds] or every  # round i times every rounds-th batch: all of them, over rounds
    sizes = [int(b["input_ids"].shape[0]) for b in batches]
    share = timing.round(index)
    if backend == "pytorch":
        tensors = [{k: torch.from_numpy(v) for k, v in b.items()} for b in batches]
        model = entry.model
        with torch.inference_mode():
            return time_round(lambda feeds: model(**feeds), tensors, share, sizes, share.min_runs)
    session = entry.session
    result = time_round(lambda feeds: session.run(["logits"], feeds), batches, share, sizes, share.min_runs)
    if index == 0 and entry.model is not None:  # agreement with PyTorch on this case's first batch (not timed)
        with torch.inference_mode():
            ref = output_logits(entry.model(**{k: torch.from_numpy(v) for k, v in every[0].items()})).float().numpy()
        got = session.run(["logits"], every[0])[0]
        entry.onnx["max_abs_diff"] = max(entry.onnx["max_abs_diff"], float(np.max(np.abs(got - ref))))
    return result


def _add_speedups(entries: list[_Model], cases: list[_Case], backends: list[str]) -> None:
    first = entries[0].facts["cases"]
    for entry in entries:
        for case in cases:
            for backend in backends:
                this = entry.facts["cases"].get(case.name, {}).get(backend)
                if this is None:  # an exported folder has no PyTorch figures
                    continue
                base = first.get(case.name, {}).get(backend)
                this["speedup"] = base["median_ms"] / this["median_ms"] if base and this["median_ms"] > 0 else None


def main(argv: Sequence[str] | None = None) -> None:  # pragma: no cover - `python -m prunecli.inference.benchmark`
    import json

    args = list(sys.argv[1:] if argv is None else argv)
    sys.stdout.write(json.dumps(benchmark_models(args, progress=lambda m: print(m, file=sys.stderr)), indent=2) + "\n")


if __name__ == "__main__":  # pragma: no cover
    main()
