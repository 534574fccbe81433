"""Run configuration shared by the CLI and the library.

Plain dataclasses (no torch import) so the CLI can build them instantly. Their fields, types and defaults are
the settings of `prunecli.settings` (the one declaration of every option), so `--learning_rate` maps to
`TrainConfig.learning_rate` and both have the same default. Field names are the reference script's flag names
(`run_glue_no_trainer.py` of Intel Neural Compressor's pruning example).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from prunecli.settings import COOLDOWN_LR_DECAYS, DISTILL_TYPES, HIDDEN_LAYERS, section

__all__ = ["COOLDOWN_LR_DECAYS", "DISTILL_TYPES", "EVALUATE_BATCH_SIZE", "HIDDEN_LAYERS", "DataConfig",
           "DistillConfig", "PruneConfig", "RunConfig", "TrainConfig", "check_values", "split_options"]

#: `prunecli evaluate`'s default batch size: no gradients are kept, so batches can be larger than in training.
EVALUATE_BATCH_SIZE = 32


def _config_class(name: str, section_name: str, doc: str) -> type:
    """A dataclass with one field per setting of `section_name`: its type (None allowed where the setting says
    so) and its option default."""
    fields = []
    for setting in section(section_name):
        annotation = setting.type | None if setting.accepts_none else setting.type
        fields.append((setting.name, annotation, field(default=setting.option_default)))  # immutable defaults
    cls = dataclasses.make_dataclass(name, fields)
    cls.__module__, cls.__doc__ = __name__, doc
    return cls


DataConfig = _config_class("DataConfig", "data", "Where the examples come from and how they are tokenized.")
TrainConfig = _config_class("TrainConfig", "train", "The optimisation loop shared by `finetune` and `prune`.")
PruneConfig = _config_class(
    "PruneConfig", "prune",
    "Pruning options. `None` means: not given on the command line (the recipe or its defaults decide).")
DistillConfig = _config_class(
    "DistillConfig", "distill", "Knowledge distillation from the dense teacher (off while distill_loss_weight == 0).")


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)  # type: ignore[valid-type]
    train: TrainConfig = field(default_factory=TrainConfig)  # type: ignore[valid-type]
    prune: PruneConfig | None = None  # type: ignore[valid-type]
    distill: DistillConfig | None = None  # type: ignore[valid-type]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SECTIONS = {"data": DataConfig, "train": TrainConfig, "prune": PruneConfig, "distill": DistillConfig}


def split_options(options: dict[str, Any]) -> RunConfig:
    """Build a RunConfig from a flat mapping of option names (the CLI's keyword arguments).

    Unknown names are a bug in the caller, not user input, so they raise.
    """
    sections: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
    fields_of = {name: {f.name for f in dataclasses.fields(cls)} for name, cls in _SECTIONS.items()}
    for key, value in options.items():
        for name, names in fields_of.items():
            if key in names:
                sections[name][key] = value
                break
        else:
            raise TypeError(f"option {key!r} belongs to no configuration section")
    return RunConfig(
        data=DataConfig(**sections["data"]),
        train=TrainConfig(**sections["train"]),
        prune=PruneConfig(**sections["prune"]) if sections["prune"] else None,
        distill=DistillConfig(**sections["distill"]) if sections["distill"] else None,
    )


def check_values(cfg: RunConfig, *sections: str) -> None:
    """Refuse the first option of `sections` (default: all) outside its declared range or choices (UserError,
    naming the option), so a bad value stops a run before any data or model is read."""
    from prunecli.errors import UserError
    from prunecli.settings import BY_NAME

    for name in sections or tuple(_SECTIONS):
        values = getattr(cfg, name)
        if values is None:
            continue
        for field_ in dataclasses.fields(values):
            problem = BY_NAME[field_.name].problem(getattr(values, field_.name))
            if problem:
                raise UserError(problem + ".")
