"""The pruner: binds a recipe's patterns, criteria and schedules to a model's layers and blocks.

Any training loop integrates it with four calls (the loop calls the middle two once per
*optimizer* step, not per micro-batch of gradient accumulation)::

    pruner = Pruner(model, "recipe.json")
    pruner.on_train_begin()
    for batch in loader:
        model(**batch).loss.backward()
        pruner.on_before_optimizer_step()   # gradients are final: update scores, zero pruned grads
        optimizer.step()
        pruner.on_after_optimizer_step()    # step += 1, prune if an event is due, zero pruned weights
        optimizer.zero_grad()
    pruner.on_train_end()

Contracts:

- After every `on_after_optimizer_step` each pruned weight is exactly 0.0, whatever the optimizer
  did (AdamW momentum and weight decay cannot resurrect it).
- Masks are monotone within a run: a pruned weight is never un-pruned.
- Deterministic: the same model, recipe and gradients give identical masks (ties are broken by
  position), so the ranks of a distributed run agree without communicating.
- `state_dict()`/`load_state_dict()` hold step, scores and masks: a resumed run ends with the same
  masks as an uninterrupted one.

Groups with an element pattern (NxM, N:M, channels) prune weights of their layers; groups with pattern
`head` or `neuron` prune whole attention heads or feed-forward neurons of their blocks (every member
layer's rows and columns of the unit at once). A layer may be in one element group and in structure
groups; the element pattern then applies to what the heads and neurons leave.

Masks are stored beside the weights (a boolean "pruned" tensor and its complement in the weight's
dtype) and applied in place by multiplication, so the model stays an ordinary `nn.Module` that
saves with `save_pretrained`; the zeros are in the weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunecli.errors import CheckpointError
from prunecli.sparsity import allocation
from prunecli.sparsity.layers import Block, ElementGroup, PrunedLayer, StructureGroup, check_reachable, check_sharing
from prunecli.sparsity.matching import _candidates, match_blocks, match_layers
from prunecli.sparsity.patterns import ChannelPattern, StructurePattern, parse_pattern
from prunecli.sparsity.recipe import Recipe, ResolvedGroup, load_recipe
from prunecli.sparsity.selection import select_lowest
from prunecli.sparsity.units import Member, unit_masks, unit_view
from prunecli.structure import AttentionBlock

STATE_FORMAT = "prunecli.pruner/2"
_OLD_FORMAT = "prunecli.pruner/1"  # one score per layer (before layers could be shared by groups)
_ROWS = ChannelPattern(axis=0)  # a structural block's units are the rows of its unit view

Group = ElementGroup | StructureGroup


class Pruner:
    """Training-time pruning of a model's Linear-like layers, heads and neurons, following a recipe.

    `model` is the unwrapped model (not the DDP wrapper); `recipe` is a Recipe, a dict, or the path
    of a JSON recipe. Raises RecipeError when a group matches no layer (or block), a layer is in two
    element groups, or a layer's shape does not fit the group's pattern; StructureError when the
    model's attention or feed-forward layout cannot be mapped for a head or neuron group.
    """

    def __init__(self, model: nn.Module, recipe: Recipe | dict | str | Path):
        if isinstance(recipe, (str, Path)):
            recipe = load_recipe(recipe)
        elif isinstance(recipe, dict):
            recipe = Recipe.from_dict(recipe)
        elif not isinstance(recipe, Recipe):
            raise TypeError(f"recipe must be a Recipe, dict or path, got {type(recipe).__name__}")
        self.recipe = recipe
        self.model = model
        self.step = 0
        self.began = False
        resolved = recipe.resolve()
        structural = [isinstance(parse_pattern(g.pattern), StructurePattern) for g in resolved]
        element_cfgs = [g for g, s in zip(resolved, structural, strict=True) if not s]
        matched_layers, heads = match_layers(
            model, element_cfgs, recipe.source,
            check_shape=lambda g, name, out_f, in_f: parse_pattern(g.pattern).check_shape(out_f, in_f),
        ) if element_cfgs else ([], _candidates(model)[1])
        self.excluded_heads = heads
        modules = dict(model.named_modules())
        found: dict[str, PrunedLayer] = {}

        def layer_of(name: str, transposed: bool = False) -> PrunedLayer:
            if name not in found:
                found[name] = PrunedLayer.of(name, modules[name].weight, transposed)
            return found[name]

        by_cfg = iter(matched_layers)
        self.groups: list[Group] = []
        for cfg, is_structure in zip(resolved, structural, strict=True):
            if is_structure:
                self.groups.append(StructureGroup(cfg, self._blocks(model, cfg, layer_of)))
            else:
                self.groups.append(ElementGroup(cfg, [layer_of(m.name, m.transposed) for m in next(by_cfg)]))
        check_sharing(self.groups, recipe.source)
        check_reachable(self.groups, recipe.source)
        order = {name: i for i, name in enumerate(modules)}
        self.layers: dict[str, PrunedLayer] = dict(sorted(found.items(), key=lambda kv: order[kv[0]]))

    def _blocks(self, model: nn.Module, cfg: ResolvedGroup, layer_of) -> list[Block]:
        blocks = []
        for block in match_blocks(model, cfg, self.recipe.source):
            minimum = cfg.min_heads_per_layer if isinstance(block, AttentionBlock) else cfg.min_neurons_per_layer
            blocks.append(Block(block.name, [layer_of(name) for name, _ in block.cuts],
                                [Member(axis, block.unit_size) for _, axis in block.cuts], block.units, minimum))
        return blocks

    # ------------------------------------------------------------------ hooks
    def on_train_begin(self) -> None:
        """Lock pattern_lock masks, run any event already due that needs no gradient, apply masks."""
        for group in self.groups:
            if group.lock and not group.locked:
                for layer in group.layers:
                    layer.set_pruned(layer.weight.detach() == 0)
                group.locked = True
            elif not group.uses_grad:
                self._catch_up(group)
        self.began = True
        self._apply_masks()

    def on_before_optimizer_step(self) -> None:
        """Gradients are final: update the scores, then zero the gradients of pruned weights."""
        if not self.began:  # a loop that forgot on_train_begin: the weights are still the initial ones
            self.on_train_begin()
        upcoming = self.step + 1
        for group in self.groups:
            if group.wants_scores(upcoming):
                assert group.criterion is not None
                group.criterion.update(
                    group.scores,  # type: ignore[arg-type]
                    [layer.weight for layer in group.scored],
                    [layer.weight.grad for layer in group.scored],
                )
        with torch.no_grad():
            pairs = [(lay.weight.grad, lay.keep) for lay in self.layers.values() if lay.n_pruned and
                     lay.weight.grad is not None]
            _multiply([g for g, _ in pairs], [k for _, k in pairs])

    def on_after_optimizer_step(self) -> None:
        """Count the step, prune if an event (or a progressive stage) is due, zero pruned weights."""
        self.step += 1
        for group in self.groups:
            if group.lock:
                continue
            if not self._catch_up(group):
                stage = group.stage_at(self.step)
                if stage is not None:
                    self._progressive_stage(group, stage)  # type: ignore[arg-type]
        self._apply_masks()

    def on_train_end(self) -> None:
        """Finish any progressive stages still pending and apply the masks a last time."""
        for group in self.groups:
            if group.progressive and any(layer.pruned is not layer.committed for layer in group.layers):
                for layer in group.layers:
                    layer.set_pruned(layer.committed)
                group.pending_total = 0
        self._apply_masks()

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Step, per-group progress and scores, per-layer masks (tensors, ints and strings only)."""
        layers = {}
        for name, layer in self.layers.items():
            entry: dict[str, Any] = {"pruned": layer.pruned.cpu()}
            if layer.committed is not layer.pruned:
                entry["committed"] = layer.committed.cpu()
            if layer.structural is not None:
                entry["structural"] = layer.structural.cpu()
            layers[name] = entry
        groups = []
        for g in self.groups:
            entry = {"done_index": g.done_index, "locked": g.locked, "pending_total": g.pending_total,
                     "scores": {layer.name: score.cpu() for layer, score in zip(g.scored, g.scores, strict=True)
                                if score is not None}}
            if isinstance(g, StructureGroup):
                entry["units"] = {block.name: block.pruned_units.cpu() for block in g.blocks}
            groups.append(entry)
        return {"format": STATE_FORMAT, "step": self.step, "began": self.began, "groups": groups, "layers": layers}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict()` (this version's or the previous one's); the masks are applied at once."""
        if not isinstance(state, dict) or state.get("format") not in (STATE_FORMAT, _OLD_FORMAT):
            raise CheckpointError("the checkpoint's pruner state is not a prunecli pruner state")
        if state["format"] == _OLD_FORMAT:
            state = _upgrade(state, self.groups)
        names, saved = set(self.layers), set(state["layers"])
        if names != saved or len(state["groups"]) != len(self.groups):
            missing = sorted(names - saved)[:3]
            extra = sorted(saved - names)[:3]
            raise CheckpointError(
                "the checkpoint's pruner state was made with another recipe or model "
                f"(layers only in this run: {missing}, only in the checkpoint: {extra})",
                "Resume with the recipe and model the checkpoint was written with.",
            )
        for name, layer in self.layers.items():
            entry = state["layers"][name]
            if tuple(entry["pruned"].shape) != tuple(layer.weight.shape):
                raise CheckpointError(f"pruner state for {name} has shape {tuple(entry['pruned'].shape)}, "
                                      f"the layer has {tuple(layer.weight.shape)}")
            device = layer.weight.device
            pruned = entry["pruned"].to(device=device, dtype=torch.bool)
            committed = entry["committed"].to(device=device, dtype=torch.bool) if "committed" in entry else None
            if "structural" in entry:
                layer.structural = entry["structural"].to(device=device, dtype=torch.bool)
                layer.n_structural = int(torch.count_nonzero(layer.structural))
            layer.set_pruned(pruned, committed)
        for group, g in zip(self.groups, state["groups"], strict=True):
            group.done_index = int(g["done_index"])
            group.locked = bool(g["locked"])
            group.pending_total = int(g["pending_total"])
            for i, layer in enumerate(group.scored):
                score = group.scores[i]
                if score is not None and layer.name in g.get("scores", {}):
                    score.copy_(g["scores"][layer.name].to(score.device))
            if isinstance(group, StructureGroup):
                for block in group.blocks:
                    saved_units = g.get("units", {}).get(block.name)
                    if saved_units is None or saved_units.numel() != block.units:
                        raise CheckpointError(f"the checkpoint's pruner state has no units for block {block.name}",
                                              "Resume with the recipe and model the checkpoint was written with.")
                    block.pruned_units = saved_units.to(device=block.pruned_units.device, dtype=torch.bool)
        self.step = int(state["step"])
        self.began = bool(state.get("began", True))
        self._apply_masks()

    # ------------------------------------------------------------------ reporting
    def current_sparsity(self) -> float:
        """Fraction of pruned weights over all pruned layers (from the masks, O(layers))."""
        total = sum(layer.numel for layer in self.layers.values())
        return sum(layer.n_pruned for layer in self.layers.values()) / total if total else 0.0

    def target_sparsity(self) -> float:
        """The scheduled target now, weighted by group size (pattern_lock groups count their zeros)."""
        total = sum(g.numel for g in self.groups)
        if not total:
            return 0.0
        acc = 0.0
        for g in self.groups:
            if g.lock:
                acc += sum(layer.n_pruned for layer in g.layers)
            else:
                acc += g.schedule.target_sparsity_at(self.step) * g.numel
        return acc / total

    def group_sparsity(self, group: Group) -> float:
        """An element group's share of pruned weights; a structure group's share of removed units."""
        if isinstance(group, StructureGroup):
            units = sum(block.units for block in group.blocks)
            return sum(int(block.pruned_units.sum()) for block in group.blocks) / units if units else 0.0
        pruned = sum(layer.n_pruned for layer in group.layers)
        return pruned / group.numel if group.numel else 0.0

    def log_values(self) -> dict[str, float]:
        """Cheap values for a tracker: `sparsity`, `target_sparsity`, and per group when there are several."""
        values = {"sparsity": self.current_sparsity(), "target_sparsity": self.target_sparsity()}
        if len(self.groups) > 1 or any(isinstance(g, StructureGroup) for g in self.groups):
            for g in self.groups:
                values[f"sparsity/group{g.cfg.index}"] = self.group_sparsity(g)
        return values

    def event_steps(self) -> list[int]:
        """The optimizer steps at which some group prunes, in order."""
        return sorted({step for group in self.groups for step in group.schedule.event_steps()})

    def layer_sparsity(self) -> dict[str, float]:
        return {name: layer.n_pruned / layer.numel for name, layer in self.layers.items()}

    def score_of(self, name: str) -> torch.Tensor | None:
        """The stored score of layer `name` (in the first group scoring it; None when read at the event)."""
        for group in self.groups:
            for layer, score in zip(group.scored, group.scores, strict=True):
                if layer.name == name:
                    return score
        raise KeyError(name)

    def keep_masks(self) -> dict[str, torch.Tensor]:
        """Boolean keep-masks in each weight's own layout (True = kept)."""
        return {name: ~layer.pruned for name, layer in self.layers.items()}

    def pruned_units(self) -> list[dict[str, Any]]:
        """Per block of every head/neuron group: how many units it has and which were removed."""
        return [{"group": g.cfg.index, "block": block.name, "unit": g.unit_name, "units": block.units,
                 "pruned": [int(i) for i in torch.nonzero(block.pruned_units).reshape(-1).tolist()]}
                for g in self.groups if isinstance(g, StructureGroup) for block in g.blocks]

    def plan(self) -> list[dict[str, Any]]:
        """Per group: which layers, pattern, target, scope and schedule (what `prune --dry_run` prints)."""
        out = []
        for g in self.groups:
            s = g.schedule
            entry = {
                "index": g.cfg.index,
                "path": g.cfg.path,
                "layers": [layer.name for layer in g.layers],
                "num_params": g.numel,
                "pattern": g.pattern.name,
                "pruning_type": g.cfg.pruning_type,
                "target_sparsity": g.cfg.target_sparsity,
                "pruning_scope": g.cfg.pruning_scope,
                "sparsity_decay_type": g.cfg.sparsity_decay_type,
                "start_step": s.start_step,
                "end_step": s.end_step,
                "pruning_frequency": s.frequency,
                "num_events": s.num_events,
                "oneshot": s.is_oneshot,
                "progressive": g.progressive,
                "min_sparsity_ratio_per_op": g.cfg.min_sparsity_ratio_per_op,
                "max_sparsity_ratio_per_op": g.cfg.max_sparsity_ratio_per_op,
            }
            if isinstance(g, StructureGroup):
                entry["blocks"] = [block.name for block in g.blocks]
                entry["units"] = sum(block.units for block in g.blocks)
            out.append(entry)
        return out

    def resolved_recipe(self) -> dict[str, Any]:
        """The recipe as run: every group fully resolved with its `layers` (a valid recipe itself), the task
        head left out and, for head/neuron groups, the units each block lost (`pruned_units`)."""
        groups = []
        for g in self.groups:
            d = g.cfg.to_dict()
            d["pruning_frequency"] = g.schedule.frequency
            d["layers"] = [layer.name for layer in g.layers]
            groups.append(d)
        out: dict[str, Any] = {"pruning_configs": groups, "excluded_heads": list(self.excluded_heads)}
        units = self.pruned_units()
        if units:
            out["pruned_units"] = units
        return out

    # ------------------------------------------------------------------ internals
    def _catch_up(self, group: Group) -> bool:
        """Run the latest schedule event not yet processed; True when one ran."""
        if group.lock:
            return False
        index = group.schedule.event_index_at(self.step)
        if index <= group.done_index:
            return False
        if group.uses_grad and self.step == 0:
            return False  # no gradient yet: a step-0 event runs after the first optimizer step
        group.done_index = index
        target = group.schedule.target_at_event(index)
        if isinstance(group, StructureGroup):
            self._structure_event(group, target)
        else:
            self._element_event(group, index, target)
        return True

    def _allocate(self, pattern, states: list[allocation.LayerState], target: float, cfg: ResolvedGroup):
        if cfg.pruning_scope == "local":
            return allocation.local_masks(pattern, states, target, cfg.criterion_reduce_type)
        return allocation.global_masks(pattern, states, target, final_target=cfg.target_sparsity,
                                       min_ratio=cfg.min_sparsity_ratio_per_op, reduce=cfg.criterion_reduce_type)

    @torch.no_grad()
    def _element_event(self, group: ElementGroup, index: int, target: float) -> None:
        """Each layer's pattern over what structural groups left of it (the matrix `compact` will keep)."""
        cfg = group.cfg
        states, kept = [], []
        for layer, sc in zip(group.layers, group.element_scores(), strict=True):
            rows, cols = _remaining(layer)
            committed = layer.as2d(layer.committed)
            if rows is not None:
                sc, committed = sc[rows][:, cols], committed[rows][:, cols]
            n_committed = layer.n_committed - layer.n_structural
            states.append(allocation.LayerState(
                scores=sc, committed=committed, n_committed=n_committed,
                cap=allocation.layer_cap(cfg.max_sparsity_ratio_per_op, sc.numel(),
                                         group.pattern.prunable(tuple(sc.shape)), n_committed),
            ))
            kept.append((rows, cols))
        picked = self._allocate(group.pattern, states, target, cfg)
        new, counts = [], []
        for layer, (mask, count), (rows, cols) in zip(group.layers, picked, kept, strict=True):
            if rows is not None:  # back to the full matrix, beside what the heads and neurons removed
                full = layer.as2d(layer.structural).clone()
                full[rows[:, None], cols[None, :]] |= mask
                mask, count = full, count + layer.n_structural
            new.append(layer.from2d(mask))
            counts.append(count)
        last = index >= group.schedule.num_events - 1
        if group.progressive and not last:
            for layer, committed in zip(group.layers, new, strict=True):
                layer.set_pruned(layer.pruned, committed)
            group.pending_total = sum(layer.n_committed - layer.n_pruned for layer in group.layers)
            self._progressive_stage(group, 1)
        else:
            for layer, pruned, count in zip(group.layers, new, counts, strict=True):
                layer.set_pruned(pruned, n_pruned=count)
            group.pending_total = 0

    @torch.no_grad()
    def _structure_event(self, group: StructureGroup, target: float) -> None:
        """Lay each block out as `[units, weights per unit]` and let the row pattern choose whole units."""
        cfg = group.cfg
        scores = group.element_scores()
        states = []
        for block in group.blocks:
            view = unit_view([scores[group.score_index(layer)] for layer in block.layers], block.members,
                             block.units)
            per_unit = view.shape[1]
            committed = block.pruned_units[:, None].expand(view.shape)
            n_committed = int(block.pruned_units.sum()) * per_unit
            most = min(block.units - block.min_units, int(cfg.max_sparsity_ratio_per_op * block.units + 1e-9))
            states.append(allocation.LayerState(scores=view, committed=committed, n_committed=n_committed,
                                                cap=max(n_committed, max(0, most) * per_unit)))
        for block, (mask, _) in zip(group.blocks, self._allocate(_ROWS, states, target, cfg), strict=True):
            fresh = mask.any(dim=1) & ~block.pruned_units
            if not bool(fresh.any()):
                continue
            block.pruned_units = block.pruned_units | fresh
            shapes = [layer.shape2d for layer in block.layers]
            for layer, removed in zip(block.layers, unit_masks(fresh, shapes, block.members), strict=True):
                layer.add_structural(layer.from2d(removed))

    @torch.no_grad()
    def _progressive_stage(self, group: ElementGroup, stage: int) -> None:
        """Prune `stage/stages` of the latest event's new weights, lowest element scores first."""
        if stage >= group.stages:
            for layer in group.layers:
                layer.set_pruned(layer.committed, layer.committed)
            group.pending_total = 0
            return
        pending = [layer.committed & ~layer.pruned for layer in group.layers]
        done = group.pending_total - sum(layer.n_committed - layer.n_pruned for layer in group.layers)
        need = allocation.progressive_need(stage, group.stages, group.pending_total, done)
        if need <= 0:
            return
        assert group.criterion is not None
        criterion = group.criterion
        pooled = torch.cat([criterion.score(score, lay.weight)[p].float()
                            for lay, score, p in zip(group.layers, group.scores, pending, strict=True)])
        picks = select_lowest(pooled, 1, need)
        offset = 0
        for layer, p in zip(group.layers, pending, strict=True):
            n = layer.n_committed - layer.n_pruned
            if n:
                newly = torch.zeros_like(p)
                newly[p] = picks[offset : offset + n]
                layer.set_pruned(layer.pruned | newly, layer.committed)
            offset += n

    @torch.no_grad()
    def _apply_masks(self) -> None:
        pruned = [layer for layer in self.layers.values() if layer.n_pruned]
        for layer in pruned:
            if layer.fresh:  # a new mask: assign zeros, so a pruned NaN or inf weight becomes 0.0 too
                layer.weight.masked_fill_(layer.pruned, 0.0)
                layer.fresh = False
        # every step: pruned weights are 0.0 and their gradients were zeroed, so multiplying keeps them 0.0
        _multiply([layer.weight for layer in pruned], [layer.keep for layer in pruned])


def _remaining(layer: PrunedLayer) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Indices of the rows and columns (`[out, in]`) no structural group removed whole; (None, None) when
    no structural group prunes the layer."""
    if layer.structural is None or not layer.n_structural:
        return None, None
    removed = layer.as2d(layer.structural)
    rows = torch.nonzero(~removed.all(dim=1)).reshape(-1)
    cols = torch.nonzero(~removed.all(dim=0)).reshape(-1)
    return rows, cols


def _upgrade(state: dict[str, Any], groups: list[Group]) -> dict[str, Any]:
    """A `prunecli.pruner/1` state (one score per layer, each layer in one group) in this version's layout."""
    layers = {name: {k: v for k, v in entry.items() if k != "score"} for name, entry in state["layers"].items()}
    new_groups = []
    for group, g in zip(groups, state["groups"], strict=False):
        scores = {layer.name: state["layers"][layer.name]["score"] for layer in group.scored
                  if state["layers"].get(layer.name, {}).get("score") is not None}
        new_groups.append({**g, "scores": scores})
    return {**state, "format": STATE_FORMAT, "layers": layers, "groups": new_groups}


def _multiply(tensors: list[torch.Tensor], keeps: list) -> None:
    """`t *= keep` for every pair, in one fused call where the devices and dtypes allow it."""
    if not tensors:
        return
    try:
        torch._foreach_mul_(tensors, keeps)
    except RuntimeError:  # mixed devices/dtypes: one by one
        for t, k in zip(tensors, keeps, strict=True):
            t.mul_(k)
