"""Recipes: merge semantics, defaults, every user error with its JSON path, the schema, shipped recipes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prunecli.errors import RecipeError
from prunecli.sparsity.recipe import DEFAULTS, KEYS, Recipe, load_recipe, pruning_types, recipe_json_schema

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def error_of(data, source="r.json") -> RecipeError:
    with pytest.raises(RecipeError) as info:
        Recipe.from_dict(data, source=source)
    return info.value


def test_defaults_are_inc_weight_pruning_config():
    (group,) = Recipe.from_dict({}).resolve()
    assert group.to_dict() == DEFAULTS
    assert group.path == "" and group.index == 0
    assert DEFAULTS["pattern"] == "4x1" and DEFAULTS["pruning_type"] == "snip_momentum"
    assert DEFAULTS["max_sparsity_ratio_per_op"] == 0.98 and DEFAULTS["pruning_op_types"] == ["Linear"]


def test_group_wins_over_top_level_which_wins_over_defaults():
    recipe = Recipe.from_dict(
        {
            "target_sparsity": 0.7,
            "pattern": "1x1",
            "excluded_op_names": ["pooler"],
            "pruning_configs": [
                {"op_names": ["query"], "pattern": "2:4", "target_sparsity": 0.5},
                {"op_names": ["key"]},
            ],
        }
    )
    first, second = recipe.resolve()
    assert (first.pattern, first.target_sparsity, first.excluded_op_names) == ("2:4", 0.5, ("pooler",))
    assert (second.pattern, second.target_sparsity, second.op_names) == ("1x1", 0.7, ("key",))
    assert second.pruning_scope == "global" and second.path == "pruning_configs[1]"
    json.dumps([g.to_dict() for g in recipe.resolve()])  # JSON-able


def test_with_globals_overrides_top_level_but_not_groups():
    recipe = Recipe.from_dict({"target_sparsity": 0.7, "pruning_configs": [{"target_sparsity": 0.5}, {}]})
    cli = recipe.with_globals(target_sparsity=0.8, pruning_pattern="1xchannel", pruning_scope=None, start_step=3,
                              end_step=9)
    first, second = cli.resolve()
    assert first.target_sparsity == 0.5 and second.target_sparsity == 0.8
    assert first.pattern == second.pattern == "1xchannel"
    assert second.pruning_scope == "global" and (second.start_step, second.end_step) == (3, 9)
    assert recipe.resolve()[1].target_sparsity == 0.7  # the original is unchanged
    assert recipe.with_globals(target_sparsity=None) is recipe


def test_with_globals_errors():
    recipe = Recipe.from_dict({}, source="r.json")
    with pytest.raises(RecipeError) as info:
        recipe.with_globals(pattern="3x")
    assert info.value.path == "pattern" and info.value.source == "command-line options"
    with pytest.raises(RecipeError):
        recipe.with_globals(pattern="2:4")  # the default target 0.9 is above what 2:4 allows
    assert recipe.with_globals(pattern="2:4", target_sparsity=0.5).resolve()[0].pattern == "2:4"
    with pytest.raises(TypeError):
        recipe.with_globals(learning_rate=1.0)


@pytest.mark.parametrize(
    ("data", "path", "needle", "hint"),
    [
        ({"patern": "4x1"}, "patern", "unknown key", "Did you mean `pattern`?"),
        ({"pruning_configs": [{}, {"targt_sparsity": 0.5}]}, "pruning_configs[1].targt_sparsity", "unknown key",
         "`target_sparsity`"),
        ({"pruning_configs": [{}, {"pattern": "3x"}]}, "pruning_configs[1].pattern", "unknown pattern", "4x1"),
        ({"pattern": "4:4"}, "pattern", "N < M", None),
        ({"pattern": "6:4"}, "pattern", "N < M", None),
        ({"pattern": 4}, "pattern", "valid string", None),
        ({"pattern": "2:4", "target_sparsity": 0.6}, "target_sparsity", "above what pattern 2:4 allows", "N:M keeps N"),
        ({"pattern": "2:4"}, "pattern", "the default target_sparsity 0.9", None),
        ({"target_sparsity": 1.0}, "target_sparsity", "less than 1", None),
        ({"target_sparsity": -0.1}, "target_sparsity", "greater than or equal to 0", None),
        ({"target_sparsity": "0.9"}, "target_sparsity", "valid number", None),
        ({"start_step": 1.5}, "start_step", "valid integer", None),
        ({"end_step": -1}, "end_step", "greater than or equal to 0", None),
        ({"start_step": 10, "end_step": 5}, "end_step", "after end_step", None),
        ({"target_sparsity": 0.9, "max_sparsity_ratio_per_op": 0.8}, "target_sparsity", "above max_sparsity", None),
        ({"pruning_frequency": 0}, "pruning_frequency", "-1", None),
        ({"pruning_type": "snip_momentm"}, "pruning_type", "not a valid", "Did you mean `snip_momentum`?"),
        ({"pruning_scope": "globl"}, "pruning_scope", "not a valid", "`global`"),
        ({"sparsity_decay_type": "exponential"}, "sparsity_decay_type", "not a valid", "exp"),
        ({"criterion_reduce_type": "avg"}, "criterion_reduce_type", "not a valid", "mean"),
        ({"pruning_op_types": ["Conv2d"]}, "pruning_op_types[0]", "not a valid", "Conv1D"),
        ({"pruning_op_types": []}, "pruning_op_types", "at least 1", None),
        ({"op_names": ".*output"}, "op_names", 'list of strings, e.g. [".*output"]', None),
        ({"pruning_configs": [{"op_names": ["ok", "(bad"]}]}, "pruning_configs[0].op_names[1]", "regular expression",
         None),
        ({"max_sparsity_ratio_per_op": 0.5}, "max_sparsity_ratio_per_op", "above max_sparsity_ratio_per_op", None),
        ({"min_sparsity_ratio_per_op": 0.95}, "min_sparsity_ratio_per_op", "above target_sparsity", None),
        ({"pruning_configs": {"pattern": "4x1"}}, "pruning_configs", "valid list", None),
    ],
)
def test_bad_recipes_name_the_key_and_path(data, path, needle, hint):
    err = error_of(data)
    assert err.path == path
    assert needle in err.message, err.message
    assert err.message.startswith("r.json: invalid recipe at `" + path + "`")
    assert err.exit_code == 2
    if hint:
        assert hint in (err.hint or ""), err.hint


def test_recipe_must_be_an_object():
    assert "JSON object" in error_of([1, 2]).message


def test_schema_key_and_informational_keys_are_accepted():
    recipe = Recipe.from_dict({"$schema": "./schema.json", "excluded_heads": ["classifier"], "target_sparsity": 0.5})
    assert recipe.resolve()[0].target_sparsity == 0.5
    assert recipe.to_dict()["$schema"] == "./schema.json"


def test_load_recipe_reports_json_syntax_with_line_and_column(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "pattern": "4x1",\n  "target_sparsity": 0.9,\n}\n')
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert "line 4, column 1" in info.value.message and str(path) in info.value.message
    path.write_text('{"pattern": "4x1", "pattern": "2:4"}')
    with pytest.raises(RecipeError, match="appears twice"):
        load_recipe(path)
    with pytest.raises(RecipeError, match="file not found"):
        load_recipe(tmp_path / "missing.json")
    path.write_text('{"pruning_configs": [{"patern": "4x1"}]}')
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert info.value.source == str(path) and info.value.path == "pruning_configs[0].patern"


def test_committed_schema_equals_the_generated_one():
    committed = json.loads((RECIPES / "schema.json").read_text())
    assert committed == recipe_json_schema(), "regenerate with: prunecli schema -o recipes/schema.json"


def test_schema_describes_every_key_and_forbids_unknown_ones():
    schema = recipe_json_schema()
    group = schema["$defs"]["PruningGroup"]
    assert schema["additionalProperties"] is False and group["additionalProperties"] is False
    for key in KEYS:
        assert key in group["properties"] and key in schema["properties"]
        assert group["properties"][key]["default"] == DEFAULTS[key]
        assert group["properties"][key]["description"]
    assert "$schema" in schema["properties"] and "pruning_configs" in schema["properties"]
    assert set(group["properties"]["pruning_type"]["examples"]) <= set(pruning_types())


def test_cli_schema_command_prints_the_schema(tmp_path):
    from typer.testing import CliRunner

    from prunecli.cli.app import app

    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.output) == recipe_json_schema()


EXPECTED = {
    "mrpc_2in4.json": ("2:4", 0.5, "snip_momentum", 50),
    "sst2_2in4.json": ("2:4", 0.5, "snip_momentum", 500),
    "mrpc_4x1.json": ("4x1", 0.9, "snip_momentum", 50),
    "sst2_4x1.json": ("4x1", 0.9, "snip_momentum", 500),
    "mrpc_1xchannel.json": ("1xchannel", 0.6, "snip_momentum_progressive", 50),
    "sst2_1xchannel.json": ("1xchannel", 0.6, "snip_momentum_progressive", 500),
}


def test_every_shipped_recipe_is_valid():
    files = sorted(p.name for p in RECIPES.glob("*.json") if p.name != "schema.json")
    assert set(EXPECTED) | {"mixed.json"} <= set(files)
    schema_keys = set(recipe_json_schema()["properties"])
    for name in files:
        data = json.loads((RECIPES / name).read_text())
        assert set(data) <= schema_keys
        groups = load_recipe(RECIPES / name).resolve()
        if name in EXPECTED:
            (g,) = groups
            assert (g.pattern, g.target_sparsity, g.pruning_type, g.pruning_frequency) == EXPECTED[name]
            assert g.excluded_op_names == ("pooler",) and g.pruning_scope == "global"
            assert "start_step" not in data and "end_step" not in data  # computed from epochs by `prune`


def test_mixed_recipe_is_the_reference_configuration():
    first, second = load_recipe(RECIPES / "mixed.json").resolve()
    assert first.op_names == (".*output", ".*intermediate") and first.pattern == "1x1"
    assert first.pruning_scope == "local" and first.target_sparsity == 0.9
    assert second.op_names == (".*query", ".*key", ".*value") and second.pattern == "4x1"
    assert second.pruning_scope == "global"
    assert (second.min_sparsity_ratio_per_op, second.max_sparsity_ratio_per_op) == (0.5, 0.98)
    assert first.pruning_type == second.pruning_type == "snip_momentum"
    assert first.sparsity_decay_type == second.sparsity_decay_type == "exp"
    assert first.pruning_op_types == second.pruning_op_types == ("Linear",)
    assert first.pruning_frequency == -1  # about 40 events, as the reference's --pruning_frequency -1


def test_start_step_without_end_step_loads_and_is_checked_once_steps_are_known(tmp_path):
    from prunecli.config import PruneConfig
    from prunecli.pipelines.prune import run_recipe

    path = tmp_path / "late_start.json"
    path.write_text('{"start_step": 10, "target_sparsity": 0.5}')
    recipe = load_recipe(path)  # end_step is not known yet: `prune` computes it from the epochs
    with pytest.raises(RecipeError, match="after end_step") as info:
        recipe.resolve()  # used as is (Python API), end_step is the default 0
    assert info.value.path == "start_step"
    unwindowed = run_recipe(PruneConfig(recipe=str(path)))  # loads: the window is not known yet
    built = unwindowed.with_steps({"start_step": 0, "end_step": 40, "pruning_frequency": 5})
    [group] = built.resolve()
    assert (group.start_step, group.end_step, group.pruning_frequency) == (10, 40, 5)
    with pytest.raises(RecipeError, match="after end_step"):
        unwindowed.with_steps({"start_step": 0, "end_step": 8, "pruning_frequency": 1})


def test_training_block_fills_only_options_not_given():
    from prunecli.config import DistillConfig, PruneConfig, RunConfig
    from prunecli.pipelines.prune import apply_training

    recipe = Recipe.from_dict({"pattern": "4x1", "training": {"distill_type": "logits_kl", "distill_alpha": 1.0,
                                                              "lr_rewind_ratio": 0.1}})
    assert recipe.with_globals(target_sparsity=0.8).training == recipe.training  # survives the command line's merge
    cfg = RunConfig(prune=PruneConfig(), distill=DistillConfig(distill_alpha=0.3))
    # from Python: a value other than the default counts as given
    new, applied = apply_training(cfg, recipe.training)
    assert applied == {"distill_type": "logits_kl", "lr_rewind_ratio": 0.1}
    assert (new.distill.distill_type, new.distill.distill_alpha, new.prune.lr_rewind_ratio) == ("logits_kl", 0.3, 0.1)
    assert cfg.distill.distill_type == "hidden_mse"  # the input configuration is not changed
    # from the command line: only the options the user set win, whatever their value
    new, applied = apply_training(cfg, recipe.training, frozenset({"distill_type"}))
    assert applied == {"distill_alpha": 1.0, "lr_rewind_ratio": 0.1} and new.distill.distill_type == "hidden_mse"
    assert apply_training(cfg, None) == (cfg, {})


def test_best_recipes_are_the_reference_recipe_plus_the_method_that_won():
    """recipes/best/<task>_<pattern>.json: the reference recipe's pruning keys unchanged, with the training block of
    the bench method measured best (bench/run_glue_bench.py METHODS; figures in bench/NOTES.md)."""
    from bench.run_glue_bench import METHODS

    winners = {"sst2_4x1.json": ("kd", {"distill_loss_weight": 2.0})}  # the reference's SST-2 weight
    best = sorted(p.name for p in (RECIPES / "best").glob("*.json"))
    assert best == sorted(winners)
    for name, (method, extra) in winners.items():
        data = json.loads((RECIPES / "best" / name).read_text())
        reference = json.loads((RECIPES / name).read_text())
        training = data.pop("training")
        def pruning(recipe):
            return {k: v for k, v in recipe.items() if k not in ("$schema", "description")}

        assert pruning(data) == pruning(reference)
        flags = METHODS[method]
        as_options = {flags[i].lstrip("-"): float(flags[i + 1]) if flags[i + 1][0].isdigit() else flags[i + 1]
                      for i in range(0, len(flags), 2)}
        assert training == {**as_options, **extra}
        load_recipe(RECIPES / "best" / name)  # valid, $schema path included
