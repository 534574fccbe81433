"""Heads and neurons of a checkpoint, counted per layer from its tensors: the report's `units` section.

No model is built and nothing here decides what a block or a removable unit is: the blocks are
`prunecli.structure.read_weights`' (tensor names and shapes, the head size from `config.json`) and the
counts are `prunecli.structure.plan_units`' summary, the very plan `prunecli compact` applies. So the
report, the model card, `inspect` and `compact` show the same numbers:

- in a sparse checkpoint, the heads and neurons compaction would keep (a head with zero output columns,
  or zero value rows and value bias, goes; a neuron with a zero down column goes, and so does one with a
  zero up row, its constant folded, when the config names the activation);
- in a compacted checkpoint (`compact_report.json` beside it), the kept units of the dense model's, as the
  compaction recorded them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prunecli.structure import Structure, plan_units, read_weights

COMPACT_REPORT_FILE = "compact_report.json"


def read_config(folder: Path | None) -> dict[str, Any]:
    """A checkpoint folder's `config.json` (empty when there is none or it is not JSON)."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8")) if folder else {}
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def recorded_head_counts(recipe: Any) -> dict[str, int]:
    """Heads per attention block as a resolved recipe's `pruned_units` record them (geometry without config)."""
    entries = recipe.get("pruned_units") if isinstance(recipe, Mapping) else None
    return {e["block"]: int(e["units"]) for e in entries or [] if e.get("unit") == "head"}


def structure_of(shapes: Mapping[str, Sequence[int]], config: Mapping[str, Any] | None, recipe: Any) -> Structure:
    """The checkpoint's structure: its blocks, with head geometry from the recipe's record or the config."""
    return read_weights(shapes, config, recorded_head_counts(recipe))


def units_section(structure: Structure, lines: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, Any] | None:
    """The report's `units` of a sparse checkpoint: per block, the units compaction keeps of the units it has
    (None when no block is found)."""
    if not structure.blocks:
        return None
    layers = [{k: entry[k] for k in ("block", "unit", "kept", "of")}
              for entry in plan_units(structure, lines).summary()]
    return _totals(layers, "weights") if layers else None


def compacted_section(folder: Path | None) -> dict[str, Any] | None:
    """The report's `units` of a compacted checkpoint, as its `compact_report.json` records them (None when the
    folder has none: the checkpoint is not compacted)."""
    try:
        report = json.loads((folder / COMPACT_REPORT_FILE).read_text(encoding="utf-8")) if folder else None
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict) or not isinstance(report.get("plan"), list):
        return None
    return _totals([{k: p[k] for k in ("block", "unit", "kept", "of")} for p in report["plan"]], "compacted")


def _totals(layers: list[dict[str, Any]], source: str) -> dict[str, Any]:
    removed = {unit: sum(x["of"] - x["kept"] for x in layers if x["unit"] == unit) for unit in ("head", "neuron")}
    return {"source": source, "layers": layers, "heads_removed": removed["head"], "neurons_removed": removed["neuron"]}


def removed_slices(recipe: Any, structure: Structure) -> dict[str, tuple[int, list[int], int]]:
    """Per member weight of a head/neuron group's block: (axis, removed unit indices, units), from the recipe's
    `pruned_units`; an element pattern on that weight is measured on what the units left."""
    entries = recipe.get("pruned_units") if isinstance(recipe, Mapping) else None
    if not entries:
        return {}
    cuts = {b.name: b.cuts for b in structure.blocks}
    out: dict[str, tuple[int, list[int], int]] = {}
    for entry in entries:
        for member, axis in cuts.get(entry["block"], ()):
            if entry["pruned"]:
                out[f"{member}.weight"] = (axis, list(entry["pruned"]), int(entry["units"]))
    return out


def remaining_counts(zeros: np.ndarray, removed: tuple[int, list[int], int]) -> tuple[int, int]:
    """(numel, zeros) of a 2-D zero mask without the rows (axis 0) or columns (axis 1) of removed units."""
    axis, indices, units = removed
    size = zeros.shape[axis] // units
    keep = np.ones(zeros.shape[axis], dtype=bool)
    for u in indices:
        keep[u * size:(u + 1) * size] = False
    kept = zeros[keep] if axis == 0 else zeros[:, keep]
    return int(kept.size), int(np.count_nonzero(kept))
