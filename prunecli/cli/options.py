"""The command-line options, defined once and shared by the commands.

Every option accepts the reference script's underscore spelling (`--model_name_or_path`) and the
dashed one (`--model-name-or-path`). Defaults are not written here: each command reads them from the
configuration dataclasses (`prunecli.config`), the one home of option defaults.
"""

from __future__ import annotations

import functools
import inspect
import typing
from typing import Annotated, Any

import typer

from prunecli.config import DistillConfig, PruneConfig, RunConfig

#: The default of every option, read by the commands' signatures (`learning_rate: LR = DEFAULTS.train.learning_rate`).
DEFAULTS = RunConfig(prune=PruneConfig(), distill=DistillConfig())


def _opt(name: str, help: str, panel: str, *aliases: str, **kw: Any) -> Any:
    """An option with both spellings: `--name_with_underscores` and `--name-with-dashes`."""
    spellings = [f"--{name}"]
    dashed = f"--{name.replace('_', '-')}"
    if dashed not in spellings:
        spellings.append(dashed)
    spellings.extend(aliases)
    return typer.Option(*spellings, help=help, rich_help_panel=panel, **kw)


DATA, TRAINING, PRUNE, DISTILL, OUT = "Data", "Training", "Pruning", "Distillation", "Output and checkpoints"

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
    str, _opt("model_name_or_path", "Model folder (or hub id when the hub is reachable).", TRAINING)
]
TrainBS = Annotated[int, _opt("per_device_train_batch_size", "Training batch size per process.", TRAINING)]
EvalBS = Annotated[int, _opt("per_device_eval_batch_size", "Evaluation batch size per process.", TRAINING)]
LR = Annotated[float, _opt("learning_rate", "Peak learning rate of AdamW.", TRAINING)]
WD = Annotated[float, _opt("weight_decay", "AdamW weight decay (not on biases and LayerNorm).", TRAINING)]
Epochs = Annotated[int, _opt("num_train_epochs", "Training epochs.", TRAINING, "--num_train_epoch")]
MaxSteps = Annotated[
    int | None, _opt("max_train_steps", "Stop after this many optimizer steps (overrides epochs).", TRAINING)
]
GradAcc = Annotated[
    int, _opt("gradient_accumulation_steps", "Micro-batches accumulated per optimizer step.", TRAINING)
]
LRSched = Annotated[
    str,
    _opt("lr_scheduler_type", "Any transformers scheduler: linear, cosine, cosine_with_restarts, polynomial, "
         "constant, constant_with_warmup, inverse_sqrt, reduce_lr_on_plateau, ...", TRAINING),
]
Warmup = Annotated[int, _opt("num_warmup_steps", "Learning-rate warm-up steps.", TRAINING)]
Beta1 = Annotated[float, _opt("adam_beta1", "AdamW beta1.", TRAINING)]
Beta2 = Annotated[
    float | None, _opt("adam_beta2", "AdamW beta2 (default 0.999 for finetune, 0.9 for prune as in the "
                       "reference example).", TRAINING)
]
AdamEps = Annotated[float, _opt("adam_epsilon", "AdamW epsilon (INC's example used 1e-6).", TRAINING)]
MaxGradNorm = Annotated[float | None, _opt("max_grad_norm", "Clip gradients to this norm.", TRAINING)]
Seed = Annotated[int, _opt("seed", "Random seed (data order, initialisation, dropout).", TRAINING)]
GroupByLength = Annotated[
    bool,
    typer.Option(
        "--group_by_length/--no_group_by_length",
        "--group-by-length/--no-group-by-length",
        help="Batch examples of similar length together (shuffled mega-batches of 50 batches, each sorted by "
        "length): far less padding, so each epoch is faster; an epoch still sees every example once. "
        "--no_group_by_length: plain shuffled batches (INC's example's order).",
        rich_help_panel=TRAINING,
    ),
]
MixedPrecision = Annotated[str, _opt("mixed_precision", "no, fp16 or bf16 (where the device supports it).", TRAINING)]
TrustRemote = Annotated[bool, _opt("trust_remote_code", "Allow model code from the checkpoint (off).", TRAINING)]
IgnoreMismatch = Annotated[
    bool, _opt("ignore_mismatched_sizes", "Re-initialise a classifier head of another size.", TRAINING)
]
LogLevel = Annotated[str, _opt("log_level", "debug, info, warning or error.", TRAINING)]

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
CheckpointLimit = Annotated[
    int | None, _opt("checkpoints_total_limit", "Keep only the newest N resumable checkpoints (default: all).", OUT)
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
DoPrune = Annotated[bool, _opt("do_prune", "Accepted and ignored (the reference script needed it).", PRUNE)]
DryRun = Annotated[bool, _opt("dry_run", "Print which layers each group prunes, then exit.", PRUNE)]
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
Compact = Annotated[
    bool, _opt("compact", "After training, remove the pruned heads and neurons: a smaller, faster copy of the "
               "model in OUTPUT_DIR/compact (see prunecli compact).", PRUNE)
]

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


# ---- option groups ------------------------------------------------------------------------------------
# Each maps a parameter name (the configuration field it fills) to its option; the default is the field's.

DATA_OPTIONS = {
    "task_name": TaskName, "data_dir": DataDir, "train_file": TrainFile, "validation_file": ValidationFile,
    "max_length": MaxLength, "pad_to_max_length": PadToMax, "max_train_samples": MaxTrainSamples,
    "max_eval_samples": MaxEvalSamples, "use_slow_tokenizer": SlowTokenizer, "cache_dir": CacheDir,
}
TRAINING_OPTIONS = {
    "per_device_train_batch_size": TrainBS, "per_device_eval_batch_size": EvalBS, "learning_rate": LR,
    "weight_decay": WD, "num_train_epochs": Epochs, "max_train_steps": MaxSteps,
    "gradient_accumulation_steps": GradAcc, "lr_scheduler_type": LRSched, "num_warmup_steps": Warmup,
    "adam_beta1": Beta1, "adam_beta2": Beta2, "adam_epsilon": AdamEps, "max_grad_norm": MaxGradNorm, "seed": Seed,
    "group_by_length": GroupByLength, "mixed_precision": MixedPrecision, "log_level": LogLevel,
    "trust_remote_code": TrustRemote, "ignore_mismatched_sizes": IgnoreMismatch,
}
OUTPUT_OPTIONS = {
    "output_dir": OutputDir, "overwrite_output_dir": Overwrite, "resume_from_checkpoint": Resume,
    "checkpointing_steps": Checkpointing, "checkpoints_total_limit": CheckpointLimit, "report_to": ReportTo,
}
PRUNING_OPTIONS = {
    "recipe": RecipePath, "target_sparsity": TargetSparsity, "initial_sparsity": InitialSparsity,
    "pruning_pattern": Pattern, "pruning_type": PruningType, "pruning_scope": Scope, "sparsity_decay_type": Decay,
    "pruning_frequency": Frequency, "sparsity_warm_epochs": WarmEpochs, "cooldown_epochs": CoolEpochs,
    "cooldown_lr_decay": CooldownLR, "lr_rewind_ratio": LRRewind, "compact": Compact, "dry_run": DryRun,
}
DISTILL_OPTIONS = {
    "teacher_model_name_or_path": Teacher, "distill_loss_weight": DistillWeight, "distill_type": DistillType,
    "distill_temperature": DistillTemp, "distill_alpha": DistillAlpha, "distill_label_loss": DistillLabel,
    "distill_padding": DistillPadding, "distill_hidden_layers": DistillHiddenLayers,
    "distill_hidden_weight": DistillHiddenWeight, "cache_teacher_outputs": CacheTeacher,
}
_IgnoredTrainFile = Annotated[
    str | None, _opt("train_file", "Accepted and ignored, so finetune's data options can be reused.", DATA, hidden=True)
]
EVALUATE_DATA_OPTIONS = {
    **{k: v for k, v in DATA_OPTIONS.items() if k not in ("train_file", "max_train_samples")},
    "train_file": _IgnoredTrainFile,
}
#: Accepted for compatibility with the reference script and ignored (not configuration).
COMPAT_OPTIONS = {"do_prune": DoPrune, "with_tracking": WithTracking}
IGNORED = tuple(COMPAT_OPTIONS)


def _default(name: str) -> Any:
    for section in (DEFAULTS.data, DEFAULTS.train, DEFAULTS.prune, DEFAULTS.distill):
        if hasattr(section, name):
            return getattr(section, name)
    if name in COMPAT_OPTIONS:
        return False
    raise KeyError(f"option {name!r} has no configuration field")  # a bug: every option fills a field


def with_options(*groups: dict[str, Any], defaults: dict[str, Any] | None = None):
    """Add the options of `groups` to a command function that takes them as `**options`.

    Typer reads a command's parameters from its signature, so the shared options are appended to the
    function's own signature once here instead of being written out in every command. Each default is
    the configuration field's (`defaults` overrides a few for one command, e.g. evaluate's batch size).
    """
    overrides = defaults or {}

    def decorate(fn):
        signature = inspect.signature(fn)
        hints = typing.get_type_hints(fn, include_extras=True)  # real objects, also under `from __future__`
        own = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in signature.parameters.values()
               if p.kind is not inspect.Parameter.VAR_KEYWORD]
        added = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                              default=overrides.get(name, _default(name)))
            for group in groups for name, annotation in group.items()
        ]

        @functools.wraps(fn)
        def command(**options):
            return fn(**options)

        command.__signature__ = signature.replace(parameters=[*own, *added])  # type: ignore[attr-defined]
        return command

    return decorate
