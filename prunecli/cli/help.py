"""`prunecli COMMAND --help`: every option name whole, at any width down to 80 columns.

Typer's rich help lays options out in a table of seven columns and, at 80 columns in a non-terminal,
shortens long names (`--model_name_or_p…`) and labels every flag `<bool>`. This layout keeps two columns:
the option's names (never wrapped or cut; a negatable flag's two forms on two lines, a value's type after
the name, none after a flag) and its help with the default, in the same panels as Typer's.
"""

from __future__ import annotations

import inspect
from typing import Any

import typer.core

# Typer carries its own copy of click, so parameters are told apart by their attributes, not by click's classes.


def is_argument(param: Any) -> bool:
    return getattr(param, "param_type_name", "") == "argument"


def default_text(param: Any) -> str:
    """The default as a person reads it: `required`, the active form of a `--x/--no_x` flag, on/off, the value, or
    "" where there is none."""
    if getattr(param, "required", False):
        return "required"
    value = param.default
    if value is None or value == () or callable(value):
        return ""
    if getattr(param, "is_flag", False) and param.secondary_opts:
        return param.opts[0] if value else param.secondary_opts[0]
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _names(param: Any, ctx: Any) -> str:
    """The option's spellings (a `--no_x` form on its own line), and the type of value it takes; flags take none."""
    if is_argument(param):
        return param.name.upper()
    lines = [", ".join(param.opts), *param.secondary_opts]
    kind = None if getattr(param, "is_flag", False) else param.display_type_rich(ctx=ctx)
    if kind:
        lines[0] += " " + kind.strip("<>").upper()
    return "\n".join(lines)


def _help(param: Any) -> str:
    text = " ".join((getattr(param, "help", None) or "").split())
    default = default_text(param)
    if default == "required":
        return f"{text} [required]".strip()
    if default and default != "off" and getattr(param, "show_default", True) is not False:
        return f"{text} [default: {default}]".strip()
    return text


def _print_help(command: Any, ctx: Any, extra_panels: tuple[tuple[str, list[tuple[str, str]]], ...] = ()) -> None:
    """Usage, the docstring, then one panel per help panel of the parameters (and `extra_panels`: title and
    rows of two cells)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.padding import Padding
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False)
    console.print(Padding(Text(command.get_usage(ctx)), (1, 1)))
    if command.help:
        console.print(Padding(escape(inspect.cleandoc(command.help)), (0, 1, 1, 1)))
    panels: dict[str, list[tuple[str, str]]] = {}
    for param in command.get_params(ctx):
        if not getattr(param, "hidden", False):
            title = getattr(param, "rich_help_panel", None) or ("Arguments" if is_argument(param) else "Options")
            panels.setdefault(title, []).append((_names(param, ctx), _help(param)))
    for title, rows in [*panels.items(), *extra_panels]:
        table = Table(show_header=False, box=None, padding=(0, 1), pad_edge=False, expand=True)
        table.add_column(no_wrap=True, style="bold cyan")
        table.add_column(ratio=1, overflow="fold")
        for names, text in rows:
            table.add_row(Text(names), Text(text))
        console.print(Panel(table, title=title, title_align="left", border_style="dim"))


class Command(typer.core.TyperCommand):
    """A Typer command whose help keeps option names whole (see the module docstring)."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _print_help(self, ctx)


class Group(typer.core.TyperGroup):
    """The application's group, with the same help layout, then its commands."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                summary = inspect.cleandoc(command.help or "").split("\n\n")[0]
                rows.append((name, " ".join(summary.split())))
        _print_help(self, ctx, (("Commands", rows),))
