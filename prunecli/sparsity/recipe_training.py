"""Recipe fields from settings, and a recipe's `training` block.

`setting_field` turns one setting (`prunecli.settings`) into a pydantic field: its type, range or choices
and help, strict as recipes are (JSON `1` is not `true`). The pruning groups' keys (`recipe.GroupSettings`)
and the `training` block's keys (`TrainingSettings`) are built with it, so a recipe key and the option of
the same name cannot disagree.

The `training` block is the training method a recipe was made with, as defaults of `prune`'s options. The
pruner never reads it; the prune pipeline (`prunecli.pipelines.prune`) applies it to the run's
configuration, and an option given on the command line wins over it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

from prunecli.settings import TRAINING_SETTINGS, Setting


def not_a_string(value: Any) -> Any:
    if isinstance(value, str):
        raise ValueError(f'must be a list of strings, e.g. ["{value}"]')
    return value


def setting_field(setting: Setting, *, optional: bool = False, checks: tuple[Any, ...] = (),
                  item_checks: tuple[Any, ...] = (), schema: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """`(annotation, FieldInfo)` of a recipe key, for `pydantic.create_model`.

    `optional`: None is accepted and is the default ("not set here"); otherwise the setting's default is.
    `checks` are appended to the value's annotation (validators, constraints); `item_checks` to each item
    of a list-valued key. `schema`: extra JSON Schema keywords.
    """
    bounds = {name: setting.type(getattr(setting, name)) for name in ("ge", "gt", "le", "lt")
              if getattr(setting, name) is not None and setting.type in (int, float)}
    if setting.type == tuple[str, ...]:
        item = Literal[setting.choices] if setting.choices else Annotated[(str, Field(strict=True), *item_checks)]
        annotation: Any = Annotated[(tuple[item, ...], *checks, BeforeValidator(not_a_string))]
    elif setting.choices:
        annotation = Annotated[(Literal[setting.choices], *checks)] if checks else Literal[setting.choices]
    else:
        annotation = Annotated[(setting.type, Field(strict=True, **bounds), *checks)]
    extra = {**({"examples": list(setting.examples)} if setting.examples else {}), **(schema or {})}
    info = Field(None if optional else setting.default, description=setting.help, json_schema_extra=extra or None)
    return (annotation | None if optional else annotation), info


class _TrainingBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_dict(self) -> dict[str, Any]:
        """The keys that are set."""
        return self.model_dump(mode="json", exclude_none=True)


TrainingSettings = create_model(
    "TrainingSettings", __base__=_TrainingBase,
    __doc__="A recipe's `training` block: the training method it was made with (distillation, learning-rate "
    "shape).\n\nEach key is a `prunecli prune` option of the same name and acts as that option's default; an "
    "option given on the command line wins. These keys are read by the training loop, not by the pruner "
    "(`Pruner(model, recipe)` ignores them).",
    **{key: setting_field(setting, optional=True) for key, setting in TRAINING_SETTINGS.items()},
)
TRAINING_KEYS = tuple(TrainingSettings.model_fields)
