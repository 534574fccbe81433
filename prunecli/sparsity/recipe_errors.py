"""Recipe validation errors for people: the first pydantic error as a RecipeError with its JSON path and a hint.

Unknown keys get the closest valid key, a value outside a set of choices the closest choice, and every
key a short example of what it takes.
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Any

from pydantic import ValidationError

from prunecli.errors import RecipeError


class ChoiceError(ValueError):
    """A value outside a set of choices (raised by validators); `choices` feed the did-you-mean hint."""

    def __init__(self, message: str, choices: list[str]):
        super().__init__(message)
        self.choices = choices


def _json_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def recipe_error(err: ValidationError, source: str | None, *, group_keys: list[str],
                 recipe_keys: list[str], block_keys: dict[str, list[str]] | None = None) -> RecipeError:
    """The first validation error as a RecipeError, with a did-you-mean hint where one helps.

    `block_keys`: the keys of a top-level object that is not a group (the recipe's `training` block)."""
    e = err.errors(include_url=False)[0]
    loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
    path = _json_path(loc)
    key = loc[-1] if loc else ""
    more = f" ({len(err.errors()) - 1} more problem(s) after this one)" if len(err.errors()) > 1 else ""
    if e["type"] == "extra_forbidden":
        in_group = len(loc) >= 3 and loc[0] == "pruning_configs"
        in_block = len(loc) >= 2 and loc[0] in (block_keys or {})
        valid = group_keys if in_group else (block_keys or {})[loc[0]] if in_block else recipe_keys
        close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.6)
        listed = ", ".join(k for k in valid if k != "$schema")
        hint = f"Did you mean `{close[0]}`?" if close else f"Valid keys: {listed}"
        return RecipeError(f"unknown key `{key}`{more}", hint, path=path, source=source)
    value = e.get("input")
    choices = None
    if e["type"] == "literal_error":
        choices = re.findall(r"'([^']*)'", e["ctx"]["expected"])
    elif e["type"] == "value_error" and isinstance(e["ctx"]["error"], ChoiceError):
        choices = e["ctx"]["error"].choices
    if choices is not None:
        close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.5)
        hint = (f"Did you mean `{close[0]}`? " if close else "") + "Valid values: " + ", ".join(choices)
        return RecipeError(f"{value!r} is not a valid `{_field_name(loc)}`{more}", hint, path=path, source=source)
    if e["type"] == "value_error":
        message = str(e["ctx"]["error"])
    else:
        message = e["msg"][0].lower() + e["msg"][1:]
    hint = _FIELD_HINTS.get(_field_name(loc))
    return RecipeError(f"`{_field_name(loc)}` = {json.dumps(value)}: {message}{more}", hint, path=path, source=source)


def _field_name(loc: tuple[Any, ...]) -> str:
    for part in reversed(loc):
        if isinstance(part, str):
            return part
    return ""


_FIELD_HINTS = {
    "target_sparsity": "A fraction of weights set to zero, e.g. 0.9 (90%).",
    "initial_sparsity": "A fraction in [0, target_sparsity], e.g. 0.7.",
    "min_sparsity_ratio_per_op": "A fraction in [0, 1), e.g. 0.5.",
    "max_sparsity_ratio_per_op": "A fraction in (0, 1], e.g. 0.98.",
    "pattern": 'Examples: "4x1", "1x1", "2:4", "1xchannel", "channelx1".',
    "pruning_frequency": "An integer number of optimizer steps, e.g. 50, or -1.",
    "start_step": "An integer optimizer step, e.g. 0.",
    "end_step": "An integer optimizer step, e.g. 1000.",
    "op_names": 'A list of regular expressions, e.g. [".*output", ".*intermediate"].',
    "excluded_op_names": 'A list of regular expressions, e.g. ["pooler"].',
    "pruning_op_types": 'A non-empty list of "Linear" and/or "Conv1D".',
}
