"""The `prunecli` command line: parses options, calls the library, renders results.

No training or pruning logic lives here. torch and transformers are imported only inside
commands, so `prunecli --help` is instant. Every option accepts the reference script's
underscore spelling (`--model_name_or_path`) and the dashed one (`--model-name-or-path`).
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Annotated, Any

import typer

from prunecli.errors import UserError

app = typer.Typer(
    name="prunecli",
    help="Prune Hugging Face transformers classifiers: finetune, prune, evaluate, inspect.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_STATE = {"debug": False}


def _opt(name: str, help: str, panel: str, *aliases: str, **kw: Any) -> Any:
    """An option with both spellings: `--name_with_underscores` and `--name-with-dashes`."""
    spellings = [f"--{name}"]
    dashed = f"--{name.replace('_', '-')}"
    if dashed not in spellings:
        spellings.append(dashed)
    spellings.extend(aliases)
    return typer.Option(*spellings, help=help, rich_help_panel=panel, **kw)


DATA, TRAIN, PRUNE, DISTILL, OUT = "Data", "Training", "Pruning", "Distillation", "Output and checkpoints"

# ---- data options -------------------------------------------------------------------------------------
TaskName = Annotated[
    str | None,
    _opt("task_name", "GLUE task (cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli) or `rotten_tomatoes` "
         "(embedded demo data).", DATA),
]
DataDir = Annotated[
    str | None, _opt("data_dir", "A local GLUE task folder in the classic TSV layout (train.tsv, dev.tsv).", DATA)
]
TrainFile = Annotated[str | None, _opt("train_file", "Training data: csv, json, jsonl or tsv.", DATA)]
ValidationFile = Annotated[str | None, _opt("validation_file", "Validation data: csv, json, jsonl or tsv.", DATA)]
MaxLength = Annotated[int, _opt("max_length", "Maximum tokens per example (longer ones are truncated).", DATA)]
PadToMax = Annotated[
    bool, _opt("pad_to_max_length", "Pad every example to --max_length (default: dynamic padding).", DATA)
]
MaxTrainSamples = Annotated[
    int | None, _opt("max_train_samples", "Use only this many training examples (seeded subset).", DATA)
]
MaxEvalSamples = Annotated[int | None, _opt("max_eval_samples", "Use only this many evaluation examples.", DATA)]
SlowTokenizer = Annotated[bool, _opt("use_slow_tokenizer", "Use the slow (Python) tokenizer.", DATA)]
CacheDir = Annotated[
    str | None, _opt("cache_dir", "Tokenization cache folder (default ~/.cache/prunecli).", DATA)
]

# ---- training options ---------------------------------------------------------------------------------
ModelPath = Annotated[
    str, _opt("model_name_or_path", "Model folder (or hub id when the hub is reachable).", TRAIN)
]
TrainBS = Annotated[int, _opt("per_device_train_batch_size", "Training batch size per process.", TRAIN)]
EvalBS = Annotated[int, _opt("per_device_eval_batch_size", "Evaluation batch size per process.", TRAIN)]
LR = Annotated[float, _opt("learning_rate", "Peak learning rate of AdamW.", TRAIN)]
WD = Annotated[float, _opt("weight_decay", "AdamW weight decay (not on biases and LayerNorm).", TRAIN)]
Epochs = Annotated[int, _opt("num_train_epochs", "Training epochs.", TRAIN, "--num_train_epoch")]
MaxSteps = Annotated[
    int | None, _opt("max_train_steps", "Stop after this many optimizer steps (overrides epochs).", TRAIN)
]
GradAcc = Annotated[
    int, _opt("gradient_accumulation_steps", "Micro-batches accumulated per optimizer step.", TRAIN)
]
LRSched = Annotated[
    str,
    _opt("lr_scheduler_type", "Any transformers scheduler: linear, cosine, cosine_with_restarts, polynomial, "
         "constant, constant_with_warmup, inverse_sqrt, reduce_lr_on_plateau, ...", TRAIN),
]
Warmup = Annotated[int, _opt("num_warmup_steps", "Learning-rate warm-up steps.", TRAIN)]
Beta1 = Annotated[float, _opt("adam_beta1", "AdamW beta1.", TRAIN)]
Beta2 = Annotated[
    float | None, _opt("adam_beta2", "AdamW beta2 (default 0.999 for finetune, 0.9 for prune as in the "
                       "reference example).", TRAIN)
]
AdamEps = Annotated[float, _opt("adam_epsilon", "AdamW epsilon (INC's example used 1e-6).", TRAIN)]
MaxGradNorm = Annotated[float | None, _opt("max_grad_norm", "Clip gradients to this norm.", TRAIN)]
Seed = Annotated[int, _opt("seed", "Random seed (data order, initialisation, dropout).", TRAIN)]
GroupByLength = Annotated[
    bool,
    typer.Option(
        "--group_by_length/--no_group_by_length",
        "--group-by-length/--no-group-by-length",
        help="Batch examples of similar length together (random mega-batches of 50 batches, sorted): "
        "far less padding (about 1.4x faster on GLUE), same examples per epoch; it scored about 1 point "
        "lower on MRPC 2:4 in a 3-seed A/B (BENCHMARKS.md). Default off: plain shuffled batches.",
        rich_help_panel=TRAIN,
    ),
]
MixedPrecision = Annotated[str, _opt("mixed_precision", "no, fp16 or bf16 (where the device supports it).", TRAIN)]
TrustRemote = Annotated[bool, _opt("trust_remote_code", "Allow model code from the checkpoint (off).", TRAIN)]
IgnoreMismatch = Annotated[
    bool, _opt("ignore_mismatched_sizes", "Re-initialise a classifier head of another size.", TRAIN)
]
LogLevel = Annotated[str, _opt("log_level", "debug, info, warning or error.", TRAIN)]

# ---- output options -----------------------------------------------------------------------------------
OutputDir = Annotated[str | None, _opt("output_dir", "Where the checkpoint is written.", OUT)]
Overwrite = Annotated[bool, _opt("overwrite_output_dir", "Allow writing into a non-empty --output_dir.", OUT)]
Resume = Annotated[
    str | None,
    _opt("resume_from_checkpoint", "A checkpoint folder written by --checkpointing_steps, or `latest`.", OUT),
]
Checkpointing = Annotated[
    str | None, _opt("checkpointing_steps", "Save resumable state every N optimizer steps or every `epoch`.", OUT)
]
ReportTo = Annotated[
    str | None, _opt("report_to", "Accelerate trackers to log to: tensorboard, wandb, ..., or all.", OUT)
]
# Accepted for compatibility with the reference script, which also had them; prunecli never pushes.
WithTracking = Annotated[bool, _opt("with_tracking", "Accepted for compatibility; use --report_to.", OUT,
                                    hidden=True)]

# ---- pruning options ----------------------------------------------------------------------------------
RecipePath = Annotated[
    str | None, _opt("recipe", "JSON recipe; command-line pruning options act as its global values.", PRUNE)
]
TargetSparsity = Annotated[
    float | None, _opt("target_sparsity", "Final sparsity of the pruned layers, in [0, 1).", PRUNE)
]
InitialSparsity = Annotated[
    float | None, _opt("initial_sparsity", "Sparsity the first pruning event reaches at once (default 0); the "
                       "schedule then grows it to the target.", PRUNE)
]
Pattern = Annotated[
    str | None,
    _opt("pruning_pattern", "NxM blocks (4x1, 1x1, 2x2), N:M (2:4 keeps 2 of every 4), 1xchannel, channelx1.",
         PRUNE, "--pattern"),
]
PruningType = Annotated[
    str | None,
    _opt("pruning_type", "Score: snip_momentum (default), snip, magnitude, gradient, pattern_lock.", PRUNE),
]
Scope = Annotated[str | None, _opt("pruning_scope", "global (one threshold) or local (per layer).", PRUNE)]
Decay = Annotated[str | None, _opt("sparsity_decay_type", "exp (default), cos, linear or cube.", PRUNE)]
Frequency = Annotated[
    int | None, _opt("pruning_frequency", "Optimizer steps between pruning events (-1: about 40 events).", PRUNE)
]
WarmEpochs = Annotated[float, _opt("sparsity_warm_epochs", "Dense epochs before pruning starts.", PRUNE)]
CoolEpochs = Annotated[float, _opt("cooldown_epochs", "Epochs with fixed masks after pruning ends.", PRUNE)]
CooldownLR = Annotated[
    str, _opt("cooldown_lr_decay", "Learning rate over the cool-down: none (as scheduled), linear or cosine "
              "(falls to 0 at the last step).", PRUNE)
]
LRRewind = Annotated[
    float | None, _opt("lr_rewind_ratio", "Between pruning events the learning rate falls linearly to this share "
                       "of its scheduled value and is rewound at each event (oBERT: 0.1). Default: off.", PRUNE)
]
DoPrune = Annotated[bool, _opt("do_prune", "Accepted and ignored (the reference script needed it).", PRUNE)]
DryRun = Annotated[bool, _opt("dry_run", "Print which layers each group prunes, then exit.", PRUNE)]

# ---- distillation options -----------------------------------------------------------------------------
Teacher = Annotated[
    str | None, _opt("teacher_model_name_or_path", "Teacher model (default: the input model).", DISTILL)
]
DistillWeight = Annotated[
    float, _opt("distill_loss_weight", "Weight of the distillation loss (0: no distillation).", DISTILL)
]
DistillType = Annotated[
    str, _opt("distill_type", "hidden_mse (the reference: MSE of last hidden states) or logits_kl.", DISTILL)
]
DistillTemp = Annotated[float, _opt("distill_temperature", "Softmax temperature for logits_kl.", DISTILL)]
DistillAlpha = Annotated[
    float, _opt("distill_alpha", "logits_kl: share of the KL term; the label loss gets 1 - alpha.", DISTILL)
]
DistillLabel = Annotated[bool, _opt("distill_label_loss", "hidden_mse: also add the label loss.", DISTILL)]
DistillPadding = Annotated[
    bool,
    _opt("distill_padding", "hidden_mse: also match the padded positions, as INC's example did "
         "(the teacher then runs every step: no cache).", DISTILL),
]
DistillHiddenLayers = Annotated[
    str, _opt("distill_hidden_layers", "Hidden states matched: last (the encoder output, INC's example) or all "
              "(every layer; a shallower student maps layers uniformly).", DISTILL)
]
DistillHiddenWeight = Annotated[
    float, _opt("distill_hidden_weight", "logits_kl: add this weight times the hidden-state MSE (0: none).", DISTILL)
]
CacheTeacher = Annotated[
    bool,
    typer.Option(
        "--cache_teacher_outputs/--no_cache_teacher_outputs",
        "--cache-teacher-outputs/--no-cache-teacher-outputs",
        help="Cache teacher outputs across epochs when they fit in memory.",
        rich_help_panel=DISTILL,
    ),
]


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr)


def handles_user_errors(fn):
    """Turn a UserError into a message with a hint and exit code 2 (a traceback only with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            if _STATE["debug"]:
                raise
            from rich.markup import escape

            console = _console(stderr=True)
            console.print(f"[bold red]Error:[/bold red] {escape(err.message)}", highlight=False, soft_wrap=True)
            if err.hint:
                console.print(f"[yellow]Hint:[/yellow] {escape(err.hint)}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=err.exit_code) from None
        except KeyboardInterrupt:
            _console(stderr=True).print("[yellow]Interrupted.[/yellow] Checkpoints already written are intact.")
            raise typer.Exit(code=130) from None

    return wrapper


def _version_callback(value: bool) -> None:
    if value:
        from prunecli import __version__

        typer.echo(f"prunecli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks for errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    _STATE["debug"] = debug or os.environ.get("PRUNECLI_DEBUG") == "1"


def _run_config(options: dict[str, Any]):
    from prunecli.config import split_options

    for ignored in ("do_prune", "with_tracking"):
        options.pop(ignored, None)
    return split_options(options)


@app.command()
@handles_user_errors
def finetune(
    model_name_or_path: ModelPath,
    task_name: TaskName = None,
    data_dir: DataDir = None,
    train_file: TrainFile = None,
    validation_file: ValidationFile = None,
    max_length: MaxLength = 128,
    pad_to_max_length: PadToMax = False,
    max_train_samples: MaxTrainSamples = None,
    max_eval_samples: MaxEvalSamples = None,
    use_slow_tokenizer: SlowTokenizer = False,
    cache_dir: CacheDir = None,
    output_dir: OutputDir = None,
    per_device_train_batch_size: TrainBS = 8,
    per_device_eval_batch_size: EvalBS = 8,
    learning_rate: LR = 5e-5,
    weight_decay: WD = 0.0,
    num_train_epochs: Epochs = 3,
    max_train_steps: MaxSteps = None,
    gradient_accumulation_steps: GradAcc = 1,
    lr_scheduler_type: LRSched = "linear",
    num_warmup_steps: Warmup = 0,
    adam_beta1: Beta1 = 0.9,
    adam_beta2: Beta2 = None,
    adam_epsilon: AdamEps = 1e-8,
    max_grad_norm: MaxGradNorm = None,
    seed: Seed = 42,
    group_by_length: GroupByLength = False,
    mixed_precision: MixedPrecision = "no",
    overwrite_output_dir: Overwrite = False,
    resume_from_checkpoint: Resume = None,
    checkpointing_steps: Checkpointing = None,
    report_to: ReportTo = None,
    with_tracking: WithTracking = False,
    log_level: LogLevel = "info",
    trust_remote_code: TrustRemote = False,
    ignore_mismatched_sizes: IgnoreMismatch = False,
) -> None:
    """Train a dense classifier (GLUE task, a GLUE folder, or your own csv/json/tsv files)."""
    cfg = _run_config(dict(locals()))
    from prunecli import jobs

    jobs.finetune(cfg)


@app.command()
@handles_user_errors
def prune(
    model_name_or_path: ModelPath,
    recipe: RecipePath = None,
    target_sparsity: TargetSparsity = None,
    initial_sparsity: InitialSparsity = None,
    pruning_pattern: Pattern = None,
    pruning_type: PruningType = None,
    pruning_scope: Scope = None,
    sparsity_decay_type: Decay = None,
    pruning_frequency: Frequency = None,
    sparsity_warm_epochs: WarmEpochs = 0.0,
    cooldown_epochs: CoolEpochs = 0.0,
    cooldown_lr_decay: CooldownLR = "none",
    lr_rewind_ratio: LRRewind = None,
    do_prune: DoPrune = False,
    dry_run: DryRun = False,
    teacher_model_name_or_path: Teacher = None,
    distill_loss_weight: DistillWeight = 0.0,
    distill_type: DistillType = "hidden_mse",
    distill_temperature: DistillTemp = 2.0,
    distill_alpha: DistillAlpha = 0.5,
    distill_label_loss: DistillLabel = False,
    distill_padding: DistillPadding = False,
    distill_hidden_layers: DistillHiddenLayers = "last",
    distill_hidden_weight: DistillHiddenWeight = 0.0,
    cache_teacher_outputs: CacheTeacher = True,
    task_name: TaskName = None,
    data_dir: DataDir = None,
    train_file: TrainFile = None,
    validation_file: ValidationFile = None,
    max_length: MaxLength = 128,
    pad_to_max_length: PadToMax = False,
    max_train_samples: MaxTrainSamples = None,
    max_eval_samples: MaxEvalSamples = None,
    use_slow_tokenizer: SlowTokenizer = False,
    cache_dir: CacheDir = None,
    output_dir: OutputDir = None,
    per_device_train_batch_size: TrainBS = 8,
    per_device_eval_batch_size: EvalBS = 8,
    learning_rate: LR = 5e-5,
    weight_decay: WD = 0.0,
    num_train_epochs: Epochs = 3,
    max_train_steps: MaxSteps = None,
    gradient_accumulation_steps: GradAcc = 1,
    lr_scheduler_type: LRSched = "linear",
    num_warmup_steps: Warmup = 0,
    adam_beta1: Beta1 = 0.9,
    adam_beta2: Beta2 = None,
    adam_epsilon: AdamEps = 1e-8,
    max_grad_norm: MaxGradNorm = None,
    seed: Seed = 42,
    group_by_length: GroupByLength = False,
    mixed_precision: MixedPrecision = "no",
    overwrite_output_dir: Overwrite = False,
    resume_from_checkpoint: Resume = None,
    checkpointing_steps: Checkpointing = None,
    report_to: ReportTo = None,
    with_tracking: WithTracking = False,
    log_level: LogLevel = "info",
    trust_remote_code: TrustRemote = False,
    ignore_mismatched_sizes: IgnoreMismatch = False,
) -> None:
    """Train a sparse model from a dense fine-tuned one (snip-momentum, NxM / N:M / channel, distillation)."""
    cfg = _run_config(dict(locals()))
    from prunecli import prune_job

    prune_job.run(cfg)


@app.command()
@handles_user_errors
def evaluate(
    checkpoint: Annotated[str, typer.Argument(help="A checkpoint folder written by prunecli or any HF model.")],
    task_name: TaskName = None,
    data_dir: DataDir = None,
    validation_file: ValidationFile = None,
    max_length: MaxLength = 128,
    pad_to_max_length: PadToMax = False,
    max_eval_samples: MaxEvalSamples = None,
    use_slow_tokenizer: SlowTokenizer = False,
    cache_dir: CacheDir = None,
    per_device_eval_batch_size: EvalBS = 32,
    seed: Seed = 42,
    trust_remote_code: TrustRemote = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
    train_file: Annotated[
        str | None, _opt("train_file", "Accepted and ignored, so finetune's data options can be reused.", DATA,
                         hidden=True)
    ] = None,
) -> None:
    """Score a checkpoint with the GLUE metric of its task."""
    options = dict(locals())
    checkpoint = options.pop("checkpoint")
    as_json = options.pop("as_json")
    options.pop("train_file")
    cfg = _run_config(options)
    from prunecli import jobs

    jobs.evaluate(checkpoint, cfg, as_json=as_json)


@app.command()
@handles_user_errors
def inspect(
    path: Annotated[str, typer.Argument(help="Checkpoint folder, .safetensors file, sharded folder or .bin file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON (stable schema).")] = False,
    filter: Annotated[str | None, typer.Option("--filter", help="Only layers whose name matches this regex.")] = None,
    sort: Annotated[str, typer.Option("--sort", help="Order layers by `name` or `sparsity`.")] = "name",
    plot: Annotated[str | None, typer.Option("--plot", help="Draw per-layer sparsity to this PNG file.")] = None,
    compare: Annotated[
        str | None, typer.Option("--compare", help="Another checkpoint to show side by side, per layer.")
    ] = None,
) -> None:
    """Report per-layer sparsity and structure of a saved checkpoint (reads tensors, builds no model)."""
    from prunecli import inspect_cmd

    inspect_cmd.run(path, as_json=as_json, filter=filter, sort=sort, plot=plot, compare=compare)


@app.command()
@handles_user_errors
def schema(
    output: Annotated[str | None, typer.Option("--output", "-o", help="Write the schema to this file.")] = None,
) -> None:
    """Print the JSON Schema of pruning recipes (for editor validation)."""
    import json

    from prunecli.recipe import recipe_json_schema

    text = json.dumps(recipe_json_schema(), indent=2) + "\n"
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)


@app.command()
@handles_user_errors
def demo(
    output_dir: OutputDir = "demo_runs",
    num_train_epochs: Annotated[int, _opt("num_train_epochs", "Dense fine-tuning epochs.", TRAIN)] = 1,
    max_train_samples: MaxTrainSamples = 1500,
    seed: Seed = 42,
) -> None:
    """Run the whole job on the embedded defaults (MiniLM + Rotten Tomatoes): finetune, prune, evaluate, inspect."""
    from prunecli import demo as demo_mod

    demo_mod.run(output_dir=output_dir, num_train_epochs=num_train_epochs,
                 max_train_samples=max_train_samples, seed=seed)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
