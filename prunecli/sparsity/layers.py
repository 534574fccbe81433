"""The pruner's state: one `PrunedLayer` per pruned weight, and the groups that prune them.

- `PrunedLayer`: a weight and its mask (the union of what every group pruned in it), the `keep`
  multiplier applied after every optimizer step, and what structural groups removed (`structural`).
- `ElementGroup`: a recipe group with a per-tensor pattern (NxM, N:M, channel): its layers, their
  scores, its schedule; progressive pruning types stage each event's new units.
- `StructureGroup`: a recipe group with pattern `head` or `neuron`: its blocks (attention or
  feed-forward), each a set of member layers cut into units (`units.Member`), with the units removed.

A layer belongs to at most one element group and to any structure groups; an element pattern on a
layer that heads or neurons also prune applies to what they leave (`allocation.LayerState.base`), and
`check_sharing` enforces these rules when the pruner is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from prunecli.errors import RecipeError
from prunecli.sparsity.criteria import Criterion, make_criterion
from prunecli.sparsity.patterns import ChannelPattern, NMPattern, Pattern, StructurePattern, parse_pattern
from prunecli.sparsity.recipe import ResolvedGroup
from prunecli.sparsity.schedule import Schedule
from prunecli.sparsity.units import Member

#: Stages over which a `_progressive` pruning type spreads each event's newly pruned weights.
PROGRESSIVE_STAGES = 4


@dataclass(eq=False)
class PrunedLayer:
    """One pruned weight. `pruned` is applied to the weight; `committed` is the latest event's mask (they
    differ only while a progressive group is between stages)."""

    name: str
    weight: nn.Parameter
    transposed: bool  # HF Conv1D stores [in, out]; patterns see [out, in]
    pruned: torch.Tensor
    committed: torch.Tensor
    n_pruned: int = 0
    n_committed: int = 0
    structural: torch.Tensor | None = None  # weights structural groups removed (heads, neurons)
    n_structural: int = 0
    #: `~pruned` in the weight's dtype, created at the first pruning: multiplying by it is ~3x faster
    #: than `masked_fill_`, and it is what every optimizer step pays for.
    keep: torch.Tensor | None = None
    fresh: bool = False  # the mask changed since it was last applied

    @classmethod
    def of(cls, name: str, weight: nn.Parameter, transposed: bool) -> PrunedLayer:
        pruned = torch.zeros(weight.shape, dtype=torch.bool, device=weight.device)
        return cls(name=name, weight=weight, transposed=transposed, pruned=pruned, committed=pruned)

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
            self.fresh = True  # the next apply zeroes by assignment (NaN * 0 would stay NaN)

    def add_structural(self, removed: torch.Tensor) -> None:
        """Remove more weights for a structural group (weight layout): they count as pruned, for good."""
        self.structural = removed if self.structural is None else self.structural | removed
        self.n_structural = int(torch.count_nonzero(self.structural))
        self.set_pruned(self.pruned | removed)


class _Group:
    """What every group has: its recipe settings, criterion, schedule, scores and progress."""

    def __init__(self, cfg: ResolvedGroup, scored: list[PrunedLayer]):
        self.cfg = cfg
        kind = cfg.kind
        self.lock = kind.lock
        self.criterion: Criterion | None = None if kind.criterion is None else make_criterion(kind.criterion)
        self.schedule = Schedule(
            cfg.start_step, cfg.end_step, cfg.pruning_frequency, cfg.target_sparsity, cfg.sparsity_decay_type,
            cfg.initial_sparsity,
        )
        #: the layers whose weights this group scores, and their scores (None: read at the event)
        self.scored = scored
        self.scores: list[torch.Tensor | None] = [
            self.criterion.new_score(layer.weight.detach()) if self.criterion is not None else None
            for layer in scored
        ]
        pack_scores(self.scores)
        self.numel = sum(layer.numel for layer in scored)
        self.done_index = -1  # latest schedule event processed
        self.locked = False  # pattern_lock masks captured
        self.pending_total = 0  # progressive: weights the latest event prunes over its stages
        self.progressive = False

    @property
    def uses_grad(self) -> bool:
        return self.criterion is not None and self.criterion.needs_grad

    def stage_at(self, step: int) -> int | None:
        return None

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

    def element_scores(self) -> list[torch.Tensor]:
        """The score of every scored layer at an event, `[out, in]`."""
        assert self.criterion is not None
        return [layer.as2d(self.criterion.score(score, layer.weight))
                for layer, score in zip(self.scored, self.scores, strict=True)]


class ElementGroup(_Group):
    """A group whose pattern acts on each weight tensor (NxM blocks, N:M, channels)."""

    def __init__(self, cfg: ResolvedGroup, layers: list[PrunedLayer]):
        super().__init__(cfg, layers)
        self.layers = layers
        self.pattern: Pattern = parse_pattern(cfg.pattern)  # type: ignore[assignment]
        f = self.schedule.frequency
        self.stages = min(PROGRESSIVE_STAGES, f)
        self.stage_interval = max(1, f // PROGRESSIVE_STAGES)
        # As in Intel Neural Compressor: too short a window degrades to plain pruning.
        self.progressive = (
            cfg.kind.progressive and self.stages > 1 and (cfg.end_step - cfg.start_step) > PROGRESSIVE_STAGES
        )

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


@dataclass(eq=False)
class Block:
    """One attention or feed-forward block of a structure group: member layers cut into `units`."""

    name: str
    layers: list[PrunedLayer]
    members: list[Member]
    units: int
    min_units: int
    pruned_units: torch.Tensor = field(default=None)  # type: ignore[assignment]  # [units] bool

    def __post_init__(self):
        if self.pruned_units is None:
            self.pruned_units = torch.zeros(self.units, dtype=torch.bool, device=self.layers[0].weight.device)

    @property
    def unit_size(self) -> int:
        """Weights one unit holds (over every member)."""
        return sum(layer.numel // self.units for layer in self.layers)

    @property
    def numel(self) -> int:
        return sum(layer.numel for layer in self.layers)


class StructureGroup(_Group):
    """A group whose units are heads or neurons: each spans rows and columns of several layers."""

    def __init__(self, cfg: ResolvedGroup, blocks: list[Block]):
        scored = list(dict.fromkeys(layer for block in blocks for layer in block.layers))
        super().__init__(cfg, scored)
        self.blocks = blocks
        self.pattern = parse_pattern(cfg.pattern)
        assert isinstance(self.pattern, StructurePattern)
        self.unit_name = self.pattern.kind

    @property
    def layers(self) -> list[PrunedLayer]:
        return self.scored

    def score_index(self, layer: PrunedLayer) -> int:
        return next(i for i, scored in enumerate(self.scored) if scored is layer)


def pack_scores(scores: list[torch.Tensor | None]) -> None:
    """Put a group's scores into one contiguous buffer (each score becomes a view of it), in place.

    The per-step score update and the pooled selection of global scope then run as a few large
    operations over the buffer instead of one small operation per layer, and pooling 1x1 units
    needs no copy. Scores of mixed devices or dtypes stay separate.
    """
    if len(scores) < 2 or any(s is None for s in scores):
        return
    first = scores[0]
    assert first is not None
    if any(s.dtype != first.dtype or s.device != first.device for s in scores):  # type: ignore[union-attr]
        return
    flat = torch.empty(sum(s.numel() for s in scores), dtype=first.dtype, device=first.device)  # type: ignore
    offset = 0
    for i, s in enumerate(scores):
        n = s.numel()  # type: ignore[union-attr]
        scores[i] = flat[offset : offset + n].view(s.shape).copy_(s)  # type: ignore[union-attr]
        offset += n


def check_sharing(groups: list[ElementGroup | StructureGroup], source: str | None) -> None:
    """A layer may be in one element group and in structure groups; no block in two groups of one kind; an
    element pattern on a layer that heads or neurons cut must not span their cuts (so what remains keeps the
    pattern after compaction); a progressive element group shares no layer with a structure group."""
    structure_layers: dict[int, str] = {}
    cuts: dict[int, tuple[int, int]] = {}  # layer -> (axis of [out, in] the structure removes, slices of size)
    blocks: dict[tuple[str, str], ResolvedGroup] = {}
    for g in groups:
        if isinstance(g, StructureGroup):
            for block in g.blocks:
                key = (g.unit_name, block.name)
                if key in blocks:
                    raise RecipeError(
                        f"block `{block.name}` is in two {g.unit_name} groups: `{blocks[key].path or 'top level'}` "
                        f"and `{g.cfg.path}`", "Each attention or feed-forward block may be in one group per "
                        "pattern: narrow op_names.", path=g.cfg.key_path("op_names"), source=source)
                blocks[key] = g.cfg
                for layer, member in zip(block.layers, block.members, strict=True):
                    structure_layers[id(layer)] = g.cfg.path or "top level"
                    cuts[id(layer)] = (member.axis, member.size)
    for g in groups:
        if not isinstance(g, ElementGroup):
            continue
        for layer in g.layers:
            if id(layer) not in cuts:
                continue
            axis, size = cuts[id(layer)]
            width = span(g.pattern, axis)
            if size % width:
                what = "rows" if axis == 0 else "input columns"
                better = "1x4" if axis == 0 else "4x1"
                raise RecipeError(
                    f"layer `{layer.name}` loses whole {what} to a head/neuron group, {size} at a time, but pattern "
                    f"{g.pattern.name} groups {width} of them: what remains could not keep {g.pattern.name}",
                    f"Use a pattern that stays within the kept {what} on that layer (e.g. {better}), or exclude it "
                    "from the group.", path=g.cfg.key_path("pattern"), source=source)
            if g.cfg.kind.progressive:
                raise RecipeError(
                    f"layer `{layer.name}` is pruned progressively by `{g.cfg.path or 'top level'}` and also by the "
                    f"head/neuron group `{structure_layers[id(layer)]}`",
                    "Use a plain pruning type (without _progressive) for element groups on head or neuron layers.",
                    path=g.cfg.key_path("pruning_type"), source=source)


def span(pattern, axis: int) -> int:
    """How many rows (axis 0) or input columns (axis 1) one unit of an element pattern covers."""
    if isinstance(pattern, NMPattern):
        return pattern.m if axis == 1 else 1
    if isinstance(pattern, ChannelPattern):
        return 1  # whole rows or whole columns: a cut removes whole units of it
    return pattern.rows if axis == 0 else pattern.cols


def check_reachable(groups: list[ElementGroup | StructureGroup], source: str | None) -> None:
    """A head or neuron group whose floors (`min_*_per_layer`, `max_sparsity_ratio_per_op`) leave too few
    removable units for its target is refused, instead of silently pruning less (or nothing)."""
    for g in groups:
        if not isinstance(g, StructureGroup) or not g.blocks:
            continue
        cfg, floor_key = g.cfg, f"min_{g.unit_name}s_per_layer"
        caps = [max(0, min(b.units - b.min_units, int(cfg.max_sparsity_ratio_per_op * b.units + 1e-9)))
                for b in g.blocks]
        if cfg.pruning_scope == "local":
            short = [(b, c) for b, c in zip(g.blocks, caps, strict=True) if c < round(cfg.target_sparsity * b.units)]
        else:
            total = sum(b.units for b in g.blocks)
            short = [] if sum(caps) >= round(cfg.target_sparsity * total) else [(None, sum(caps))]
        if short:
            block, cap = short[0]
            where = f"block `{block.name}` has {block.units} {g.unit_name}s" if block is not None else \
                f"its blocks have {sum(b.units for b in g.blocks)} {g.unit_name}s"
            raise RecipeError(
                f"target_sparsity {cfg.target_sparsity} cannot be reached: {where}, and {floor_key} "
                f"{getattr(cfg, floor_key)} (with max_sparsity_ratio_per_op {cfg.max_sparsity_ratio_per_op}) lets "
                f"only {cap} go", f"Lower {floor_key} or target_sparsity.", path=cfg.key_path(floor_key),
                source=source)
