"""Heads and neurons of a checkpoint, counted per layer from its tensors: the report's `units` section.

No model is built: attention and feed-forward blocks are found by tensor names (the layouts of
`prunecli.sparsity.structure`: BERT-like `...attention.self.{query,key,value}` with `...attention.output.dense`,
DistilBERT's `q_lin`/`k_lin`/`v_lin`/`out_lin`, `intermediate.dense` with `output.dense`, `lin1`/`lin2`,
`fc1`/`fc2`), the head size from `config.json`.

- In a sparse checkpoint, a head is removed when its output-projection columns are all zero, a neuron when
  its down-projection column (or its up-projection row) is all zero: what `prunecli compact` would remove.
- In a compacted checkpoint (`compact_report.json` beside it), the counts are the kept units of the dense
  model's, as the compaction recorded them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

_ATTENTION = (("query", "key", "value", None), ("q_lin", "k_lin", "v_lin", "out_lin"),
              ("q_proj", "k_proj", "v_proj", "out_proj"), ("q_proj", "k_proj", "v_proj", "o_proj"),
              ("q", "k", "v", "o"))
_FFN = (("intermediate.dense", "output.dense"), ("lin1", "lin2"), ("fc1", "fc2"))


def blocks_by_name(names: set[str]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Attention blocks {name, query, key, value, output} and feed-forward blocks {name, up, down} (weights)."""
    attention, ffn = [], []
    for name in sorted(names):
        for q, k, v, o in _ATTENTION:
            suffix = f".{q}.weight"
            if not name.endswith(suffix):
                continue
            prefix = name[: -len(suffix)]
            parent = prefix.rsplit(".", 1)[0] if "." in prefix else ""
            output = f"{prefix}.{o}.weight" if o else f"{parent}.output.dense.weight"
            members = [f"{prefix}.{k}.weight", f"{prefix}.{v}.weight", output]
            if all(m in names for m in members):
                attention.append({"name": prefix, "query": name, "key": members[0], "value": members[1],
                                  "output": output})
                break
        for up, down in _FFN:
            suffix = f".{up}.weight"
            if name.endswith(suffix) and f"{name[: -len(suffix)]}.{down}.weight" in names:
                prefix = name[: -len(suffix)]
                if up == "intermediate.dense" and not any(n.startswith(f"{prefix}.attention.") for n in names):
                    continue
                ffn.append({"name": prefix, "up": name, "down": f"{prefix}.{down}.weight"})
                break
    return attention, ffn


def members(names: set[str]) -> set[str]:
    """The weight names whose all-zero rows and columns the unit count needs."""
    attention, ffn = blocks_by_name(names)
    return {b["output"] for b in attention} | {m for b in ffn for m in (b["up"], b["down"])}


def empty_lines(zeros: np.ndarray) -> dict[str, np.ndarray]:
    """All-zero rows and columns of a 2-D zero mask (what the unit count keeps of a member tensor)."""
    return {"rows": zeros.all(axis=1), "cols": zeros.all(axis=0)}


def _config(folder: Path | None) -> dict[str, Any]:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8")) if folder else {}
    except (OSError, ValueError):
        return {}


def _head_size(config: dict[str, Any]) -> int | None:
    hidden = config.get("hidden_size", config.get("dim"))
    heads = config.get("num_attention_heads", config.get("n_heads"))
    return hidden // heads if isinstance(hidden, int) and isinstance(heads, int) and heads else None


def units_section(names: set[str], lines: dict[str, dict[str, np.ndarray]], folder: Path | None,
                  recorded: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """The report's `units`: per block, units kept of units (None when no block is found).

    `recorded`: the `pruned_units` of a resolved recipe (what `prune` passes for its in-memory model, whose
    head size no config.json tells), used for the blocks it covers.
    """
    attention, ffn = blocks_by_name(names)
    if not attention and not ffn:
        return None
    compacted = _compacted(folder)
    if compacted is not None:
        return compacted
    if recorded and folder is None:
        return _totals([{"block": r["block"], "unit": r["unit"], "kept": r["units"] - len(r["pruned"]),
                         "of": r["units"]} for r in recorded], "recipe")
    head_size = _head_size(_config(folder))
    out = []
    if head_size:
        for b in attention:
            cols = lines.get(b["output"], {}).get("cols")
            if cols is None or cols.size % head_size:
                continue
            silent = cols.reshape(-1, head_size).all(axis=1)
            out.append({"block": b["name"], "unit": "head", "kept": int((~silent).sum()), "of": int(silent.size)})
    for b in ffn:
        down, up = lines.get(b["down"]), lines.get(b["up"])
        if down is None or up is None:
            continue
        removable = down["cols"] | up["rows"]
        out.append({"block": b["name"], "unit": "neuron", "kept": int((~removable).sum()),
                    "of": int(removable.size)})
    return _totals(out, "weights")


def _compacted(folder: Path | None) -> dict[str, Any] | None:
    try:
        report = json.loads((folder / "compact_report.json").read_text(encoding="utf-8")) if folder else None
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict) or not isinstance(report.get("plan"), list):
        return None
    return _totals([{k: p[k] for k in ("block", "unit", "kept", "of")} for p in report["plan"]], "compacted")


def _totals(layers: list[dict[str, Any]], source: str) -> dict[str, Any]:
    removed = {unit: sum(x["of"] - x["kept"] for x in layers if x["unit"] == unit) for unit in ("head", "neuron")}
    return {"source": source, "layers": layers, "heads_removed": removed["head"], "neurons_removed": removed["neuron"]}


def removed_slices(recipe: Any, names: set[str]) -> dict[str, tuple[int, list[int], int]]:
    """Per member weight of a head/neuron group's block: (axis, removed unit indices, units), from the recipe's
    `pruned_units`; an element pattern on that weight is measured on what the units left."""
    entries = (recipe or {}).get("pruned_units") if isinstance(recipe, dict) else None
    if not entries:
        return {}
    attention, ffn = blocks_by_name(names)
    by_block = {b["name"]: [(b["query"], 0), (b["key"], 0), (b["value"], 0), (b["output"], 1)] for b in attention}
    by_block.update({b["name"]: [(b["up"], 0), (b["down"], 1)] for b in ffn})
    out: dict[str, tuple[int, list[int], int]] = {}
    for entry in entries:
        for weight, axis in by_block.get(entry["block"], []):
            if entry["pruned"]:
                out[weight] = (axis, list(entry["pruned"]), int(entry["units"]))
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
