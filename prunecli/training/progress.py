"""What a run shows while it works: prunecli's log lines and the training progress (main process only)."""

from __future__ import annotations

import logging

from prunecli.errors import UserError

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR,
           "critical": logging.CRITICAL, "passive": logging.INFO}


def setup_logging(level: str = "info", is_main_process: bool = True) -> None:
    """prunecli logs at `level` to stderr (errors only on non-main processes); libraries stay at warning.

    transformers' and datasets' own progress bars are hidden unless `level` is debug: the training loop
    has its own.
    """
    key = (level or "info").lower()
    if key not in _LEVELS:
        raise UserError(f"--log_level {level!r} is not one of debug, info, warning, error.")
    from rich.console import Console
    from rich.logging import RichHandler

    handler = RichHandler(console=Console(stderr=True), show_time=False, show_path=False, markup=False)
    handler.setFormatter(logging.Formatter("%(message)s"))
    own = logging.getLogger("prunecli")
    own.handlers = [handler]
    own.setLevel(_LEVELS[key] if is_main_process else logging.ERROR)
    own.propagate = False

    import datasets
    import transformers

    library_level = logging.DEBUG if key == "debug" else logging.WARNING if is_main_process else logging.ERROR
    transformers.utils.logging.set_verbosity(library_level)
    datasets.utils.logging.set_verbosity(library_level)
    if key != "debug":
        transformers.utils.logging.disable_progress_bar()
        datasets.disable_progress_bars()


class Progress:
    """Progress on stderr, main process only: a live rich bar on a terminal; in a log file (CI, nohup), one
    plain line per 5% of the steps, since a live bar would show nothing until the run ends."""

    def __init__(self, total: int, completed: int, enabled: bool):
        self.progress = None
        self.console = None
        self.total = total
        self.every = max(1, total // 20)
        if not enabled:
            return
        from rich.console import Console

        self.console = Console(stderr=True)
        if self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                TextColumn("{task.fields[stats]}"), console=self.console,
            )
            self.task = self.progress.add_task("train", total=total, completed=completed, stats="")

    def __enter__(self):
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()

    def update(self, step: int, loss: float, lr: float, examples_per_second: float) -> None:
        stats = f"loss {loss:.4f}  lr {lr:.2e}  {examples_per_second:.1f} ex/s"
        if self.progress is not None:
            self.progress.update(self.task, completed=step, stats=stats)
        elif self.console is not None and (step % self.every == 0 or step == self.total):
            self.console.print(f"step {step}/{self.total}  {stats}", highlight=False)

    def note(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text, highlight=False)
