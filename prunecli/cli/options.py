"""The command-line options, built from the settings (`prunecli.settings`) and shared by the commands.

Each option is declared once, as a setting, with its type, default, range and help; this module only turns
settings into Typer options. The reference script's underscore spelling (`--model_name_or_path`) is the one
shown; the dashed one (`--model-name-or-path`) is accepted because the application normalises dashes in option
names to underscores (`prunecli.cli.app`), so help lists every option under one name.
"""

from __future__ import annotations

import functools
import inspect
import typing
from typing import Annotated, Any

import typer

from prunecli.settings import BY_NAME, DATA, DISTILL, OUT, PRUNE, SETTINGS, TRAINING, Setting, section

__all__ = ["DATA", "DISTILL", "OUT", "PRUNE", "TRAINING"]


def option(name: str, help: str, panel: str, *aliases: str, negatable: bool = False, **kw: Any) -> Any:
    """A Typer option spelt `--name` (plus `aliases`); `negatable`: a flag with a `--no_name` form."""
    spelling = f"--{name}/--no_{name}" if negatable else f"--{name}"
    return typer.Option(spelling, *aliases, help=help, rich_help_panel=panel, **kw)


_opt = option  # the spelling the other commands import


def _annotated(setting: Setting) -> Any:
    """The Annotated parameter type of a setting's option (None allowed where the setting takes it)."""
    annotation = setting.type | None if setting.accepts_none else setting.type
    help_text = setting.help
    if setting.recipe == "group":
        help_text += f" Default: the recipe's, else {setting.default}."
    return Annotated[annotation, option(setting.name, help_text, setting.option_panel, *setting.aliases,
                                        negatable=setting.negatable, hidden=setting.hidden)]


#: Every run option by name, as an Annotated parameter type.
OPTIONS: dict[str, Any] = {s.name: _annotated(s) for s in SETTINGS if s.section != "recipe"}


def _group(settings: typing.Iterable[Setting]) -> dict[str, Any]:
    return {s.name: OPTIONS[s.name] for s in settings}


ModelPath = OPTIONS["model_name_or_path"]
TaskName, DataDir, ValidationFile = OPTIONS["task_name"], OPTIONS["data_dir"], OPTIONS["validation_file"]
MaxLength, MaxTrainSamples = OPTIONS["max_length"], OPTIONS["max_train_samples"]
MaxSeqLength, DocStride = OPTIONS["max_seq_length"], OPTIONS["doc_stride"]
EvalBS, Seed, TrustRemote = OPTIONS["per_device_eval_batch_size"], OPTIONS["seed"], OPTIONS["trust_remote_code"]
OutputDir, Overwrite = OPTIONS["output_dir"], OPTIONS["overwrite_output_dir"]

# ---- option groups ------------------------------------------------------------------------------------
# Each maps a parameter name (the configuration field it fills) to its option; the default is the field's.
DATA_OPTIONS = _group(section("data"))
TRAINING_OPTIONS = _group(s for s in section("train") if s.option_panel == TRAINING and s.name != "model_name_or_path")
OUTPUT_OPTIONS = _group(s for s in section("train") if s.option_panel == OUT)
PRUNING_OPTIONS = _group(section("prune"))
DISTILL_OPTIONS = _group(section("distill"))

_IgnoredTrainFile = Annotated[
    str | None, option("train_file", "Accepted and ignored, so finetune's data options can be reused.", DATA,
                       hidden=True)
]
EVALUATE_DATA_OPTIONS = {
    **{k: v for k, v in DATA_OPTIONS.items() if k not in ("train_file", "max_train_samples")},
    "train_file": _IgnoredTrainFile,
}

# Accepted for compatibility with the reference script, which also had them; prunecli never pushes.
DoPrune = Annotated[bool, option("do_prune", "Accepted and ignored (the reference script needed it).", PRUNE)]
WithTracking = Annotated[bool, option("with_tracking", "Accepted for compatibility; use --report_to.", OUT,
                                      hidden=True)]
#: Accepted for compatibility with the reference script and ignored (not configuration).
COMPAT_OPTIONS = {"do_prune": DoPrune, "with_tracking": WithTracking}
IGNORED = tuple(COMPAT_OPTIONS)


def _default(name: str) -> Any:
    if name in COMPAT_OPTIONS:
        return False
    return BY_NAME[name].option_default  # a KeyError is a bug: every option is a setting


def with_options(*groups: dict[str, Any], defaults: dict[str, Any] | None = None):
    """Add the options of `groups` to a command function that takes them as `**options`.

    Typer reads a command's parameters from its signature, so the shared options are appended to the
    function's own signature once here instead of being written out in every command. Each default is
    the setting's (`defaults` overrides a few for one command, e.g. evaluate's batch size).
    """
    overrides = defaults or {}

    def decorate(fn):
        signature = inspect.signature(fn)
        hints = typing.get_type_hints(fn, include_extras=True)  # real objects, also under `from __future__`
        own = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in signature.parameters.values()
               if p.kind is not inspect.Parameter.VAR_KEYWORD]
        added = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                              default=overrides.get(name, _default(name)))
            for group in groups for name, annotation in group.items()
        ]

        @functools.wraps(fn)
        def command(**options):
            return fn(**options)

        command.__signature__ = signature.replace(parameters=[*own, *added])  # type: ignore[attr-defined]
        return command

    return decorate
