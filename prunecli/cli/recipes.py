"""`prunecli recipes`: the recipes shipped with prunecli, by the name `--recipe` accepts."""

from __future__ import annotations

NAME = "recipes"


def command() -> None:
    """List the shipped recipes: pass a name to --recipe (`--recipe mixed`) or copy one to start your own."""
    from rich.console import Console
    from rich.table import Table

    from prunecli.sparsity.shipped import describe_shipped

    table = Table(title="Shipped recipes (--recipe NAME)", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("patterns", no_wrap=True)
    table.add_column("target", justify="right", no_wrap=True)
    table.add_column("description", ratio=1)
    for row in describe_shipped():
        table.add_row(row["name"], ", ".join(row["patterns"]),
                      ", ".join(f"{t:g}" for t in row["target_sparsity"]), row["description"])
    Console().print(table)
