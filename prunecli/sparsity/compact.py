"""Compaction: physically remove pruned attention heads and feed-forward neurons, with the same function.

Pruning leaves zeros in dense matrices; compaction turns whole zero structures into smaller matrices, which
is what makes a model faster on any runtime. Which units go, and why that is exact, is decided by
`prunecli.structure.plan_units` (the same rule the sparsity report counts a checkpoint with): heads whose
output columns, or value rows and value bias, are zero; neurons whose down column is zero, and neurons
whose up row is zero, whose constant `act(bias)` is folded into the down bias here before they go (never
dropped). A block left with no head keeps one silent head, so the attention module still has a shape.

`plan_compaction(model)` finds the units, `compact_(model, plan)` rewrites the Linear modules in place;
`layer_sizes(model)` / `apply_layer_sizes(model, sizes)` describe and rebuild the per-layer shapes (what a
saved compact checkpoint's config records). torch only: the checkpoint format is `prunecli.models.architectures`'.
"""

from __future__ import annotations

import torch
from torch import nn

from prunecli.structure import (
    HEAD_COUNT_ATTRS,
    AttentionBlock,
    CompactionPlan,
    Structure,
    activation_of,
    plan_units,
    read_model,
    zero_lines,
)

__all__ = ["CompactionPlan", "apply_layer_sizes", "compact_", "layer_sizes", "plan_compaction"]


def _module(model: nn.Module, name: str) -> nn.Linear:
    module = model.get_submodule(name)
    assert isinstance(module, nn.Linear), name
    return module


@torch.no_grad()
def plan_compaction(model: nn.Module, structure: Structure | None = None) -> CompactionPlan:
    """The heads and neurons of `model` that can be removed exactly: `prunecli.structure.plan_units` over the
    zero lines of its weights, the very rule the report counts a checkpoint with."""
    structure = structure or read_model(model)
    params = dict(model.named_parameters(remove_duplicate=False))
    lines = {name: zero_lines((params[name] == 0).cpu().numpy())
             for name in structure.zero_lines_needed() if name in params}
    return plan_units(structure, lines)


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
    for attr in HEAD_COUNT_ATTRS:
        if isinstance(getattr(module, attr, None), int):
            setattr(module, attr, heads)
    if isinstance(getattr(module, "all_head_size", None), int):
        module.all_head_size = heads * block.head_size


@torch.no_grad()
def compact_(model: nn.Module, plan: CompactionPlan | None = None) -> CompactionPlan:
    """Remove the planned heads and neurons from `model` in place (the plan of `plan_compaction` by default)."""
    structure = read_model(model)
    plan = plan or plan_compaction(model, structure)
    for block in structure.attention:
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
    for block in structure.feed_forward:
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
    structure = read_model(model)
    attention, ffn = structure.attention, structure.feed_forward
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
    structure = read_model(model)
    attention, ffn = structure.attention, structure.feed_forward
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
