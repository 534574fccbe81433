"""`prunecli schema`: the JSON Schema of pruning recipes, for editors to validate recipes with."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

NAME = "schema"


def command(
    output: Annotated[str | None, typer.Option("--output", "-o", help="Write the schema to this file.")] = None,
) -> None:
    """Print the JSON Schema of pruning recipes (for editor validation)."""
    from prunecli.sparsity.recipe import recipe_json_schema

    text = json.dumps(recipe_json_schema(), indent=2) + "\n"
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
