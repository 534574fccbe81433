"""Pruning criteria: weights and gradients -> importance scores (a low score is pruned first).

Small interchangeable objects in the style of Torch-Pruning's importance functions. A criterion
keeps no per-layer state itself: the pruner owns one score tensor per layer (so that it can be
checkpointed) and hands the lists in.

- `magnitude`: |W| at the pruning event (no gradient needed).
- `gradient`:  |G| of the latest optimizer step.
- `snip`:      |W * G| of the latest optimizer step (SNIP, Lee et al. 2019).
- `snip_momentum` (default): `score = 0.9 * score + |W * G|` after every optimizer step, the
  criterion of Intel Neural Compressor 2.x.

Scores are updated once per optimizer step, with the final (accumulated, all-reduced)
gradients, never per micro-batch. Non-finite contributions (an overflowing fp16 step that the
grad scaler will skip) are dropped instead of poisoning the momentum forever.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

CRITERIA = ("snip_momentum", "snip", "magnitude", "gradient")


class Criterion(ABC):
    """How a weight's importance is measured."""

    name: str
    #: True when the score must be refreshed on every optimizer step (a running average);
    #: False when only the step just before a pruning event matters.
    every_step: bool = False
    #: True when `update` needs gradients.
    needs_grad: bool = True

    def new_score(self, weight: torch.Tensor) -> torch.Tensor | None:
        """The stored score of a fresh layer (None for criteria that read the weights at the event)."""
        return torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)

    @abstractmethod
    def update(
        self, scores: list[torch.Tensor], weights: list[torch.Tensor], grads: list[torch.Tensor | None]
    ) -> None:
        """Fold one optimizer step's gradients into `scores` (in place; all lists are aligned).

        A None gradient (a layer the loss did not reach this step) counts as a zero gradient.
        """

    def score(self, stored: torch.Tensor | None, weight: torch.Tensor) -> torch.Tensor:
        """The score used at a pruning event."""
        assert stored is not None
        return stored

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _flat_view(tensors: list[torch.Tensor]) -> torch.Tensor | None:
    """A 1-D view spanning `tensors` when they lie end to end in one storage (as packed scores do), else None."""
    if not tensors:
        return None
    first = tensors[0]
    storage = first.untyped_storage().data_ptr()
    offset = first.storage_offset()
    for t in tensors:
        if (not t.is_contiguous() or t.dtype != first.dtype or t.device != first.device
                or t.untyped_storage().data_ptr() != storage or t.storage_offset() != offset):
            return None
        offset += t.numel()
    return first.as_strided((offset - first.storage_offset(),), (1,), first.storage_offset())


def _finite(x: torch.Tensor) -> torch.Tensor:
    return torch.nan_to_num_(x, nan=0.0, posinf=0.0, neginf=0.0)


class MagnitudeCriterion(Criterion):
    name = "magnitude"
    needs_grad = False

    def new_score(self, weight):
        return None

    def update(self, scores, weights, grads) -> None:
        return None

    def score(self, stored, weight):
        return _finite(weight.detach().abs().float())  # a NaN weight scores 0: it goes first


class GradientCriterion(Criterion):
    name = "gradient"

    def update(self, scores, weights, grads) -> None:
        for s, g in zip(scores, grads, strict=True):
            if g is None:
                s.zero_()
            else:
                _finite(s.copy_(g.detach()).abs_())


class SnipCriterion(Criterion):
    name = "snip"

    def update(self, scores, weights, grads) -> None:
        for s, w, g in zip(scores, weights, grads, strict=True):
            if g is None:
                s.zero_()
            else:
                _finite(s.copy_(w.detach() * g.detach()).abs_())


class SnipMomentumCriterion(Criterion):
    """`score = momentum * score + |W * G|` (momentum 0.9 as in Intel Neural Compressor 2.x)."""

    name = "snip_momentum"
    every_step = True

    def __init__(self, momentum: float = 0.9):
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum

    def update(self, scores, weights, grads) -> None:
        if not scores:
            return
        for s, w, g in zip(scores, weights, grads, strict=True):
            if g is None:
                s.mul_(self.momentum)
                continue
            # One reused, cache-sized buffer instead of a fresh tensor per layer: allocating (and
            # page-faulting) 4 bytes per weight every step costs more than the arithmetic. The
            # momentum is applied layer by layer, right before the add, so each score is read from
            # memory once per step (the same two roundings as `score * m + |W*G|` in two steps).
            buf = self._scratch(s)
            torch.mul(w.detach(), g.detach(), out=buf)
            _finite(buf.abs_())
            s.mul_(self.momentum).add_(buf)

    def _scratch(self, like: torch.Tensor) -> torch.Tensor:
        buf = getattr(self, "_buf", None)
        if buf is None or buf.numel() < like.numel() or buf.device != like.device:
            buf = self._buf = torch.empty(like.numel(), dtype=torch.float32, device=like.device)
        return buf[: like.numel()].view(like.shape)

    def __repr__(self) -> str:
        return f"SnipMomentumCriterion(momentum={self.momentum})"


_BY_NAME = {
    "magnitude": MagnitudeCriterion,
    "gradient": GradientCriterion,
    "snip": SnipCriterion,
    "snip_momentum": SnipMomentumCriterion,
}


def make_criterion(name: str) -> Criterion:
    """A criterion by name; a `_progressive` suffix (an INC pruning type) is accepted and ignored here."""
    base = name[: -len("_progressive")] if name.endswith("_progressive") else name
    try:
        return _BY_NAME[base]()
    except KeyError:
        raise ValueError(f"unknown pruning criterion {name!r}; expected one of {CRITERIA}") from None
