"""`prunecli inspect`: per-layer sparsity and structure of saved checkpoints, as tables, JSON or a bar chart.

All statistics come from `prunecli.report` (the same report `prune` writes as `sparsity_report.json`);
this module only chooses what to show and how. Every problem a user can cause (bad path, bad option,
missing matplotlib) is raised as a `UserError`, which the CLI turns into one message and exit code 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from prunecli.errors import UserError

PLOT_COLORS = {
    "attention": "#4C72B0", "ffn": "#DD8452", "linear": "#8172B3", "head": "#55A868", "conv": "#937860",
    "embedding": "#8C8C8C",
}


def run(
    path: str,
    as_json: bool = False,
    filter: str | None = None,
    sort: str = "name",
    plot: str | None = None,
    compare: str | None = None,
) -> dict:
    """Inspect `path` (or compare it with `compare`), print the result, optionally plot it; returns what was shown.

    Options are checked before any checkpoint is read, so a typo fails fast. `--filter` and `--sort` act on
    the listed layers; model-level figures always describe the whole checkpoint.
    """
    from prunecli import report as rep

    if sort not in ("name", "sparsity"):
        raise UserError(f"unknown --sort {sort!r}", "Use --sort name or --sort sparsity.")
    if plot:
        _check_plot_target(plot)
    import torch

    # The work is memory-bound reductions over ~1M-element tensors: one thread is as fast on an idle machine
    # and avoids OpenMP threads spinning against each other on a busy one (seconds instead of 0.2 s).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = rep.compare_reports(path, compare) if compare else rep.sparsity_report(path)
    finally:
        torch.set_num_threads(threads)  # in-process callers (tests, demo) keep their setting
    result = rep.select_layers(result, filter, sort)
    if plot:
        plot_sparsity(result, plot)
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        sys.stdout.flush()
        return result
    from rich.console import Console

    console = Console(highlight=False)
    if compare:
        rep.render_comparison(result, console)
    else:
        rep.render_report(result, console)
    if plot:
        console.print(f"Plot written to {plot}", markup=False)
    return result


def _check_plot_target(plot: str) -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as err:
        raise UserError("--plot needs matplotlib, which is not installed",
                        "pip install 'prunecli[plot]'") from err
    parent = Path(plot).expanduser().resolve().parent
    if not parent.is_dir():
        raise UserError(f"cannot write the plot to {plot}: folder {parent} does not exist")


def plot_sparsity(result: dict, file: str) -> None:
    """Draw per-layer sparsity as horizontal bars (one per layer, or A/B pairs for a comparison) into `file`.

    Uses a bare `matplotlib.figure.Figure`, so no pyplot state or GUI backend is touched.
    """
    from matplotlib.figure import Figure

    layers = result["layers"]
    names = [layer["name"] for layer in layers]
    height = max(3.0, 0.24 * len(names) * (2 if result.get("kind") == "compare" else 1) + 1.5)
    fig = Figure(figsize=(10, height), layout="constrained")
    ax = fig.add_subplot()
    positions = list(range(len(names)))
    if result.get("kind") == "compare":
        a = [layer["sparsity_a"] or 0.0 for layer in layers]
        b = [layer["sparsity_b"] or 0.0 for layer in layers]
        ax.barh([p - 0.2 for p in positions], a, height=0.4, label="A", color="#8C8C8C")
        ax.barh([p + 0.2 for p in positions], b, height=0.4, label="B", color="#4C72B0")
        ax.legend(loc="lower right")
        title = "Per-layer sparsity: A vs B"
    else:
        values = [layer["sparsity"] for layer in layers]
        colors = [PLOT_COLORS.get(layer["kind"], "#4C72B0") for layer in layers]
        ax.barh(positions, values, color=colors)
        from matplotlib.patches import Patch

        from prunecli.report import KIND_TITLES

        kinds = [kind for kind in KIND_TITLES if any(layer["kind"] == kind for layer in layers)]
        ax.legend(handles=[Patch(color=PLOT_COLORS[k], label=KIND_TITLES[k]) for k in kinds], loc="lower right")
        title = f"Per-layer sparsity (matmul element-wise {result['model']['matmul']['sparsity']:.4f})"
    ax.set_yticks(positions, names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("sparsity (share of zero weights)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    try:
        fig.savefig(Path(file).expanduser())
    except (ValueError, OSError) as err:  # unsupported extension, unwritable file
        raise UserError(f"cannot write the plot to {file}: {err}", "Use a .png file in a writable folder.") from err
