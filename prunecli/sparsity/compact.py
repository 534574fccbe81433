"""Compaction: physically remove pruned attention heads and feed-forward neurons, with the same function.

Pruning leaves zeros in dense matrices; compaction turns whole zero structures into smaller matrices, which
is what makes a model faster on any runtime. A unit is removed only where that is exact:

- an attention head whose output-projection columns are all zero contributes nothing (whatever its query,
  key and value compute), and neither does one whose value rows and value bias are zero; it is removed
  with its query, key and value rows (and biases) and its output columns. A block left with no head keeps
  one silent head (zero output columns: it adds nothing), so the attention module still has a shape;
- a feed-forward neuron whose down-projection column is zero contributes nothing; one whose up-projection
  row is zero outputs the constant `act(bias)`, whose contribution `down[:, i] * act(bias_i)` is folded
  into the down projection's bias before the neuron is removed (never dropped). Without a known
  activation such a neuron is kept.

`plan_compaction(model)` finds the units, `compact_(model, plan)` rewrites the Linear modules in place;
`layer_sizes(model)` / `apply_layer_sizes(model, sizes)` describe and rebuild the per-layer shapes (what a
saved compact checkpoint's config records). torch only: the checkpoint format is `prunecli.models.architectures`'.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from prunecli.sparsity.structure import (
    AttentionBlock,
    activation_of,
    attention_blocks,
    feed_forward_blocks,
)


@dataclass
class CompactionPlan:
    """What `compact_` keeps: per attention block the head indices, per feed-forward block the neurons."""

    heads: dict[str, list[int]] = field(default_factory=dict)
    neurons: dict[str, list[int]] = field(default_factory=dict)
    folded: dict[str, list[int]] = field(default_factory=dict)  # neurons whose constant output was folded
    head_totals: dict[str, int] = field(default_factory=dict)
    neuron_totals: dict[str, int] = field(default_factory=dict)

    @property
    def heads_removed(self) -> int:
        return sum(self.head_totals[b] - len(kept) for b, kept in self.heads.items())

    @property
    def neurons_removed(self) -> int:
        return sum(self.neuron_totals[b] - len(kept) for b, kept in self.neurons.items())

    def summary(self) -> list[dict[str, Any]]:
        """Per layer (attention and feed-forward blocks in order): units kept of units."""
        out = []
        for name, kept in self.heads.items():
            out.append({"block": name, "unit": "head", "kept": len(kept), "of": self.head_totals[name]})
        for name, kept in self.neurons.items():
            out.append({"block": name, "unit": "neuron", "kept": len(kept), "of": self.neuron_totals[name],
                        "folded": len(self.folded.get(name, []))})
        return out


def _module(model: nn.Module, name: str) -> nn.Linear:
    module = model.get_submodule(name)
    assert isinstance(module, nn.Linear), name
    return module


@torch.no_grad()
def plan_compaction(model: nn.Module) -> CompactionPlan:
    """The heads and neurons of `model` that can be removed exactly (see the module doc)."""
    plan = CompactionPlan()
    for block in attention_blocks(model):
        out = _module(model, block.output).weight
        value = _module(model, block.value)
        d = block.head_size
        kept = []
        for h in range(block.num_heads):
            cols = slice(h * d, (h + 1) * d)
            silent_output = bool((out[:, cols] == 0).all())
            silent_value = bool((value.weight[cols] == 0).all()) and (
                value.bias is None or bool((value.bias[cols] == 0).all()))
            if not (silent_output or silent_value):
                kept.append(h)
        plan.heads[block.name] = kept or [0]  # a block keeps one silent head to keep its shape
        plan.head_totals[block.name] = block.num_heads
    for block in feed_forward_blocks(model):
        up, down = _module(model, block.up), _module(model, block.down)
        silent = (down.weight == 0).all(dim=0)
        constant = (up.weight == 0).all(dim=1) & ~silent
        if activation_of(model, block) is None:
            constant[:] = False  # the constant cannot be computed: keep those neurons
        plan.neurons[block.name] = torch.nonzero(~(silent | constant)).reshape(-1).tolist()
        plan.folded[block.name] = torch.nonzero(constant).reshape(-1).tolist()
        plan.neuron_totals[block.name] = block.size
    return plan


def _rows(linear: nn.Linear, index: torch.Tensor) -> nn.Linear:
    new = nn.Linear(linear.in_features, len(index), bias=linear.bias is not None,
                    device=linear.weight.device, dtype=linear.weight.dtype)
    new.weight.copy_(linear.weight[index])
    if linear.bias is not None:
        new.bias.copy_(linear.bias[index])
    return new


def _columns(linear: nn.Linear, index: torch.Tensor) -> nn.Linear:
    new = nn.Linear(len(index), linear.out_features, bias=linear.bias is not None,
                    device=linear.weight.device, dtype=linear.weight.dtype)
    new.weight.copy_(linear.weight[:, index])
    if linear.bias is not None:
        new.bias.copy_(linear.bias)
    return new


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, module)


def _set_head_count(model: nn.Module, block: AttentionBlock, heads: int) -> None:
    module = model.get_submodule(block.name)
    for attr in ("num_attention_heads", "n_heads", "num_heads"):
        if isinstance(getattr(module, attr, None), int):
            setattr(module, attr, heads)
    if isinstance(getattr(module, "all_head_size", None), int):
        module.all_head_size = heads * block.head_size


@torch.no_grad()
def compact_(model: nn.Module, plan: CompactionPlan | None = None) -> CompactionPlan:
    """Remove the planned heads and neurons from `model` in place (the plan of `plan_compaction` by default)."""
    plan = plan or plan_compaction(model)
    for block in attention_blocks(model):
        kept = plan.heads[block.name]
        if len(kept) == block.num_heads:
            continue
        d = block.head_size
        rows = torch.tensor([h * d + i for h in kept for i in range(d)], dtype=torch.long)
        for name in (block.query, block.key, block.value):
            _replace(model, name, _rows(_module(model, name), rows.to(_module(model, name).weight.device)))
        out = _module(model, block.output)
        _replace(model, block.output, _columns(out, rows.to(out.weight.device)))
        _set_head_count(model, block, len(kept))
    for block in feed_forward_blocks(model):
        kept = plan.neurons[block.name]
        if len(kept) == block.size:
            continue
        up, down = _module(model, block.up), _module(model, block.down)
        folded = plan.folded.get(block.name, [])
        if folded:
            index = torch.tensor(folded, dtype=torch.long, device=up.weight.device)
            activation = activation_of(model, block)
            bias = (up.bias[index] if up.bias is not None
                    else torch.zeros(len(index), dtype=up.weight.dtype, device=up.weight.device))
            constant = activation(bias)
            if down.bias is None:
                down.bias = nn.Parameter(torch.zeros(down.out_features, dtype=down.weight.dtype,
                                                     device=down.weight.device))
            down.bias.add_(down.weight[:, index] @ constant)
        index = torch.tensor(kept, dtype=torch.long, device=up.weight.device)
        _replace(model, block.up, _rows(up, index))
        _replace(model, block.down, _columns(down, index))
    return plan


def layer_sizes(model: nn.Module) -> list[dict[str, int]]:
    """Per encoder layer (attention and feed-forward blocks paired in order): heads and neurons it has."""
    attention, ffn = attention_blocks(model), feed_forward_blocks(model)
    if len(attention) != len(ffn):
        raise ValueError(f"{len(attention)} attention blocks but {len(ffn)} feed-forward blocks")
    return [{"num_attention_heads": a.num_heads, "intermediate_size": f.size} for a, f in zip(attention, ffn,
                                                                                              strict=True)]


def _resized(linear: nn.Linear, *, out_features: int | None = None, in_features: int | None = None) -> nn.Linear:
    """A new Linear like `linear` with other sizes (its weights are loaded afterwards)."""
    return nn.Linear(linear.in_features if in_features is None else in_features,
                     linear.out_features if out_features is None else out_features,
                     bias=linear.bias is not None, device=linear.weight.device, dtype=linear.weight.dtype)


def apply_layer_sizes(model: nn.Module, sizes: list[dict[str, int]]) -> None:
    """Shrink a freshly built (dense-shaped) model to per-layer sizes, before its weights are loaded."""
    attention, ffn = attention_blocks(model), feed_forward_blocks(model)
    if len(sizes) != len(attention) or len(sizes) != len(ffn):
        raise ValueError(f"the checkpoint describes {len(sizes)} layers, the model has {len(attention)}")
    for spec, a, f in zip(sizes, attention, ffn, strict=True):
        heads, neurons = int(spec["num_attention_heads"]), int(spec["intermediate_size"])
        if heads != a.num_heads:
            width = heads * a.head_size
            for name in (a.query, a.key, a.value):
                _replace(model, name, _resized(_module(model, name), out_features=width))
            _replace(model, a.output, _resized(_module(model, a.output), in_features=width))
            _set_head_count(model, a, heads)
        if neurons != f.size:
            _replace(model, f.up, _resized(_module(model, f.up), out_features=neurons))
            _replace(model, f.down, _resized(_module(model, f.down), in_features=neurons))
