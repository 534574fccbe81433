"""Run configuration shared by the CLI and the library.

Plain dataclasses (no torch import) so the CLI can build them instantly. Field names are
the reference script's flag names (`run_glue_no_trainer.py` of Intel Neural Compressor's
pruning example), so `--learning_rate` maps to `TrainConfig.learning_rate`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

#: Choices of the training-method options (also the values a recipe's `training` block accepts).
DISTILL_TYPES = ("hidden_mse", "logits_kl")
HIDDEN_LAYERS = ("last", "all")
COOLDOWN_LR_DECAYS = ("none", "linear", "cosine")

#: `prunecli evaluate`'s default batch size: no gradients are kept, so batches can be larger than in training.
EVALUATE_BATCH_SIZE = 32


@dataclass
class DataConfig:
    """Where the examples come from and how they are tokenized."""

    task_name: str | None = None  # a GLUE task (cola ... wnli) or `rotten_tomatoes` (embedded demo data)
    data_dir: str | None = None  # a GLUE folder in the classic TSV layout (train.tsv, dev.tsv)
    train_file: str | None = None  # csv / json / jsonl / tsv
    validation_file: str | None = None
    max_length: int = 128
    pad_to_max_length: bool = False  # default: dynamic padding per batch
    max_train_samples: int | None = None  # first N training examples after a seeded shuffle
    max_eval_samples: int | None = None
    use_slow_tokenizer: bool = False
    cache_dir: str | None = None  # tokenization cache; default ~/.cache/prunecli


@dataclass
class TrainConfig:
    """The optimisation loop shared by `finetune` and `prune`."""

    model_name_or_path: str = ""
    output_dir: str | None = None
    per_device_train_batch_size: int = 8
    per_device_eval_batch_size: int = 8
    learning_rate: float = 5e-5
    weight_decay: float = 0.0
    num_train_epochs: int = 3
    max_train_steps: int | None = None
    gradient_accumulation_steps: int = 1
    lr_scheduler_type: str = "linear"
    num_warmup_steps: int = 0
    adam_beta1: float = 0.9
    adam_beta2: float | None = None  # None: 0.999 for finetune, 0.9 for prune (the reference example)
    adam_epsilon: float = 1e-8  # torch's and the HF Trainer's default (INC's example: 1e-6)
    max_grad_norm: float | None = None
    seed: int = 42
    group_by_length: bool = True  # batches of similar length: less padding (prunecli/training/sampling.py)
    mixed_precision: str = "no"  # no | fp16 | bf16
    overwrite_output_dir: bool = False
    resume_from_checkpoint: str | None = None
    checkpointing_steps: str | None = None  # an integer N or "epoch"
    checkpoints_total_limit: int | None = None  # keep only the newest N resumable states (None: all)
    report_to: str | None = None  # accelerate trackers: tensorboard, wandb, all ...
    log_level: str = "info"
    trust_remote_code: bool = False
    ignore_mismatched_sizes: bool = False


@dataclass
class PruneConfig:
    """Pruning options. `None` means: not given on the command line (the recipe or its defaults decide)."""

    recipe: str | None = None
    target_sparsity: float | None = None
    initial_sparsity: float | None = None
    pruning_pattern: str | None = None
    pruning_type: str | None = None
    pruning_scope: str | None = None
    sparsity_decay_type: str | None = None
    pruning_frequency: int | None = None  # -1 or None: about 40 pruning events between start and end
    sparsity_warm_epochs: float = 0.0
    cooldown_epochs: float = 0.0
    cooldown_lr_decay: str = "none"  # none | linear | cosine: the learning rate falls to 0 over the cool-down
    lr_rewind_ratio: float | None = None  # between pruning events the lr falls to this share, rewound at each event
    compact: bool = False  # after training, remove the pruned heads and neurons into OUTPUT_DIR/compact
    dry_run: bool = False


@dataclass
class DistillConfig:
    """Knowledge distillation from the dense teacher (off while distill_loss_weight == 0)."""

    teacher_model_name_or_path: str | None = None  # default: the input model
    distill_loss_weight: float = 0.0
    distill_type: str = "hidden_mse"  # hidden_mse | logits_kl
    distill_temperature: float = 2.0
    distill_alpha: float = 0.5  # logits_kl: weight of the KL term; the label loss gets 1 - alpha
    distill_label_loss: bool = False  # hidden_mse: add the label loss to the MSE term
    distill_padding: bool = False  # hidden_mse: also match padded positions (the reference; no teacher cache)
    distill_hidden_layers: str = "last"  # hidden states matched: last (the reference) or all (every layer, mapped)
    distill_hidden_weight: float = 0.0  # logits_kl: weight of an added hidden-state MSE (0: none)
    cache_teacher_outputs: bool = True  # when they fit in memory (see distill.py)


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneConfig | None = None
    distill: DistillConfig | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def split_options(options: dict[str, Any]) -> RunConfig:
    """Build a RunConfig from a flat mapping of option names (the CLI's keyword arguments).

    Unknown names are a bug in the caller, not user input, so they raise.
    """
    sections: dict[str, dict[str, Any]] = {"data": {}, "train": {}, "prune": {}, "distill": {}}
    owners = {
        "data": DataConfig,
        "train": TrainConfig,
        "prune": PruneConfig,
        "distill": DistillConfig,
    }
    fields_of = {name: {f.name for f in dataclasses.fields(cls)} for name, cls in owners.items()}
    for key, value in options.items():
        for section, names in fields_of.items():
            if key in names:
                sections[section][key] = value
                break
        else:
            raise TypeError(f"option {key!r} belongs to no configuration section")
    return RunConfig(
        data=DataConfig(**sections["data"]),
        train=TrainConfig(**sections["train"]),
        prune=PruneConfig(**sections["prune"]) if sections["prune"] else None,
        distill=DistillConfig(**sections["distill"]) if sections["distill"] else None,
    )
