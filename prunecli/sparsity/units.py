"""Heads and neurons as rows of a matrix: the view that lets the row pattern select structural units.

A structural block (an attention block, a feed-forward block) has members: 2-D tensors in `[out, in]`
layout, each cut into the block's units along one axis. A head owns `head_size` consecutive rows of
the query, key and value projections (axis 0) and the same columns of the output projection (axis 1);
a neuron owns one row of the up projection and one column of the down projection. `unit_view` lays a
block's member tensors out as one `[units, elements per unit]` matrix (row u holds every weight of
unit u), so `ChannelPattern(axis=0)` and the allocation functions select whole units, in local or
global scope, with the usual scores and bounds; `unit_masks` turns selected rows back into element
masks of each member.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Member:
    """One tensor of a block: cut into `units` slices of `size` along `axis` (0: rows, 1: columns)."""

    axis: int
    size: int


def unit_view(tensors: list[torch.Tensor], members: list[Member], units: int) -> torch.Tensor:
    """`[units, elements per unit]`: row u is every element of unit u, member after member."""
    parts = []
    for t, m in zip(tensors, members, strict=True):
        if t.shape[m.axis] != units * m.size:
            raise ValueError(f"a member of shape {tuple(t.shape)} does not split into {units} units of {m.size} "
                             f"along axis {m.axis}")
        if m.axis == 0:
            parts.append(t.reshape(units, -1))
        else:  # [rows, units * size] -> [units, rows * size]
            parts.append(t.reshape(t.shape[0], units, m.size).permute(1, 0, 2).reshape(units, -1))
    return torch.cat(parts, dim=1)


def unit_masks(selected: torch.Tensor, shapes: list[tuple[int, int]], members: list[Member]) -> list[torch.Tensor]:
    """Element masks of each member (True where a selected unit lies) from a `[units]` boolean vector."""
    masks = []
    for shape, m in zip(shapes, members, strict=True):
        along = selected.repeat_interleave(m.size)
        masks.append(along[:, None].expand(shape) if m.axis == 0 else along[None, :].expand(shape))
    return [mask.contiguous() for mask in masks]
