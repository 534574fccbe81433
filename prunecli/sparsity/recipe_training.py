"""A recipe's `training` block: the training method a recipe was made with, as defaults of `prune`'s options.

The pruner never reads it; `prunecli prune` applies it to the run's configuration before training, and an option
given on the command line wins over it.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from prunecli.config import COOLDOWN_LR_DECAYS, DISTILL_TYPES, HIDDEN_LAYERS, DistillConfig, PruneConfig, RunConfig

Weight = Annotated[float, Field(strict=True, ge=0.0)]
Share = Annotated[float, Field(strict=True, ge=0.0, le=1.0)]


class TrainingSettings(BaseModel):
    """A recipe's `training` block: the training method it was made with (distillation, learning-rate shape).

    Each key is a `prunecli prune` option of the same name and acts as that option's default; an option given
    on the command line wins. The pruning keys stay at the top level and in the groups: these keys are read by
    the training loop, not by the pruner (`Pruner(model, recipe)` ignores them).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    distill_loss_weight: Weight | None = Field(None, description="Weight of the distillation loss (0: none).")
    distill_type: Literal[DISTILL_TYPES] | None = Field(  # type: ignore[valid-type]
        None, description="hidden_mse (INC's: MSE of hidden states replaces the label loss) or logits_kl.")
    distill_temperature: Annotated[float, Field(strict=True, gt=0.0)] | None = Field(
        None, description="Softmax temperature of logits_kl.")
    distill_alpha: Share | None = Field(
        None, description="logits_kl: share of the KL term; the label loss gets 1 - alpha.")
    distill_label_loss: Annotated[bool, Field(strict=True)] | None = Field(
        None, description="hidden_mse: also add the label loss.")
    distill_hidden_layers: Literal[HIDDEN_LAYERS] | None = Field(  # type: ignore[valid-type]
        None, description="Hidden states matched: last (the encoder output) or all (every layer, mapped).")
    distill_hidden_weight: Weight | None = Field(
        None, description="logits_kl: weight of an added hidden-state MSE (0: none).")
    cooldown_lr_decay: Literal[COOLDOWN_LR_DECAYS] | None = Field(  # type: ignore[valid-type]
        None, description="Learning rate over the cool-down: none (as scheduled), linear or cosine decay to 0.")
    lr_rewind_ratio: Share | None = Field(
        None, description="Between pruning events the learning rate falls to this share, rewound at each event.")

    def to_dict(self) -> dict[str, Any]:
        """The keys that are set."""
        return self.model_dump(mode="json", exclude_none=True)


TRAINING_KEYS = tuple(TrainingSettings.model_fields)
_DISTILL_FIELDS = frozenset(f.name for f in dataclasses.fields(DistillConfig))


def section_of(key: str) -> str:
    """The RunConfig section (`distill` or `prune`) that holds a training key's option."""
    return "distill" if key in _DISTILL_FIELDS else "prune"


def option_default(key: str) -> Any:
    """The `prune` option's own default for a training key."""
    return getattr(DistillConfig() if section_of(key) == "distill" else PruneConfig(), key)


def values_used(cfg: RunConfig, keys) -> dict[str, Any]:
    """The values `cfg` runs with for the training keys `keys`."""
    return {key: getattr(getattr(cfg, section_of(key)), key) for key in keys}


def apply_training(cfg: RunConfig, training, explicit: frozenset[str] | None = None
                   ) -> tuple[RunConfig, dict[str, Any]]:
    """`cfg` with the recipe's `training` block (a TrainingSettings, or None) as the defaults of its options.

    A key applies unless its option was given: `explicit` names the options set on the command line; without it
    (a call from Python) an option counts as given when its value differs from the configuration's default.
    Returns the new configuration and the keys applied.
    """
    if training is None:
        return cfg, {}
    sections = {"prune": cfg.prune or PruneConfig(), "distill": cfg.distill or DistillConfig()}
    applied: dict[str, Any] = {}
    for key, value in training.to_dict().items():
        name = section_of(key)
        given = key in explicit if explicit is not None else getattr(sections[name], key) != option_default(key)
        if not given:
            applied[key] = value
            sections[name] = dataclasses.replace(sections[name], **{key: value})
    return dataclasses.replace(cfg, **sections), applied
