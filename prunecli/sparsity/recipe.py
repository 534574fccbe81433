"""Pruning recipes: one pydantic model validates JSON recipes and generates their JSON Schema.

A recipe is data. Top-level keys are global defaults; `pruning_configs` is a list of local
groups, and a key set in a group wins over the top-level one (Intel Neural Compressor 2.x
semantics), which wins over the built-in defaults (INC 2.x `WeightPruningConfig`). With no
`pruning_configs` the top-level keys form the only group. Command-line options act as top-level
values (`Recipe.with_globals`), so a group's own keys still win over them.

Every mistake a user can make raises `prunecli.errors.RecipeError` with the JSON path of the
offending key (`pruning_configs[1].pattern`), the file, and a hint: unknown keys (with the
closest valid key), wrong types and ranges, bad patterns, N:M with N >= M, a target above what
N:M allows, inconsistent steps or per-layer bounds. Unlike INC, unknown keys are errors, not
warnings: a misspelt `target_sparsty` silently pruning to the default 0.9 is worse than a stop.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    create_model,
    field_validator,
)

from prunecli.errors import RecipeError
from prunecli.settings import GROUP_SETTINGS
from prunecli.sparsity.patterns import NMPattern, PatternError, StructurePattern, parse_pattern
from prunecli.sparsity.recipe_errors import ChoiceError, recipe_error
from prunecli.sparsity.recipe_training import TRAINING_KEYS, TrainingSettings, not_a_string, setting_field

PATTERN_REGEX = r"^\s*([1-9][0-9]*x[1-9][0-9]*|[1-9][0-9]*:[1-9][0-9]*|1xchannel|channelx1|head|neuron)\s*$"
SCHEMA_URL = "https://json-schema.org/draft/2020-12/schema"
PROGRESSIVE_SUFFIX = "_progressive"
PATTERN_LOCK = "pattern_lock"


@dataclass(frozen=True)
class PruningType:
    """A parsed `pruning_type`: the score criterion, and whether new units are pruned progressively.

    `pattern_lock` has no criterion: it keeps the zeros present at the start and prunes nothing new.
    """

    name: str
    criterion: str | None
    progressive: bool

    @property
    def lock(self) -> bool:
        return self.criterion is None


def parse_pruning_type(name: str) -> PruningType:
    """The one parser of pruning types: `CRITERION[_progressive]` (criteria registered in `criteria.py`) or
    `pattern_lock`. Raises ValueError naming the valid types."""
    from prunecli.sparsity.criteria import criterion_names

    if name == PATTERN_LOCK:
        return PruningType(name, None, False)
    progressive = name.endswith(PROGRESSIVE_SUFFIX)
    base = name[: -len(PROGRESSIVE_SUFFIX)] if progressive else name
    if base not in criterion_names():
        raise ChoiceError(f"{name!r} is not a valid `pruning_type`", pruning_types())
    return PruningType(name, base, progressive)


def pruning_types() -> list[str]:
    """Every valid `pruning_type`: each registered criterion, its `_progressive` form, and pattern_lock."""
    from prunecli.sparsity.criteria import criterion_names

    names = list(criterion_names())
    return [*names, PATTERN_LOCK, *(n + PROGRESSIVE_SUFFIX for n in names)]


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as err:
        raise ValueError(f"not a valid regular expression: {err}") from None
    return value


def _pattern(value: str) -> str:
    try:
        parse_pattern(value)
    except PatternError as err:
        raise ValueError(str(err)) from None
    return value.strip()


def _pruning_type(value: str) -> str:
    parse_pruning_type(value)
    return value


def _frequency(value: int) -> int:
    if value == 0 or value < -1:
        raise ValueError("must be >= 1 (optimizer steps between pruning events) or -1 (about 40 events)")
    return value


#: What a key's declaration (`prunecli.settings`) cannot say: parsers of the key's own syntax.
_KEY_CHECKS: dict[str, dict[str, Any]] = {
    "pattern": {"checks": (AfterValidator(_pattern),), "schema": {"pattern": PATTERN_REGEX}},
    "pruning_type": {"checks": (AfterValidator(_pruning_type),)},
    "pruning_frequency": {"checks": (AfterValidator(_frequency),)},
    "op_names": {"item_checks": (AfterValidator(_regex),)},
    "excluded_op_names": {"item_checks": (AfterValidator(_regex),)},
    "pruning_op_types": {"checks": (Field(min_length=1),)},
}


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: Every key of a pruning group with its built-in default, built from the settings (the one home of the recipe's
#: keys, defaults, ranges and help), so `Pruner(model, {...})` from Python and `prunecli prune` prune the same
#: layers.
GroupSettings = create_model(
    "GroupSettings", __base__=_Frozen, __doc__="Every key of a pruning group, resolved (no key unset).",
    **{key: setting_field(setting, **_KEY_CHECKS.get(key, {})) for key, setting in GROUP_SETTINGS.items()},
)


#: The built-in defaults, JSON-able (read from GroupSettings, never restated).
DEFAULTS: dict[str, Any] = GroupSettings().model_dump(mode="json")
KEYS = tuple(GroupSettings.model_fields)
#: Option names that differ from their recipe key: {"pruning_pattern": "pattern"}.
OPTION_NAMES = {setting.name: key for key, setting in GROUP_SETTINGS.items() if setting.name != key}


_LAYERS_FIELD = (
    list[Annotated[str, Field(strict=True)]] | None,
    Field(None, description="Written by prunecli in prune_recipe.json: the layers the group pruned. When present, "
          "the group must match exactly these layers."),
)


class _GroupBase(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    @field_validator("layers", mode="before", check_fields=False)
    @classmethod
    def _layers_not_string(cls, value: Any) -> Any:
        return not_a_string(value)


#: One group as written in a recipe: every key of GroupSettings, optional (None: not set here), plus `layers`.
PruningGroup = create_model(
    "PruningGroup", __base__=_GroupBase, __doc__="One group of layers and how to prune them; unset keys inherit.",
    **{key: setting_field(setting, optional=True, **_KEY_CHECKS.get(key, {}))
       for key, setting in GROUP_SETTINGS.items()},
    layers=_LAYERS_FIELD,
)


class Recipe(PruningGroup):  # type: ignore[misc, valid-type]
    """A whole recipe: top-level defaults plus optional local groups in `pruning_configs`."""

    schema_: str | None = Field(None, alias="$schema", description="Ignored: lets editors find the schema.")
    description: str | None = Field(None, description="One line on what the recipe is for (`prunecli recipes` "
                                    "shows it); the pruner does not read it.")
    pruning_configs: list[PruningGroup] | None = Field(  # type: ignore[valid-type]
        None, description="Local groups; a key set in a group wins over the top-level one."
    )
    excluded_heads: list[str] | None = Field(
        None, description="Written by prunecli in prune_recipe.json (the classification head it never prunes); "
        "ignored on input."
    )
    pruned_units: list[dict[str, Any]] | None = Field(
        None, description="Written by prunecli in prune_recipe.json: the heads or neurons each block of a head "
        "or neuron group lost; ignored on input."
    )
    computed_from_epochs: dict[str, Any] | None = Field(
        None, description="Written by prunecli in prune_recipe.json: the epochs and steps per epoch the step "
        "window was computed from; ignored on input."
    )
    training: TrainingSettings | None = Field(
        None, description="The training method the recipe was made with: `prunecli prune` options (distillation, "
        "learning-rate shape) whose defaults it sets; an option given on the command line wins."
    )
    _source: str | None = PrivateAttr(default=None)

    @property
    def source(self) -> str | None:
        """The file the recipe came from (None for dicts and defaults)."""
        return self._source

    @classmethod
    def from_dict(cls, data: Any, source: str | None = None) -> Recipe:
        """Validate a parsed JSON object; every failure is a RecipeError naming the JSON path."""
        if not isinstance(data, dict):
            raise RecipeError(
                f"a recipe is a JSON object, got {type(data).__name__}",
                'Start from {"target_sparsity": 0.9, "pattern": "4x1"} or see docs/recipes.md.',
                source=source,
            )
        try:
            recipe = cls.model_validate(data)
        except ValidationError as err:
            raise _error(err, source) from None
        recipe._source = source
        # cross-key checks (N:M limit, steps, per-layer bounds); an unset end_step may still be filled in
        # (`prune` computes it from epochs), so start_step is compared only with an end_step that was set
        recipe.resolve(end_step_final=False)
        return recipe

    def to_dict(self) -> dict[str, Any]:
        """The keys that are set, JSON-able, as they would be written in a file."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def with_globals(self, **values: Any) -> Recipe:
        """A copy whose top-level keys are overridden by the non-None `values` (command-line options).

        Local groups still win over these. An option's name is accepted for its key where the two differ
        (`pruning_pattern` for `pattern`, as the settings declare). An unknown name is a bug in the caller
        (TypeError); a bad value is the user's (RecipeError attributed to the command line).
        """
        for option_name, key in OPTION_NAMES.items():
            if option_name in values:
                given = values.pop(option_name)
                if values.get(key) is None:
                    values[key] = given
        unknown = sorted(set(values) - set(KEYS))
        if unknown:
            raise TypeError(f"with_globals() got unknown recipe keys {unknown}")
        overrides = {k: v for k, v in values.items() if v is not None}
        if not overrides:
            return self
        try:
            PruningGroup.model_validate(overrides)
        except ValidationError as err:
            raise _error(err, "command-line options") from None
        merged = self.to_dict()
        merged.update(overrides)
        return Recipe.from_dict(merged, source=self.source)

    def with_steps(self, steps: dict[str, int], *, pruning_frequency: int | None = None) -> Recipe:
        """The recipe of a run: `steps` (start_step, end_step, pruning_frequency computed from the run's epochs)
        fill the top level only where the recipe does not set them; then an explicit `pruning_frequency`
        overrides the top level (-1, "about 40 events", is what an unset frequency means: it does not override
        a recipe's own). A group's own keys win over both. `prunecli prune` and `PruningCallback` both use it.
        """
        fill = {key: value for key, value in steps.items() if getattr(self, key, None) is None}
        explicit = None if pruning_frequency == -1 else pruning_frequency
        return self.with_globals(**fill).with_globals(pruning_frequency=explicit)

    def resolve(self, *, end_step_final: bool = True) -> list[ResolvedGroup]:
        """Every group with every key filled (group > top-level > defaults), cross-checked.

        With `end_step_final=False` (validation while loading), a start_step is not compared with the
        default end_step: the caller may still fill end_step in.
        """
        groups = self.pruning_configs if self.pruning_configs else [None]
        resolved = []
        for index, group in enumerate(groups):
            values: dict[str, Any] = {}
            origin: dict[str, str] = {}
            gpath = f"pruning_configs[{index}]" if group is not None else ""
            for key in KEYS:
                local = getattr(group, key) if group is not None else None
                top = getattr(self, key)
                if local is not None:
                    values[key], origin[key] = local, f"{gpath}.{key}"
                elif top is not None:
                    values[key], origin[key] = top, key
                else:
                    origin[key] = gpath  # left to GroupSettings' default
            layers = group.layers if group is not None else self.layers
            settings = GroupSettings(**values)
            _check_group(settings, origin, self.source, end_step_final=end_step_final)
            resolved.append(ResolvedGroup(index=index, path=gpath, layers=tuple(layers) if layers is not None
                                          else None, **settings.model_dump()))
        return resolved


class ResolvedGroup(GroupSettings):
    """A group with every key set. `path` is its JSON path (`""` when made of the top-level keys)."""

    index: int
    path: str
    layers: tuple[str, ...] | None = None

    def key_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    @property
    def kind(self) -> PruningType:
        """The parsed pruning type (criterion, progressive, lock)."""
        return parse_pruning_type(self.pruning_type)

    def to_dict(self) -> dict[str, Any]:
        """The recipe keys of this group, JSON-able (no index/path; `layers` only when known)."""
        return self.model_dump(mode="json", exclude={"index", "path"}, exclude_none=True)


def _error(err: ValidationError, source: str | None) -> RecipeError:
    keys = {model: [f.alias or name for name, f in model.model_fields.items()] for model in (PruningGroup, Recipe)}
    return recipe_error(err, source, group_keys=keys[PruningGroup], recipe_keys=keys[Recipe],
                        block_keys={"training": list(TRAINING_KEYS)})


def _check_group(settings: GroupSettings, origin: dict[str, str], source: str | None, *,
                 end_step_final: bool = True) -> None:
    """Checks that involve several keys, made on the resolved values, blamed on the key that was set."""
    values = settings.model_dump()

    def blame(key: str, other: str) -> str:
        """The path of `key` if the recipe set it, else of `other` (a default cannot be the culprit)."""
        return origin[key] if origin[key].endswith(key) else origin[other]

    pattern = parse_pattern(values["pattern"])
    target = values["target_sparsity"]
    if isinstance(pattern, StructurePattern):
        kind = parse_pruning_type(values["pruning_type"])
        if kind.progressive or kind.lock:
            raise RecipeError(
                f"pattern {pattern.name} removes whole {pattern.name}s at each event; pruning_type "
                f"{values['pruning_type']} does not apply to it",
                "Use a plain criterion (snip_momentum, snip, magnitude, gradient) for head and neuron groups.",
                path=blame("pruning_type", "pattern"),
                source=source,
            )
    lo, hi = values["min_sparsity_ratio_per_op"], values["max_sparsity_ratio_per_op"]
    if not parse_pruning_type(values["pruning_type"]).lock:
        if isinstance(pattern, NMPattern) and target > pattern.max_sparsity + 1e-9:
            set_here = origin["target_sparsity"].endswith("target_sparsity")
            raise RecipeError(
                f"{'' if set_here else 'the default '}target_sparsity {target} is above what pattern "
                f"{pattern.name} allows ({pattern.max_sparsity:g}: {pattern.n} of every {pattern.m} weights are kept)",
                f"Use a target <= {pattern.max_sparsity:g}, or a pattern that keeps fewer weights "
                f"(N:M keeps N; Intel Neural Compressor counted N as the pruned ones).",
                path=blame("target_sparsity", "pattern"),
                source=source,
            )
        if target > hi + 1e-12:
            raise RecipeError(
                f"target_sparsity {target} is above max_sparsity_ratio_per_op {hi}: no layer may exceed {hi}, "
                "so the group cannot reach its target",
                "Raise max_sparsity_ratio_per_op or lower target_sparsity.",
                path=blame("target_sparsity", "max_sparsity_ratio_per_op"),
                source=source,
            )
        if lo > target + 1e-12:
            raise RecipeError(
                f"min_sparsity_ratio_per_op {lo} is above target_sparsity {target}",
                "Every layer would exceed the group's target; lower min_sparsity_ratio_per_op.",
                path=blame("min_sparsity_ratio_per_op", "target_sparsity"),
                source=source,
            )
    if values["initial_sparsity"] > target + 1e-12:
        raise RecipeError(
            f"initial_sparsity {values['initial_sparsity']} is above target_sparsity {target}",
            "The first event prunes initial_sparsity at once; the schedule then grows it to the target.",
            path=blame("initial_sparsity", "target_sparsity"),
            source=source,
        )
    end_step_set = origin["end_step"].endswith("end_step")
    if values["start_step"] > values["end_step"] and (end_step_final or end_step_set):
        raise RecipeError(
            f"start_step {values['start_step']} is after end_step {values['end_step']}",
            "Pruning events run from start_step to end_step (equal values: oneshot).",
            path=blame("end_step", "start_step"),
            source=source,
        )


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


class _DuplicateKey(ValueError):
    pass


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a JSON recipe: a file, or the name of a recipe shipped with prunecli (`mixed`,
    `best/sst2_4x1`; `prunecli recipes` lists them). An existing file wins over a shipped name. Syntax
    errors name the line and column."""
    from prunecli.sparsity.shipped import shipped_recipe, shipped_recipes

    file: Any = Path(path)
    source = str(path)
    if not file.exists() and (shipped := shipped_recipe(source)) is not None:
        file, source = shipped, str(shipped)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError("file not found, and no shipped recipe has that name",
                          f"Give a recipe file's path or a shipped recipe's name: {', '.join(shipped_recipes())} "
                          "(`prunecli recipes` describes them).", source=source) from None
    except (OSError, UnicodeDecodeError) as err:
        raise RecipeError(f"cannot read the file: {err}", source=source) from None
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as err:
        raise RecipeError(
            f"JSON syntax error at line {err.lineno}, column {err.colno}: {err.msg}",
            "Recipes are strict JSON: double quotes, no trailing commas, no comments.",
            source=source,
        ) from None
    except _DuplicateKey as err:
        raise RecipeError(f"the key `{err}` appears twice in one object", "Keep one of them.", source=source) from None
    return Recipe.from_dict(data, source=source)


def recipe_json_schema() -> dict[str, Any]:
    """The JSON Schema of recipes, generated from the validating model (defaults annotated)."""
    generated = Recipe.model_json_schema(by_alias=True)
    schema = {"$schema": SCHEMA_URL, **generated, "title": "prunecli pruning recipe"}
    schema["description"] = (
        "Training-time pruning recipe for prunecli. Top-level keys are global defaults; each entry of "
        "pruning_configs is a group of layers whose own keys win. See docs/recipes.md."
    )
    for props in (schema["properties"], schema["$defs"]["PruningGroup"]["properties"]):
        for key, default in DEFAULTS.items():
            props[key]["default"] = default
    return schema
