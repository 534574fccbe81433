"""The `prunecli` application: the Typer app, the error boundary, and the command registry.

No training or pruning logic lives in `cli/`: each command module turns options into configuration,
calls one pipeline function (`prunecli.pipelines`) or library call and renders the result. torch and
transformers are imported only inside commands, so `prunecli --help` is instant. Help is laid out by
`prunecli.cli.help` so option names stay whole at 80 columns.
"""

from __future__ import annotations

import functools
import os
from typing import Annotated, Any

import typer

from prunecli.cli.help import Command, Group
from prunecli.errors import UserError


def _underscored(token: str) -> str:
    """Option names (and command names, choices) with dashes read as underscores."""
    return token.replace("-", "_")


app = typer.Typer(
    name="prunecli",
    cls=Group,
    help="Prune Hugging Face transformers classifiers: finetune, prune, evaluate, inspect, compact, export, "
         "benchmark.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # `--model-name-or-path` is read as `--model_name_or_path`: every option has both spellings, help shows one
    context_settings={"help_option_names": ["-h", "--help"], "token_normalize_func": _underscored},
)

_STATE = {"debug": False}


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr)


def handles_user_errors(fn):
    """Turn a UserError into a message with a hint and exit code 2 (a traceback only with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            if _STATE["debug"]:
                raise
            from rich.markup import escape

            console = _console(stderr=True)
            console.print(f"[bold red]Error:[/bold red] {escape(err.message)}", highlight=False, soft_wrap=True)
            if err.hint:
                console.print(f"[yellow]Hint:[/yellow] {escape(err.hint)}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=err.exit_code) from None
        except KeyboardInterrupt:
            _console(stderr=True).print("[yellow]Interrupted.[/yellow] Checkpoints already written are intact.")
            raise typer.Exit(code=130) from None

    return wrapper


def run_config(options: dict[str, Any]):
    """The RunConfig of a command's options (the options a command accepts only for compatibility dropped)."""
    from prunecli.cli.options import IGNORED
    from prunecli.config import split_options

    return split_options({k: v for k, v in options.items() if k not in IGNORED})


def explicit_options(ctx: typer.Context, options: dict[str, Any]) -> frozenset[str]:
    """The names among `options` that the user set (on the command line or through the environment), not
    left at their defaults: a recipe's `training` block fills only the others."""
    given = ("COMMANDLINE", "ENVIRONMENT")
    sources = {name: ctx.get_parameter_source(name) for name in options}
    return frozenset(name for name, source in sources.items() if source is not None and source.name in given)


def _version_callback(value: bool) -> None:
    if value:
        from prunecli import __version__

        typer.echo(f"prunecli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks for errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    _STATE["debug"] = debug or os.environ.get("PRUNECLI_DEBUG") == "1"


def _register() -> None:
    from prunecli.cli import benchmark, compact, demo, evaluate, export, finetune, inspect, prune, recipes, schema

    for module in (finetune, prune, evaluate, inspect, compact, export, benchmark, schema, recipes, demo):
        app.command(name=module.NAME, cls=Command)(handles_user_errors(module.command))


_register()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
