"""Per-layer sparsity as a bar chart (`prunecli inspect --plot`), drawn with matplotlib's object API."""

from __future__ import annotations

from pathlib import Path

from prunecli.errors import UserError
from prunecli.report.stats import KIND_TITLES

PLOT_COLORS = {
    "attention": "#4C72B0", "ffn": "#DD8452", "linear": "#8172B3", "head": "#55A868", "conv": "#937860",
    "embedding": "#8C8C8C",
}


def check_plot_target(plot: str) -> None:
    """Fail fast, before any checkpoint is read, when the plot cannot be written."""
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
