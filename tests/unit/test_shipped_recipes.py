"""Recipes shipped in the package: found by name through importlib.resources, valid, listed by `prunecli recipes`."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prunecli.cli.app import app
from prunecli.errors import RecipeError
from prunecli.sparsity.recipe import load_recipe, recipe_json_schema
from prunecli.sparsity.shipped import shipped_recipe, shipped_recipes

PACKAGED = files("prunecli") / "recipes"
REPO = Path(__file__).resolve().parents[2]


def test_shipped_recipes_are_the_package_files_and_each_validates():
    names = shipped_recipes()
    assert {"mixed", "compact", "heads_neurons", "best/sst2_4x1"} <= set(names)
    assert "schema" not in names
    on_disk = sorted(str(p.relative_to(Path(str(PACKAGED))).with_suffix("")).replace("\\", "/")
                     for p in Path(str(PACKAGED)).rglob("*.json") if p.name != "schema.json")
    assert sorted(names) == on_disk
    for name, resource in names.items():
        recipe = load_recipe(name)
        assert recipe.source == str(resource)
        assert recipe.description, f"{name}: a shipped recipe says what it is for"
        assert recipe.resolve(end_step_final=False)


def test_the_repository_recipes_folder_is_the_package_folder():
    assert (REPO / "recipes").resolve() == Path(str(PACKAGED)).resolve()
    committed = json.loads((PACKAGED / "schema.json").read_text(encoding="utf-8"))
    assert committed == recipe_json_schema(), "regenerate with: prunecli schema -o recipes/schema.json"


def test_a_name_a_name_with_json_and_a_path_find_the_same_recipe(tmp_path, monkeypatch):
    assert shipped_recipe("mixed.json") == shipped_recipe("mixed")
    by_path = load_recipe(REPO / "recipes" / "mixed.json")
    assert load_recipe("mixed").to_dict() == by_path.to_dict()
    # an existing file wins over a shipped name
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mixed").write_text('{"target_sparsity": 0.3, "pattern": "1x1"}', encoding="utf-8")
    assert load_recipe("mixed").target_sparsity == 0.3


def test_an_unknown_name_lists_the_shipped_names():
    with pytest.raises(RecipeError, match="no shipped recipe has that name") as info:
        load_recipe("mixd")
    for name in ("mixed", "compact", "best/sst2_4x1"):
        assert name in info.value.hint


def test_prune_with_an_unknown_recipe_name_exits_2_listing_the_names():
    result = CliRunner().invoke(app, ["prune", "--recipe", "mixd", "--task_name", "mrpc", "--dry_run",
                                      "--model_name_or_path", "bert-base-uncased", "--output_dir", "out"],
                                env={"COLUMNS": "80", "NO_COLOR": "1"})
    assert result.exit_code == 2, result.output
    assert "mixd" in result.output and "heads_neurons" in result.output and "Traceback" not in result.output


def test_recipes_command_lists_every_recipe_at_80_columns():
    result = CliRunner().invoke(app, ["recipes"], env={"COLUMNS": "80", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    for name in shipped_recipes():
        assert any(line.startswith(f"│ {name} ") for line in lines), name
    assert any("head, neuron" in line and "0.5" in line for line in lines)  # heads_neurons' groups and target
