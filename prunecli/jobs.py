"""The `finetune` and `evaluate` jobs, and the helpers that `prune` reuses.

A job = configuration in, results out: data -> model -> training loop -> checkpoint -> summary.
Everything a user can get wrong surfaces as a `UserError` subclass (the CLI prints it and exits 2).
Imported only inside CLI commands, so torch and transformers load only when a job runs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunecli import checkpoint as ckpt
from prunecli.config import DataConfig, RunConfig
from prunecli.data import TaskData, load_task_data, tokenize_task_data
from prunecli.demo_data import resolve_model_path
from prunecli.errors import CheckpointError, UserError

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

logger = logging.getLogger("prunecli")

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR,
           "critical": logging.CRITICAL, "passive": logging.INFO}
_DATA_SOURCE_FIELDS = ("task_name", "data_dir", "validation_file")


# ---- set-up helpers -----------------------------------------------------------------------------------


def setup_logging(level: str = "info", is_main_process: bool = True) -> None:
    """prunecli logs at `level` to stderr (errors only on non-main processes); libraries stay at warning.

    transformers' and datasets' own progress bars are hidden unless `level` is debug: the training loop
    has its own.
    """
    key = (level or "info").lower()
    if key not in _LEVELS:
        raise UserError(f"--log_level {level!r} is not one of debug, info, warning, error.")
    from rich.console import Console
    from rich.logging import RichHandler

    handler = RichHandler(console=Console(stderr=True), show_time=False, show_path=False, markup=False)
    handler.setFormatter(logging.Formatter("%(message)s"))
    own = logging.getLogger("prunecli")
    own.handlers = [handler]
    own.setLevel(_LEVELS[key] if is_main_process else logging.ERROR)
    own.propagate = False

    import datasets
    import transformers

    library_level = logging.DEBUG if key == "debug" else logging.WARNING if is_main_process else logging.ERROR
    transformers.utils.logging.set_verbosity(library_level)
    datasets.utils.logging.set_verbosity(library_level)
    if key != "debug":
        transformers.utils.logging.disable_progress_bar()
        datasets.disable_progress_bars()


def check_output_dir(cfg: RunConfig) -> Path | None:
    """The absolute output folder, after refusing a non-empty one (unless --overwrite_output_dir or resuming)."""
    tc = cfg.train
    return ckpt.check_output_dir(tc.output_dir, tc.overwrite_output_dir, tc.resume_from_checkpoint)


def _is_default_labels(label2id: dict[str, int] | None) -> bool:
    return not label2id or all(str(k).startswith("LABEL_") for k in label2id)


def _max_positions(config) -> int | None:
    positions = getattr(config, "max_position_embeddings", None)
    if not isinstance(positions, int) or positions <= 0:
        return None
    model_type = getattr(config, "model_type", "") or ""
    offset = 2 if "roberta" in model_type or model_type in ("camembert", "longformer") else 0
    return positions - offset


def load_model_and_tokenizer(path: str, data: TaskData, cfg: RunConfig, *, training: bool = True):
    """Load a sequence classifier and its tokenizer, with the data's label maps written into the config.

    Training: the model's own label ids are kept when its labels are the data's labels (a fine-tuned
    model being pruned), else the data's sorted labels define new ids. Evaluation: the model's labels
    rule, and `tokenize_task_data` rejects data labels the model does not know. Weights load from
    safetensors when present and otherwise with `weights_only=True`; model code from the checkpoint runs
    only with --trust_remote_code. Returns (model, tokenizer).
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    tc = cfg.train
    resolved = resolve_model_path(path)
    _check_model_folder(resolved, path)
    trust = bool(tc.trust_remote_code)
    try:
        config = AutoConfig.from_pretrained(resolved, trust_remote_code=trust)
    except Exception as err:
        raise _load_error(path, "its config", err) from None

    model_labels = None if _is_default_labels(config.label2id) else dict(config.label2id)
    if data.is_regression:
        if not training and config.num_labels != 1:
            raise CheckpointError(f"{path} has {config.num_labels} outputs; this data is a regression task (1 output).",
                                  hint="evaluate it on classification data, or fine-tune a regression model.")
        config.num_labels = 1
        config.problem_type = "regression"
    else:
        labels = list(data.label_list or [])
        if model_labels is not None and (not training or set(model_labels) == set(labels)):
            label2id = {str(k): int(v) for k, v in model_labels.items()}
        elif not training and config.num_labels != len(labels):
            raise CheckpointError(f"{path} has {config.num_labels} outputs and no label names; the data has "
                                  f"{len(labels)} labels ({', '.join(labels)}).",
                                  hint="evaluate it on the data it was fine-tuned on.")
        else:
            if model_labels is not None:
                logger.warning("the model was trained with labels %s, the data has %s: using the data's labels.",
                               sorted(model_labels), labels)
            label2id = {label: i for i, label in enumerate(labels)}
        config.num_labels = len(label2id)
        config.label2id = label2id
        config.id2label = {i: label for label, i in label2id.items()}
        config.problem_type = "single_label_classification"
    if training and data.task_name:
        config.finetuning_task = data.task_name

    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            resolved, config=config, trust_remote_code=trust, ignore_mismatched_sizes=tc.ignore_mismatched_sizes,
            weights_only=True,
        )
    except RuntimeError as err:
        if "ignore_mismatched_sizes" in str(err):
            raise CheckpointError(f"{path}: its classifier head has another number of outputs than the "
                                  f"{config.num_labels} this data needs.",
                                  hint="pass --ignore_mismatched_sizes to start a new head.") from None
        raise _load_error(path, "its weights", err) from None
    except Exception as err:
        raise _load_error(path, "its weights", err) from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved, use_fast=not cfg.data.use_slow_tokenizer,
                                                  trust_remote_code=trust)
    except Exception as err:
        raise _load_error(path, "its tokenizer", err) from None

    positions = _max_positions(model.config)
    if positions and (tokenizer.model_max_length is None or tokenizer.model_max_length > positions):
        tokenizer.model_max_length = positions  # never feed more tokens than the model has positions
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:  # GPT-style tokenizers
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _check_model_folder(resolved: str, given: str) -> None:
    path = Path(resolved)
    if path.is_dir():
        if not (path / "config.json").is_file():
            hint = "pass a folder with config.json and model weights"
            if ckpt.is_resumable_checkpoint(path):
                hint = "step_N / epoch_N folders are resumable states; use the run's output folder"
            raise CheckpointError(f"{given} is not a model folder (no config.json).", hint=hint + ".")
    elif given.startswith((".", "/", "~")) or given.count("/") > 1 or path.exists():
        # Hub ids look like `name` or `org/name`; anything else that is not a folder is a missing folder.
        raise CheckpointError(f"model folder {given} does not exist.")


def _load_error(path: str, what: str, err: Exception) -> CheckpointError:
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    local = Path(resolve_model_path(path)).is_dir()
    hint = "the files may be truncated or corrupted; re-save or re-download them." if local else \
        "it is not a local folder and the Hugging Face hub is not reachable: pass a model folder."
    return CheckpointError(f"cannot load {what} from {path}: {reason[:300]}", hint=hint)


# ---- rendering ----------------------------------------------------------------------------------------


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if value != value else f"{value:.4f}"
    return str(value)


def render_summary(results: dict[str, Any], title: str = "Training summary", console: Console | None = None,
                   extra: dict[str, Any] | None = None) -> None:
    """A rich table of per-epoch metrics, then throughput, time and `extra` rows (e.g. sparsity, output folder)."""
    from rich.table import Table

    console = console or _console()
    epochs = results.get("epochs", [])
    names = list(results.get("final_metrics", {}))
    table = Table(title=title, title_justify="left")
    table.add_column("epoch", justify="right")
    table.add_column("step", justify="right")
    for name in names:
        table.add_column(name, justify="right")
    for entry in epochs:
        table.add_row(str(entry["epoch"]), str(entry["step"]), *(_fmt(entry["metrics"].get(n, "")) for n in names))
    table.add_row("final", str(results.get("completed_steps", "")),
                  *(f"[bold]{_fmt(results['final_metrics'][n])}[/bold]" for n in names), end_section=True)
    console.print(table)
    facts = Table(show_header=False, box=None, pad_edge=False)
    facts.add_column(style="dim")
    facts.add_column()
    facts.add_row("train throughput", f"{results.get('train_examples_per_second', 0.0):.1f} examples/s")
    train_s, wall_s = results.get("train_seconds", 0.0), results.get("wall_seconds", 0.0)
    facts.add_row("train time", f"{train_s:.1f} s (wall {wall_s:.1f} s)")
    facts.add_row("processes", str(results.get("num_processes", 1)))
    for key, value in (extra or {}).items():
        facts.add_row(key, _fmt(value))
    console.print(facts)


def render_metrics(result: dict[str, Any], console: Console | None = None) -> None:
    """The `evaluate` table: one row per metric."""
    from rich.table import Table

    console = console or _console()
    table = Table(title=f"{result.get('task_name') or 'evaluation'}: {result['checkpoint']}", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in result["metrics"].items():
        table.add_row(name, _fmt(value))
    console.print(table)
    sizes = ", ".join(f"{k} {v}" for k, v in result.get("num_examples", {}).items())
    console.print(f"[dim]{result.get('data', '')}; examples: {sizes}[/dim]", highlight=False)


# ---- jobs ---------------------------------------------------------------------------------------------


def prepare_training(cfg: RunConfig, *, check_output: bool = True):
    """Everything before the Trainer, shared by `finetune` and `prune`: logging, output-folder check, data,
    model (with the data's labels), tokenizer and cached tokenization. Returns (model, tokenizer, data, tokenized).

    `check_output=False` skips the non-empty output folder check (e.g. `prune --dry_run` writes nothing).
    """
    from transformers import set_seed

    from prunecli.training import partial_state

    tc = cfg.train
    state = partial_state()
    setup_logging(tc.log_level, state.is_main_process)
    if not tc.model_name_or_path:
        raise UserError("--model_name_or_path is required.")
    if check_output:
        output_dir = check_output_dir(cfg)
        if output_dir is None:
            logger.warning("no --output_dir: the trained model will not be saved.")
    with state.main_process_first():
        data = load_task_data(cfg.data, need_train=True, seed=tc.seed)
    logger.info("data: %s", data.source)
    set_seed(tc.seed)  # a new classifier head's initialisation
    model, tokenizer = load_model_and_tokenizer(tc.model_name_or_path, data, cfg, training=True)
    with state.main_process_first():
        tokenized = tokenize_task_data(data, tokenizer, cfg.data, None if data.is_regression else model.config.label2id)
    return model, tokenizer, data, tokenized


def finetune(cfg: RunConfig) -> dict[str, Any]:
    """Train a dense classifier and save it to --output_dir. Returns the Trainer's results (+ output_dir)."""
    from prunecli.training import Trainer

    model, tokenizer, data, tokenized = prepare_training(cfg)
    beta2 = 0.999 if cfg.train.adam_beta2 is None else cfg.train.adam_beta2
    trainer = Trainer(cfg, model, tokenizer, tokenized, adam_beta2=beta2)
    results = trainer.fit()
    output_dir = trainer.save_final()
    results["output_dir"] = str(output_dir) if output_dir else None
    if trainer.is_main_process:
        extra = {"model": cfg.train.model_name_or_path, "data": data.source}
        if output_dir:
            extra["saved to"] = str(output_dir)
        render_summary(results, title="Fine-tuning summary", extra=extra)
    return results


def _defaults_from_checkpoint(checkpoint: str, data_cfg: DataConfig) -> DataConfig:
    """With no data option given, evaluate on the data recorded in the checkpoint's run_args.json."""
    if any(getattr(data_cfg, f) for f in (*_DATA_SOURCE_FIELDS, "train_file")):
        return data_cfg
    run_args = Path(resolve_model_path(checkpoint)) / ckpt.RUN_ARGS
    try:
        recorded = json.loads(run_args.read_text(encoding="utf-8")).get("data", {})
    except (OSError, json.JSONDecodeError, AttributeError):
        return data_cfg
    if not any(recorded.get(f) for f in _DATA_SOURCE_FIELDS):
        return data_cfg
    defaults = DataConfig()
    merged = DataConfig(**vars(data_cfg))
    for key in (*_DATA_SOURCE_FIELDS, "max_length", "pad_to_max_length"):
        if key in recorded and getattr(data_cfg, key) == getattr(defaults, key):
            setattr(merged, key, recorded[key])
    logger.info("no data options: using those recorded in %s", run_args)
    return merged


def evaluate(checkpoint: str, cfg: RunConfig, as_json: bool = False) -> dict[str, Any]:
    """Score a checkpoint on the evaluation split(s); print a rich table or, with as_json, JSON on stdout.

    Returns {"checkpoint", "task_name", "data", "num_examples", "metrics"}.
    """
    from transformers import set_seed

    from prunecli.training import Trainer, partial_state

    state = partial_state()
    setup_logging("warning" if as_json and cfg.train.log_level == "info" else cfg.train.log_level,
                  state.is_main_process)
    cfg.data = _defaults_from_checkpoint(checkpoint, cfg.data)
    with state.main_process_first():
        data = load_task_data(cfg.data, need_train=False, seed=cfg.train.seed)
    set_seed(cfg.train.seed)
    model, tokenizer = load_model_and_tokenizer(checkpoint, data, cfg, training=False)
    with state.main_process_first():
        tokenized = tokenize_task_data(data, tokenizer, cfg.data, None if data.is_regression else model.config.label2id)
    # Evaluation writes nothing: no output folder, trackers or checkpoints, whatever the config says.
    eval_train = dataclasses.replace(cfg.train, output_dir=None, report_to=None, checkpointing_steps=None)
    trainer = Trainer(RunConfig(data=cfg.data, train=eval_train), model, tokenizer, tokenized)
    metrics = trainer.evaluate()
    result = {
        "checkpoint": checkpoint, "task_name": data.task_name, "data": data.source,
        "num_examples": {name: len(ds) for name, ds in data.eval_splits.items()}, "metrics": metrics,
    }
    if trainer.is_main_process:
        if as_json:
            sys.stdout.write(ckpt.json_text(result))
            sys.stdout.flush()
        else:
            render_metrics(result)
    return result
