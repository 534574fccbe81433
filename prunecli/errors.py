"""Errors a user can cause and fix.

`UserError` (and subclasses) are turned by the CLI into a one-paragraph message with a hint
and exit code 2, never a traceback. Any other exception means a bug in prunecli and
propagates as usual.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input: a wrong option, a missing file, an invalid recipe, unreachable data."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.message if not self.hint else f"{self.message}\nHint: {self.hint}"


class RecipeError(UserError):
    """An invalid pruning recipe; `path` is the JSON path of the offending key (e.g. `pruning_configs[1].pattern`)."""

    def __init__(self, message: str, hint: str | None = None, *, path: str = "", source: str | None = None):
        where = f"{source}: " if source else ""
        at = f" at `{path}`" if path else ""
        super().__init__(f"{where}invalid recipe{at}: {message}", hint)
        self.path = path
        self.source = source


class DataError(UserError):
    """Training/evaluation data cannot be found or read as expected."""


class CheckpointError(UserError):
    """A model path or checkpoint is missing, truncated, corrupted or not a model."""
