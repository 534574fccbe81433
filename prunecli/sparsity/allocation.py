"""How many weights each layer loses at a pruning event, and which units: local and global scope.

Pure functions over score tensors and counts, so they can be tested without a model:

- `local_masks`: every layer reaches the target on its own (`pruning_scope: local`);
- `global_masks`: one threshold over the group's units, per-layer min/max bounds enforced by
  water-filling, the remainder redistributed so the group still reaches its target;
- `layer_cap`: the most weights a layer may lose (max_sparsity_ratio_per_op and the pattern's limit).

Every mask is monotone: what a layer had already pruned (`committed`) stays pruned.
Tensors are 2-D in the pattern's `[out, in]` orientation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from prunecli.sparsity.criteria import _flat_view
from prunecli.sparsity.patterns import BlockPattern, Pattern
from prunecli.sparsity.selection import _units_size, select_lowest


@dataclass
class LayerState:
    """What an allocation needs to know of one layer: its scores, what it has pruned, and its cap."""

    scores: torch.Tensor  # [out, in] element scores (low = pruned first)
    committed: torch.Tensor  # [out, in] bool, already pruned
    n_committed: int
    cap: int  # most weights the layer may have pruned after this event

    @property
    def numel(self) -> int:
        return self.scores.numel()


def layer_cap(max_ratio: float, numel: int, pattern_limit: int, n_committed: int) -> int:
    """Most weights a layer may lose: the per-layer maximum and the pattern's own limit, never below
    what it has already lost (masks are monotone)."""
    cap = math.floor(max_ratio * numel + 1e-9)
    return max(min(cap, pattern_limit), n_committed)


def local_masks(pattern: Pattern, layers: list[LayerState], target: float,
                reduce: str) -> list[tuple[torch.Tensor, int]]:
    """Each layer pruned to `target` of its own weights (within its cap): (pruned mask, pruned count)."""
    out = []
    for layer in layers:
        budget = round(target * layer.numel)
        out.append(pattern._prune_more_counted(
            layer.scores, layer.committed, min(budget, layer.cap), reduce,
            "floor" if budget >= layer.cap else "nearest", layer.n_committed,
        ))
    return out


def global_masks(pattern: Pattern, layers: list[LayerState], target: float, *, final_target: float,
                 min_ratio: float, reduce: str) -> list[tuple[torch.Tensor, int]]:
    """One threshold over the group's units with per-layer bounds: (pruned mask, pruned count) per layer.

    The per-layer minimum grows with the schedule (`min_ratio * target / final_target`). Water-filling:
    select the group's budget over the free layers; if some layers overshoot their max (or undershoot
    their min) more than the others miss the other way, those layers are pinned at their bound and the
    remaining budget is re-selected over the rest. Each round pins at least one layer, so it ends after
    at most one round per layer.
    """
    unstructured = isinstance(pattern, BlockPattern) and pattern.rows == pattern.cols == 1
    numel = sum(layer.numel for layer in layers)
    entries, alreadies, analyses = [], [], []
    for layer in layers:
        sc = layer.scores
        analyses.append(pattern.analyse(sc))
        if unstructured and sc.dtype == torch.float32:
            unit_scores = sc.reshape(-1)  # one weight per unit: the scores themselves, not a copy
        else:
            unit_scores = pattern.unit_scores(sc, reduce, analyses[-1]).float()
        already = pattern.units_of(layer.committed) if layer.n_committed else None
        if already is not None:
            unit_scores = unit_scores.masked_fill(already, -math.inf)
        alreadies.append(already)
        lo_ratio = min_ratio * (target / final_target) if final_target > 0 else 0.0
        lo = max(layer.n_committed, round(lo_ratio * layer.numel))
        hi = layer.cap
        entries.append((unit_scores, pattern.unit_sizes(tuple(sc.shape)), min(lo, hi), hi))
    budget = round(target * numel)
    budget = min(max(budget, sum(e[2] for e in entries)), sum(e[3] for e in entries))
    chosen, sizes_chosen = water_fill(entries, budget)

    out = []
    for i, layer in enumerate(layers):
        already = alreadies[i]
        if already is None:
            out.append((pattern.expand(chosen[i], layer.scores, analyses[i]), sizes_chosen[i]))
        else:
            # A unit not in `already` has no pruned weight yet, so the two parts are disjoint.
            fresh = chosen[i] & ~already
            mask = layer.committed | pattern.expand(fresh, layer.scores, analyses[i])
            out.append((mask, layer.n_committed + _units_size(fresh, entries[i][1])))
    return out


Entry = tuple[torch.Tensor, "int | torch.Tensor", int, int]  # unit scores, unit sizes, min weights, max weights


def water_fill(entries: list[Entry], budget: int) -> tuple[dict[int, torch.Tensor], dict[int, int]]:
    """Pick the lowest-scored units of several layers that add up to `budget` weights, each layer within
    [min, max]: returns each layer's selected units and the weights they hold."""
    chosen: dict[int, torch.Tensor] = {}
    sizes_chosen: dict[int, int] = {}
    free = list(range(len(entries)))
    while free:
        rest = budget - sum(sizes_chosen.values())
        picks = pooled_select([entries[i] for i in free], rest)
        counts = {i: _units_size(p, entries[i][1]) for i, p in zip(free, picks, strict=True)}
        over = {i: c - entries[i][3] for i, c in counts.items() if c > entries[i][3]}
        under = {i: entries[i][2] - c for i, c in counts.items() if c < entries[i][2]}
        if not over and not under:
            chosen.update(zip(free, picks, strict=True))
            sizes_chosen.update(counts)
            break
        # Pin the side that dominates; a maximum is never exceeded, a minimum never missed.
        pin, bound, rounding = (over, 3, "floor") if sum(over.values()) >= sum(under.values()) else (under, 2, "ceil")
        for i in pin:
            us, sizes, _, hi = entries[i]
            chosen[i] = select_lowest(us, sizes, entries[i][bound], rounding)
            sizes_chosen[i] = _units_size(chosen[i], sizes)
            if sizes_chosen[i] > hi:  # min and max within one unit: the max wins
                chosen[i] = select_lowest(us, sizes, hi, "floor")
                sizes_chosen[i] = _units_size(chosen[i], sizes)
        free = [i for i in free if i not in pin]
    return chosen, sizes_chosen


def pooled_select(entries: list[Entry], budget: int) -> list[torch.Tensor]:
    """`select_lowest` over several layers' units at once (one threshold); returns per-layer picks."""
    scores = [e[0] for e in entries]
    sizes = [e[1] for e in entries]
    if all(isinstance(s, int) for s in sizes) and len(set(sizes)) == 1:
        pooled_sizes: int | torch.Tensor = sizes[0]  # type: ignore[assignment]
    else:
        pooled_sizes = torch.cat(
            [s if isinstance(s, torch.Tensor) else torch.full((sc.numel(),), s, dtype=torch.long)
             for s, sc in zip(sizes, scores, strict=True)]
        )
    devices = {sc.device for sc in scores}
    if len(devices) > 1:
        pooled = torch.cat([sc.to(scores[0].device) for sc in scores])
    else:
        pooled = _flat_view(scores)
        if pooled is None:
            pooled = torch.cat(scores)
    if isinstance(pooled_sizes, torch.Tensor):
        pooled_sizes = pooled_sizes.to(pooled.device)
    picks = select_lowest(pooled, pooled_sizes, budget)
    out, offset = [], 0
    for sc in scores:
        out.append(picks[offset : offset + sc.numel()].to(sc.device))
        offset += sc.numel()
    return out


def progressive_need(stage: int, stages: int, pending_total: int, done: int) -> int:
    """How many of an event's pending weights stage `stage` of `stages` must still prune (<= 0: none)."""
    return round(stage / stages * pending_total) - done
