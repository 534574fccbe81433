"""The pruner: binds a recipe's patterns, criteria and schedules to a model's layers.

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

Masks are stored beside the weights (a boolean "pruned" tensor and its complement in the weight's
dtype) and applied in place by multiplication, so the model stays an ordinary `nn.Module` that
saves with `save_pretrained`; the zeros are in the weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunecli.errors import CheckpointError
from prunecli.sparsity import allocation
from prunecli.sparsity.criteria import Criterion, make_criterion
from prunecli.sparsity.matching import match_layers
from prunecli.sparsity.patterns import Pattern, parse_pattern
from prunecli.sparsity.recipe import Recipe, ResolvedGroup, load_recipe
from prunecli.sparsity.schedule import Schedule
from prunecli.sparsity.selection import select_lowest

#: Stages over which a `_progressive` pruning type spreads each event's newly pruned weights.
PROGRESSIVE_STAGES = 4
STATE_FORMAT = "prunecli.pruner/1"


@dataclass(eq=False)
class _Layer:
    """One pruned weight. `pruned` is applied to the weight; `committed` is the latest event's mask
    (they differ only while a progressive group is between stages)."""

    name: str
    weight: nn.Parameter
    transposed: bool  # HF Conv1D stores [in, out]; patterns see [out, in]
    group: int
    pruned: torch.Tensor
    committed: torch.Tensor
    score: torch.Tensor | None
    n_pruned: int = 0
    n_committed: int = 0
    #: `~pruned` in the weight's dtype, created at the first pruning: multiplying by it is ~3x faster
    #: than `masked_fill_`, and it is what every optimizer step pays for.
    keep: torch.Tensor | None = None
    fresh: bool = False  # the mask changed since it was last applied

    @property
    def numel(self) -> int:
        return self.weight.numel()

    @property
    def shape2d(self) -> tuple[int, int]:
        s = tuple(self.weight.shape)
        return (s[1], s[0]) if self.transposed else (s[0], s[1])

    def as2d(self, t: torch.Tensor) -> torch.Tensor:
        return t.t() if self.transposed else t

    def from2d(self, t: torch.Tensor) -> torch.Tensor:
        return t.t().contiguous() if self.transposed else t

    def set_pruned(
        self, pruned: torch.Tensor, committed: torch.Tensor | None = None, n_pruned: int | None = None
    ) -> None:
        """`n_pruned` (the True count of `pruned`, when the caller knows it) saves a pass over the mask."""
        self.pruned = pruned
        self.n_pruned = int(torch.count_nonzero(pruned)) if n_pruned is None else n_pruned
        if committed is None or committed is pruned:
            self.committed, self.n_committed = pruned, self.n_pruned
        else:
            self.committed, self.n_committed = committed, int(torch.count_nonzero(committed))
        if self.n_pruned:
            if self.keep is None:  # kept once allocated: later events overwrite it in place
                self.keep = torch.empty(self.weight.shape, dtype=self.weight.dtype, device=self.weight.device)
            torch.logical_not(pruned, out=self.keep)
            self.fresh = True  # the next _apply_masks zeroes by assignment (NaN * 0 would stay NaN)


class _Group:
    def __init__(self, cfg: ResolvedGroup, layers: list[_Layer]):
        self.cfg = cfg
        self.layers = layers
        self.pattern: Pattern = parse_pattern(cfg.pattern)
        kind = cfg.kind
        self.lock = kind.lock
        self.criterion: Criterion | None = None if kind.criterion is None else make_criterion(kind.criterion)
        self.schedule = Schedule(
            cfg.start_step, cfg.end_step, cfg.pruning_frequency, cfg.target_sparsity, cfg.sparsity_decay_type,
            cfg.initial_sparsity,
        )
        self.numel = sum(layer.numel for layer in layers)
        self.done_index = -1  # latest schedule event processed
        self.locked = False  # pattern_lock masks captured
        self.pending_total = 0  # progressive: weights the latest event prunes over its stages
        f = self.schedule.frequency
        self.stages = min(PROGRESSIVE_STAGES, f)
        self.stage_interval = max(1, f // PROGRESSIVE_STAGES)
        # As in Intel Neural Compressor: too short a window degrades to plain pruning.
        self.progressive = (
            kind.progressive and self.stages > 1 and (cfg.end_step - cfg.start_step) > PROGRESSIVE_STAGES
        )

    @property
    def uses_grad(self) -> bool:
        return self.criterion is not None and self.criterion.needs_grad

    def event_step(self, index: int) -> int:
        return self.schedule.start_step + index * self.schedule.frequency

    def stage_at(self, step: int) -> int | None:
        """Progressive stage (2..stages) due at `step`, if any (stage 1 is the event itself)."""
        if not self.progressive or self.pending_total == 0 or self.done_index < 0:
            return None
        offset = step - self.event_step(self.done_index)
        if offset <= 0 or offset % self.stage_interval:
            return None
        stage = offset // self.stage_interval + 1
        return stage if stage <= self.stages else None

    def wants_scores(self, step: int) -> bool:
        """Whether the gradients of optimizer step `step` feed a score that will be used.

        A running average (snip_momentum) is fed until the last event; snip and gradient only on
        the steps that end with an event or a progressive stage. After the last event nothing is
        scored (cool-down costs only the mask enforcement).
        """
        if not self.uses_grad:
            return False
        assert self.criterion is not None
        if self.schedule.event_index_at(step) > self.done_index or self.stage_at(step) is not None:
            return True
        return self.criterion.every_step and step <= self.schedule.last_event_step


class Pruner:
    """Training-time pruning of a model's Linear-like layers following a recipe.

    `model` is the unwrapped model (not the DDP wrapper); `recipe` is a Recipe, a dict, or the path
    of a JSON recipe. Raises RecipeError when a group matches no layer, a layer is matched by two
    groups, or a layer's shape does not fit the group's pattern.
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
        layers_by_group, self.excluded_heads = match_layers(
            model, resolved, recipe.source,
            check_shape=lambda g, name, out_f, in_f: parse_pattern(g.pattern).check_shape(out_f, in_f),
        )
        self.layers: dict[str, _Layer] = {}
        self.groups: list[_Group] = []
        for cfg, matched in zip(resolved, layers_by_group, strict=True):
            group_layers = []
            criterion = None if cfg.kind.criterion is None else make_criterion(cfg.kind.criterion)
            for name, module, transposed in matched:
                weight = module.weight
                pruned = torch.zeros(weight.shape, dtype=torch.bool, device=weight.device)
                layer = _Layer(
                    name=name,
                    weight=weight,
                    transposed=transposed,
                    group=cfg.index,
                    pruned=pruned,
                    committed=pruned,
                    score=criterion.new_score(weight.detach()) if criterion is not None else None,
                )
                self.layers[name] = layer
                group_layers.append(layer)
            _pack_scores(group_layers)
            self.groups.append(_Group(cfg, group_layers))

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
                layers = [layer for layer in group.layers if layer.score is not None]
                assert group.criterion is not None
                group.criterion.update(
                    [layer.score for layer in layers],  # type: ignore[misc]
                    [layer.weight for layer in layers],
                    [layer.weight.grad for layer in layers],
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
                    self._progressive_stage(group, stage)
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
        """Step, per-group progress, per-layer masks and scores (tensors, ints and strings only)."""
        layers = {}
        for name, layer in self.layers.items():
            entry: dict[str, Any] = {"pruned": layer.pruned.cpu()}
            if layer.committed is not layer.pruned:
                entry["committed"] = layer.committed.cpu()
            if layer.score is not None:
                entry["score"] = layer.score.cpu()
            layers[name] = entry
        return {
            "format": STATE_FORMAT,
            "step": self.step,
            "began": self.began,
            "groups": [
                {"done_index": g.done_index, "locked": g.locked, "pending_total": g.pending_total}
                for g in self.groups
            ],
            "layers": layers,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict()`; the masks are applied to the weights at once."""
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise CheckpointError("the checkpoint's pruner state is not a prunecli pruner state")
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
            layer.set_pruned(pruned, committed)
            if layer.score is not None and entry.get("score") is not None:
                layer.score.copy_(entry["score"].to(device))
        for group, g in zip(self.groups, state["groups"], strict=True):
            group.done_index = int(g["done_index"])
            group.locked = bool(g["locked"])
            group.pending_total = int(g["pending_total"])
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

    def log_values(self) -> dict[str, float]:
        """Cheap values for a tracker: `sparsity`, `target_sparsity`, and per group when there are several."""
        values = {"sparsity": self.current_sparsity(), "target_sparsity": self.target_sparsity()}
        if len(self.groups) > 1:
            for g in self.groups:
                pruned = sum(layer.n_pruned for layer in g.layers)
                values[f"sparsity/group{g.cfg.index}"] = pruned / g.numel if g.numel else 0.0
        return values

    def event_steps(self) -> list[int]:
        """The optimizer steps at which some group prunes, in order."""
        return sorted({step for group in self.groups for step in group.schedule.event_steps()})

    def layer_sparsity(self) -> dict[str, float]:
        return {name: layer.n_pruned / layer.numel for name, layer in self.layers.items()}

    def keep_masks(self) -> dict[str, torch.Tensor]:
        """Boolean keep-masks in each weight's own layout (True = kept)."""
        return {name: ~layer.pruned for name, layer in self.layers.items()}

    def plan(self) -> list[dict[str, Any]]:
        """Per group: which layers, pattern, target, scope and schedule (what `prune --dry_run` prints)."""
        out = []
        for g in self.groups:
            s = g.schedule
            out.append(
                {
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
            )
        return out

    def resolved_recipe(self) -> dict[str, Any]:
        """The recipe as run: every group fully resolved with its `layers` (a valid recipe itself)."""
        groups = []
        for g in self.groups:
            d = g.cfg.to_dict()
            d["pruning_frequency"] = g.schedule.frequency
            d["layers"] = [layer.name for layer in g.layers]
            groups.append(d)
        return {"pruning_configs": groups, "excluded_heads": list(self.excluded_heads)}

    # ------------------------------------------------------------------ internals
    def _catch_up(self, group: _Group) -> bool:
        """Run the latest schedule event not yet processed; True when one ran."""
        if group.lock:
            return False
        index = group.schedule.event_index_at(self.step)
        if index <= group.done_index:
            return False
        if group.uses_grad and self.step == 0:
            return False  # no gradient yet: a step-0 event runs after the first optimizer step
        self._event(group, index)
        return True

    @torch.no_grad()
    def _event(self, group: _Group, index: int) -> None:
        group.done_index = index
        target = group.schedule.target_at_event(index)
        assert group.criterion is not None
        scores = [layer.as2d(group.criterion.score(layer.score, layer.weight)) for layer in group.layers]
        cfg = group.cfg
        states = [
            allocation.LayerState(
                scores=sc, committed=layer.as2d(layer.committed), n_committed=layer.n_committed,
                cap=allocation.layer_cap(cfg.max_sparsity_ratio_per_op, layer.numel,
                                         group.pattern.prunable(layer.shape2d), layer.n_committed),
            )
            for layer, sc in zip(group.layers, scores, strict=True)
        ]
        if cfg.pruning_scope == "local":
            picked = allocation.local_masks(group.pattern, states, target, cfg.criterion_reduce_type)
        else:
            picked = allocation.global_masks(group.pattern, states, target, final_target=cfg.target_sparsity,
                                             min_ratio=cfg.min_sparsity_ratio_per_op,
                                             reduce=cfg.criterion_reduce_type)
        new = [layer.from2d(mask) for layer, (mask, _) in zip(group.layers, picked, strict=True)]
        counts = [count for _, count in picked]
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
    def _progressive_stage(self, group: _Group, stage: int) -> None:
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
        pooled = torch.cat(
            [criterion.score(lay.score, lay.weight)[p].float() for lay, p in zip(group.layers, pending, strict=True)]
        )
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


def _multiply(tensors: list[torch.Tensor], keeps: list) -> None:
    """`t *= keep` for every pair, in one fused call where the devices and dtypes allow it."""
    if not tensors:
        return
    try:
        torch._foreach_mul_(tensors, keeps)
    except RuntimeError:  # mixed devices/dtypes: one by one
        for t, k in zip(tensors, keeps, strict=True):
            t.mul_(k)


def _pack_scores(layers: list[_Layer]) -> None:
    """Put a group's scores into one contiguous buffer (each layer's score a view of it).

    The per-step score update and the pooled selection of global scope then run as a few large
    operations over the buffer instead of one small operation per layer, and pooling 1x1 units
    needs no copy. Scores of mixed devices or dtypes stay separate.
    """
    scores = [layer.score for layer in layers]
    if len(scores) < 2 or any(s is None for s in scores):
        return
    first = scores[0]
    if any(s.dtype != first.dtype or s.device != first.device for s in scores):  # type: ignore[union-attr]
        return
    flat = torch.empty(sum(s.numel() for s in scores), dtype=first.dtype, device=first.device)  # type: ignore[union-attr]
    offset = 0
    for layer in layers:
        n = layer.score.numel()  # type: ignore[union-attr]
        layer.score = flat[offset : offset + n].view(layer.score.shape).copy_(layer.score)  # type: ignore[union-attr]
        offset += n
