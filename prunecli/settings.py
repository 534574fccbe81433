"""Every run option and recipe key, declared once: name, type, default, range or choices, and help.

The run configuration's dataclasses (`prunecli.config`), the command-line options (`prunecli.cli.options`), the
recipe model (`prunecli.sparsity.recipe`, its `training` block), the JSON Schema and the docs tables are all
built from `SETTINGS`, so a default, a range or a help text cannot differ between them.

This module imports only the standard library: the library (`prunecli.sparsity`) reads it without pulling in the
run configuration, the CLI or any heavy dependency.

Two kinds of settings are also recipe keys:

- `recipe="group"`: a key of a pruning group (`target_sparsity`, `pattern`, ...). Its `default` is the recipe's
  built-in default. Where it is also an option, the option's default is None ("not given": the recipe decides)
  and a given value acts as the recipe's top-level value.
- `recipe="training"`: a key of a recipe's `training` block (distillation, learning-rate shape). The option's
  `default` is its own; the recipe's value replaces it unless the option was given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Section = Literal["data", "train", "prune", "distill", "recipe", "export"]

#: The help panels of the command-line options.
DATA, TRAINING, PRUNE, DISTILL, OUT = "Data", "Training", "Pruning", "Distillation", "Output and checkpoints"
EXPORT = "Export"
_PANELS = {"data": DATA, "train": TRAINING, "prune": PRUNE, "distill": DISTILL, "export": EXPORT}

#: Choices of the training-method options (also the values a recipe's `training` block accepts).
DISTILL_TYPES = ("hidden_mse", "logits_kl")
HIDDEN_LAYERS = ("last", "all")
COOLDOWN_LR_DECAYS = ("none", "linear", "cosine")
OP_TYPES = ("Linear", "Conv1D")
#: Precisions of an exported ONNX file (`prunecli export --quantize`, `prune --export`): float32 and INT8
#: (onnxruntime's dynamic quantization; static QDQ measured slower, see docs/deploy.md).
EXPORT_PRECISIONS = ("fp32", "int8")


@dataclass(frozen=True)
class Setting:
    """One option or recipe key.

    `section`: the RunConfig section holding it (`recipe`: a recipe key with no option). `optional`: None is a
    valid value ("not given"). `ge`/`gt`/`le`/`lt`, `choices`: the valid values, checked for options by
    `problem()` and for recipe keys by the recipe model. `aliases`: extra command-line spellings.
    `recipe_key`: the key's name in a recipe where it differs from the option's. `negatable`: a flag with a
    `--no_` form (for flags whose default is on).
    """

    name: str
    type: Any
    default: Any
    help: str
    section: Section
    panel: str | None = None
    optional: bool = False
    choices: tuple[str, ...] = ()
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    aliases: tuple[str, ...] = ()
    recipe: Literal["group", "training"] | None = None
    recipe_key: str | None = None
    negatable: bool = False
    hidden: bool = False
    examples: tuple[Any, ...] = ()

    @property
    def key(self) -> str:
        """The name in a recipe (or, for an option that is no recipe key, the option's name)."""
        return self.recipe_key or self.name

    @property
    def option_panel(self) -> str:
        return self.panel or _PANELS[self.section]

    @property
    def option_default(self) -> Any:
        """The configuration's and the option's default: None for a group key (the recipe decides)."""
        return None if self.recipe == "group" else self.default

    @property
    def accepts_none(self) -> bool:
        return self.optional or self.recipe == "group"

    def bounds(self) -> str | None:
        """The valid range in words (`at least 1`, `in [0, 1)`), or None where any value of the type goes."""
        lo = ("[", self.ge) if self.ge is not None else ("(", self.gt) if self.gt is not None else None
        hi = ("]", self.le) if self.le is not None else (")", self.lt) if self.lt is not None else None
        if lo and hi:
            return f"in {lo[0]}{lo[1]:g}, {hi[1]:g}{hi[0]}"
        if lo:
            if lo == ("(", 0):
                return "positive"
            if lo == ("[", 0):
                return "at least 0"
            return f"at least {lo[1]:g}" if lo[0] == "[" else f"above {lo[1]:g}"
        if hi:
            return f"at most {hi[1]:g}" if hi[0] == "]" else f"below {hi[1]:g}"
        return None

    def problem(self, value: Any) -> str | None:
        """Why `value` is not valid for this setting (a message naming the option), or None when it is."""
        if value is None:
            return None if self.accepts_none else f"--{self.name} needs a value"
        items = value if isinstance(value, tuple | list) else (value,)
        wrong = [item for item in items if self.choices and item not in self.choices]
        if wrong:
            return f"--{self.name} {wrong[0]!r} is not one of {', '.join(self.choices)}"
        if self.type in (int, float) and not isinstance(value, bool) and isinstance(value, int | float):
            low_ok = (self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
            high_ok = (self.le is None or value <= self.le) and (self.lt is None or value < self.lt)
            if not (low_ok and high_ok):
                return f"--{self.name} must be {self.bounds()} (got {value:g})"
        return None


def _s(name: str, type_: Any, default: Any, help: str, section: Section, **kw: Any) -> Setting:
    return Setting(name, type_, default, help, section, **kw)


SETTINGS: tuple[Setting, ...] = (
    # ---- data ------------------------------------------------------------------------------------------
    _s("task_name", str, None, "GLUE task (cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli), `rotten_tomatoes` "
       "(embedded demo data), `squad` (question answering, SQuAD v1.1 JSON) or `conll2003` / `ner` (named "
       "entities, CoNLL text); see docs/tasks.md.", "data", optional=True, aliases=("--dataset_name",)),
    _s("data_dir", str, None, "A local GLUE task folder in the classic TSV layout (train.tsv, dev.tsv); with "
       "--task_name squad, SQuAD JSON (train-v1.1.json, dev-v1.1.json); with conll2003, CoNLL text (train.txt, "
       "dev.txt).", "data", optional=True),
    _s("train_file", str, None, "Training data: csv, json, jsonl or tsv; SQuAD JSON; CoNLL text.", "data",
       optional=True),
    _s("validation_file", str, None, "Validation data: csv, json, jsonl or tsv; SQuAD JSON; CoNLL text.", "data",
       optional=True),
    _s("max_length", int, 128, "Maximum tokens per example (longer ones are truncated).", "data", ge=1),
    _s("pad_to_max_length", bool, False, "Pad every example to --max_length (default: dynamic padding).", "data"),
    _s("max_train_samples", int, None, "Use only this many training examples (seeded subset).", "data",
       optional=True, ge=1),
    _s("max_eval_samples", int, None, "Use only this many evaluation examples.", "data", optional=True, ge=1),
    # question answering and token classification (prunecli.tasks.qa, prunecli.tasks.ner)
    _s("max_seq_length", int, 384, "Question answering: tokens per window of question and context (--max_length "
       "is for the other tasks).", "data", ge=8),
    _s("doc_stride", int, 128, "Question answering: tokens shared by two consecutive windows of a long context.",
       "data", ge=0),
    _s("n_best_size", int, 20, "Question answering: start and end positions tried per window.", "data", ge=1),
    _s("max_answer_length", int, 30, "Question answering: longest answer, in tokens.", "data", ge=1),
    _s("label_all_tokens", bool, False, "Token classification: train on every sub-token of a word (default: the "
       "first carries the tag, the rest are ignored; evaluation always reads first sub-tokens).", "data"),
    _s("use_slow_tokenizer", bool, False, "Use the slow (Python) tokenizer.", "data"),
    _s("cache_dir", str, None, "Tokenization cache folder (default ~/.cache/prunecli).", "data", optional=True),
    # ---- training --------------------------------------------------------------------------------------
    _s("model_name_or_path", str, "", "Model folder (or hub id when the hub is reachable).", "train"),
    _s("output_dir", str, None, "Where the checkpoint is written.", "train", panel=OUT, optional=True),
    _s("per_device_train_batch_size", int, 8, "Training batch size per process.", "train", ge=1),
    _s("per_device_eval_batch_size", int, 8, "Evaluation batch size per process.", "train", ge=1),
    _s("learning_rate", float, 5e-5, "Peak learning rate of AdamW.", "train", gt=0),
    _s("weight_decay", float, 0.0, "AdamW weight decay (not on biases and LayerNorm).", "train", ge=0),
    _s("num_train_epochs", int, 3, "Training epochs.", "train", aliases=("--num_train_epoch",)),
    _s("max_train_steps", int, None, "Stop after this many optimizer steps (overrides epochs).", "train",
       optional=True, ge=1),
    _s("gradient_accumulation_steps", int, 1, "Micro-batches accumulated per optimizer step.", "train", ge=1),
    _s("lr_scheduler_type", str, "linear", "Any transformers scheduler: linear, cosine, cosine_with_restarts, "
       "polynomial, constant, constant_with_warmup, inverse_sqrt, reduce_lr_on_plateau, ...", "train"),
    _s("num_warmup_steps", int, 0, "Learning-rate warm-up steps.", "train", ge=0),
    _s("adam_beta1", float, 0.9, "AdamW beta1.", "train", ge=0, lt=1),
    _s("adam_beta2", float, None, "AdamW beta2 (default 0.999 for finetune, 0.9 for prune as in the reference "
       "example).", "train", optional=True, ge=0, lt=1),
    _s("adam_epsilon", float, 1e-8, "AdamW epsilon (INC's example used 1e-6).", "train", gt=0),
    _s("max_grad_norm", float, None, "Clip gradients to this norm.", "train", optional=True, gt=0),
    _s("seed", int, 42, "Random seed (data order, initialisation, dropout).", "train"),
    _s("group_by_length", bool, True, "Batch examples of similar length together (shuffled mega-batches of 50 "
       "batches, each sorted by length): far less padding, so each epoch is faster; an epoch still sees every "
       "example once. --no_group_by_length: plain shuffled batches (INC's example's order).", "train",
       negatable=True),
    _s("eval_each_epoch", bool, True, "Evaluate after every epoch (the per-epoch table of the training log). "
       "--no_eval_each_epoch: only after the last, which saves most of the evaluation time of a large set such as "
       "SQuAD's dev set.", "train", negatable=True),
    _s("mixed_precision", str, "no", "no, fp16 or bf16 (where the device supports it).", "train"),
    # output options: TrainConfig fields shown in their own help panel
    _s("overwrite_output_dir", bool, False, "Allow writing into a non-empty --output_dir.", "train", panel=OUT),
    _s("resume_from_checkpoint", str, None, "A checkpoint folder written by --checkpointing_steps, or `latest`.",
       "train", panel=OUT, optional=True),
    _s("checkpointing_steps", str, None, "Save resumable state every N optimizer steps or every `epoch`.", "train",
       panel=OUT, optional=True),
    _s("checkpoints_total_limit", int, None, "Keep only the newest N resumable checkpoints (default: all).", "train",
       panel=OUT, optional=True, ge=1),
    _s("report_to", str, None, "Accelerate trackers to log to: tensorboard, wandb, ..., or all.", "train", panel=OUT,
       optional=True),
    _s("log_level", str, "info", "debug, info, warning or error.", "train"),
    _s("trust_remote_code", bool, False, "Allow model code from the checkpoint (off).", "train"),
    _s("ignore_mismatched_sizes", bool, False, "Re-initialise a classifier head of another size.", "train"),
    # ---- pruning -----------------------------------------------------------------------------------------
    _s("recipe", str, None, "JSON recipe file, or a shipped recipe's name (`prunecli recipes`); command-line "
       "pruning options act as its global values.", "prune",
       optional=True),
    # options that are recipe keys: a given value is the recipe's top-level value. The recipe defaults of the
    # group keys (here and under "recipe keys with no option") are Intel Neural Compressor 2.x
    # `WeightPruningConfig`'s, with the pooler excluded as in INC's GLUE example.
    _s("target_sparsity", float, 0.9, "Final fraction of zero weights in the group's layers, in [0, 1).", "prune",
       recipe="group", ge=0, lt=1),
    _s("initial_sparsity", float, 0.0, "Sparsity the first pruning event reaches at once (oBERT-style one-shot "
       "start); the schedule then grows it to target_sparsity. 0: start from the dense model.", "prune",
       recipe="group", ge=0, lt=1),
    _s("pruning_pattern", str, "4x1", 'Sparsity structure: NxM blocks ("4x1", "1x1" unstructured, "2x2"), N:M '
       '("2:4" keeps 2 of every 4 consecutive input weights), "1xchannel" (whole output rows), "channelx1" (whole '
       'input columns), "head" (whole attention heads) or "neuron" (whole feed-forward neurons); heads and neurons '
       "are found in the model's attention and feed-forward blocks and can be removed by `prunecli compact`.",
       "prune", recipe="group", recipe_key="pattern", aliases=("--pattern",),
       examples=("4x1", "1x1", "2:4", "1xchannel", "head")),
    _s("pruning_type", str, "snip_momentum", "Score: snip_momentum (0.9 * score + |W*G| every optimizer step), "
       "snip |W*G|, magnitude |W|, gradient |G|, or a criterion registered with "
       "prunecli.sparsity.criteria.register_criterion; a _progressive suffix prunes each event's new units over 4 "
       "stages; pattern_lock keeps the zeros present at the start and prunes nothing new.", "prune", recipe="group",
       examples=("snip_momentum", "snip_momentum_progressive", "magnitude", "pattern_lock")),
    _s("pruning_scope", str, "global", "global: one threshold across the group's layers; local: every layer gets "
       "the target.", "prune", recipe="group", choices=("global", "local")),
    _s("sparsity_decay_type", str, "exp", "How the target grows from event to event.", "prune", recipe="group",
       choices=("exp", "cos", "linear", "cube")),
    _s("pruning_frequency", int, 1, "Optimizer steps between pruning events; -1: about 40 events between start and "
       "end. `prunecli prune` without it: -1.", "prune", recipe="group"),
    # the run's own pruning options
    _s("sparsity_warm_epochs", float, 0.0, "Dense epochs before pruning starts.", "prune", ge=0),
    _s("cooldown_epochs", float, 0.0, "Epochs with fixed masks after pruning ends.", "prune", ge=0),
    _s("cooldown_lr_decay", str, "none", "Learning rate over the cool-down: none (as scheduled), linear or cosine "
       "(falls to 0 at the last step).", "prune", recipe="training", choices=COOLDOWN_LR_DECAYS),
    _s("lr_rewind_ratio", float, None, "Between pruning events the learning rate falls linearly to this share of "
       "its scheduled value and is rewound at each event (oBERT: 0.1). Default: off.", "prune", recipe="training",
       optional=True, ge=0, le=1),
    _s("compact", bool, False, "After training, remove the pruned heads and neurons: a smaller, faster copy of the "
       "model in OUTPUT_DIR/compact (see prunecli compact).", "prune"),
    _s("export", str, None, "After training, export the final model (the compacted one with --compact) to ONNX "
       "in OUTPUT_DIR/onnx: fp32, or int8 (dynamic quantization); checked against PyTorch (see prunecli export).",
       "prune", optional=True, choices=EXPORT_PRECISIONS),
    _s("dry_run", bool, False, "Print which layers each group prunes, then exit.", "prune"),
    # ---- distillation ---------------------------------------------------------------------------------
    _s("teacher_model_name_or_path", str, None, "Teacher model (default: the input model).", "distill",
       optional=True),
    _s("distill_loss_weight", float, 0.0, "Weight of the distillation loss (0: no distillation).", "distill",
       recipe="training", ge=0),
    _s("distill_type", str, "hidden_mse", "hidden_mse (the reference: MSE of last hidden states) or logits_kl.",
       "distill", recipe="training", choices=DISTILL_TYPES),
    _s("distill_temperature", float, 2.0, "Softmax temperature for logits_kl.", "distill", recipe="training", gt=0),
    _s("distill_alpha", float, 0.5, "logits_kl: share of the KL term; the label loss gets 1 - alpha.", "distill",
       recipe="training", ge=0, le=1),
    _s("distill_label_loss", bool, False, "hidden_mse: also add the label loss.", "distill", recipe="training"),
    _s("distill_padding", bool, False, "hidden_mse: also match the padded positions, as INC's example did (the "
       "teacher then runs every step: no cache).", "distill"),
    _s("distill_hidden_layers", str, "last", "Hidden states matched: last (the encoder output, INC's example) or all "
       "(every layer; a shallower student maps layers uniformly).", "distill", recipe="training",
       choices=HIDDEN_LAYERS),
    _s("distill_hidden_weight", float, 0.0, "logits_kl: add this weight times the hidden-state MSE (0: none).",
       "distill", recipe="training", ge=0),
    _s("cache_teacher_outputs", bool, True, "Cache teacher outputs across epochs when they fit in memory.",
       "distill", negatable=True),
    # ---- export (`prunecli export`; no run configuration section) ------------------------------------
    _s("quantize", str, None, "int8: quantize the file with onnxruntime's dynamic quantization (per-channel int8 "
       "weights). Default: float32.", "export", optional=True, choices=EXPORT_PRECISIONS[1:]),
    # ---- recipe keys with no option -------------------------------------------------------------------
    _s("start_step", int, 0, "Optimizer step of the first pruning event.", "recipe", recipe="group", ge=0),
    _s("end_step", int, 0, "Last optimizer step with a pruning event; masks are fixed after it (cool-down).",
       "recipe", recipe="group", ge=0),
    _s("op_names", tuple[str, ...], (), "Regular expressions (re.search on module names) of layers to prune; "
       "empty: all.", "recipe", recipe="group"),
    _s("excluded_op_names", tuple[str, ...], ("pooler",), "Regular expressions (re.search on module names) of "
       "layers never to prune.", "recipe", recipe="group"),
    _s("pruning_op_types", tuple[str, ...], ("Linear",), 'Module classes to prune: "Linear" (torch.nn.Linear), '
       '"Conv1D" (GPT-2 style [in, out]).', "recipe", recipe="group", choices=OP_TYPES),
    _s("min_sparsity_ratio_per_op", float, 0.0, "Global scope: lowest sparsity any layer of the group ends with.",
       "recipe", recipe="group", ge=0, lt=1),
    _s("max_sparsity_ratio_per_op", float, 0.98, "Highest sparsity any layer of the group may reach.", "recipe",
       recipe="group", gt=0, le=1),
    _s("criterion_reduce_type", str, "mean", "How a block's score is made from its weights' scores.", "recipe",
       recipe="group", choices=("mean", "sum", "max")),
    _s("min_heads_per_layer", int, 1, 'Pattern "head": the fewest heads any attention block keeps (0 lets a block '
       "lose all).", "recipe", recipe="group", ge=0),
    _s("min_neurons_per_layer", int, 1, 'Pattern "neuron": the fewest neurons any feed-forward block keeps.',
       "recipe", recipe="group", ge=0),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
#: The keys of a pruning group, in the order recipes document them, by their recipe name.
GROUP_SETTINGS: dict[str, Setting] = {s.key: s for s in SETTINGS if s.recipe == "group"}
#: The keys of a recipe's `training` block: the distillation keys, then the learning-rate shape.
TRAINING_SETTINGS: dict[str, Setting] = {
    s.key: s for s in sorted((s for s in SETTINGS if s.recipe == "training"), key=lambda s: s.section != "distill")
}


def section(name: str) -> tuple[Setting, ...]:
    """The options of one RunConfig section, in declaration order."""
    return tuple(s for s in SETTINGS if s.section == name)

