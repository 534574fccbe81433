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

Your own criterion: subclass `Criterion` and `register_criterion("name", YourCriterion)`; recipes
can then say `"pruning_type": "name"` (or `"name_progressive"`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch


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


_REGISTRY: dict[str, Callable[[], Criterion]] = {
    "snip_momentum": SnipMomentumCriterion,
    "snip": SnipCriterion,
    "magnitude": MagnitudeCriterion,
    "gradient": GradientCriterion,
}
#: The built-in criteria (INC 2.x's), in the order the docs list them.


def register_criterion(name: str, factory: Callable[[], Criterion]) -> None:
    """Make `factory()` (a Criterion subclass, or any callable returning a Criterion) available as the
    pruning type `name` and `name_progressive` in recipes. Names are unique; built-ins cannot be replaced."""
    if not name or not name.replace("_", "").isalnum() or name.endswith("_progressive") or name == "pattern_lock":
        raise ValueError(f"invalid criterion name {name!r}: letters, digits and underscores, no _progressive suffix")
    if name in _REGISTRY:
        raise ValueError(f"a criterion named {name!r} is already registered")
    _REGISTRY[name] = factory


def criterion_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def make_criterion(name: str) -> Criterion:
    """A new criterion object by its registered name (a pruning type's criterion, see recipe.parse_pruning_type)."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown pruning criterion {name!r}; expected one of {criterion_names()}") from None
    criterion = factory()
    if not isinstance(criterion, Criterion):
        raise TypeError(f"criterion factory {name!r} returned {type(criterion).__name__}, not a Criterion")
    return criterion
