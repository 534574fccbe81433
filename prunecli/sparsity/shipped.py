"""The recipes shipped inside the package (`prunecli/recipes/`), found by name through importlib.resources.

A shipped recipe's name is its path under `prunecli/recipes/` without `.json` (`mixed`, `best/sst2_4x1`).
The repository's `recipes/` is a link to that folder, so a checkout and an installed wheel read the same files,
and `--recipe mixed`, `Pruner(model, "mixed")` and `prunecli demo` work without a checkout.
"""

from __future__ import annotations

import functools
from importlib.resources import files
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from importlib.resources.abc import Traversable

#: The JSON Schema of recipes lives beside them (for editors) and is no recipe.
SCHEMA_FILE = "schema.json"


@functools.cache
def shipped_recipes() -> dict[str, Traversable]:
    """Every shipped recipe file by name, sorted (read once: package files do not change while prunecli runs)."""
    found: dict[str, Traversable] = {}

    def walk(folder: Traversable, prefix: str) -> None:
        for entry in folder.iterdir():
            if entry.is_dir():
                walk(entry, f"{prefix}{entry.name}/")
            elif entry.name.endswith(".json") and entry.name != SCHEMA_FILE:
                found[prefix + entry.name.removesuffix(".json")] = entry

    walk(files("prunecli") / "recipes", "")
    return dict(sorted(found.items()))


def shipped_recipe(name: str) -> Traversable | None:
    """The shipped recipe called `name` (`mixed` or `mixed.json`), or None."""
    return shipped_recipes().get(name.removesuffix(".json"))


def describe_shipped() -> list[dict[str, Any]]:
    """One row per shipped recipe: name, its groups' patterns and target sparsities, and its description."""
    from prunecli.sparsity.recipe import load_recipe

    rows = []
    for name in shipped_recipes():
        recipe = load_recipe(name)
        groups = recipe.resolve(end_step_final=False)
        rows.append({
            "name": name,
            "patterns": list(dict.fromkeys(group.pattern for group in groups)),
            "target_sparsity": list(dict.fromkeys(group.target_sparsity for group in groups)),
            "description": recipe.description or "",
        })
    return rows
