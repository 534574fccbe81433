"""Sparsity patterns: which groups of weights are pruned together.

A Linear weight is `[out, in]` (rows are output features, columns input features). A pattern
splits it into *units* (the smallest thing that is pruned whole), scores each unit from the
element scores, and turns a selection of units back into an element mask. Every pattern has
the same small interface so that the pruner can pool units across layers (global scope):

- `unit_scores(scores, reduce)` -> 1-D tensor, one score per unit;
- `unit_sizes(shape)`          -> how many weights pruning each unit zeroes (an `int` when all
                                  units of the layer are equal, else a 1-D tensor);
- `expand(units, scores)`      -> element-level mask `[out, in]` from a boolean unit vector;
- `units_of(pruned)`           -> which units an element mask has already pruned;
- `analyse(scores)`            -> work shared by `unit_scores` and `expand` (N:M ranks each group
                                  once), passed to both as `analysis=`.

`keep_mask(scores, target)` puts these together for one layer (local scope).

Patterns:

- `BlockPattern(rows, cols)` (`"4x1"`, `"1x1"` = unstructured, `"2x2"`, `"1x16"`): blocks of
  `rows` output rows x `cols` input columns. A layer the block does not divide keeps its edge
  blocks as *partial* blocks (fewer weights; their score is reduced over the weights they have),
  so no layer is silently skipped (Intel Neural Compressor 2.x skipped such layers with a warning).
- `ChannelPattern(axis)`: `"1xchannel"` prunes whole output rows, `"channelx1"` whole input columns.
- `NMPattern(n, m)` (`"2:4"`): in every group of `m` consecutive weights along the input dimension
  at most `n` are non-zero (the NVIDIA/PyTorch convention: `n` is the number *kept*). A group is the
  unit: pruning it zeroes its `m - n` lowest-scored weights. Layers whose input size `m` does not
  divide are refused (`check_shape`): a partial group is not an N:M group for any sparse kernel.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from prunecli.sparsity.selection import _numpy, _units_size, select_lowest
from prunecli.structure import UNIT_PATTERNS

REDUCE_TYPES = ("mean", "sum", "max")

_BLOCK_RE = re.compile(r"^([1-9][0-9]*)x([1-9][0-9]*)$")
_NM_RE = re.compile(r"^([0-9]+):([0-9]+)$")


class PatternError(ValueError):
    """A pattern string that cannot be parsed; the recipe layer turns it into a RecipeError."""


def _reduce(x: torch.Tensor, dims: tuple[int, ...], reduce: str, partial: bool) -> torch.Tensor:
    """Reduce padded blocks; padding is NaN so that partial blocks use only their own weights."""
    if reduce == "mean":
        return torch.nanmean(x, dim=dims) if partial else x.mean(dim=dims)
    if reduce == "sum":
        return torch.nansum(x, dim=dims) if partial else x.sum(dim=dims)
    if reduce == "max":
        return torch.nan_to_num(x, nan=float("-inf")).amax(dim=dims) if partial else x.amax(dim=dims)
    raise ValueError(f"unknown criterion_reduce_type {reduce!r}; expected one of {REDUCE_TYPES}")


class Pattern(ABC):
    """The shape of a pruning unit. Immutable and shared: it holds no per-layer state."""

    name: str

    @property
    def max_sparsity(self) -> float:
        """The largest sparsity this pattern can reach in a layer (N:M caps it at (m-n)/m)."""
        return 1.0

    def check_shape(self, out_features: int, in_features: int) -> str | None:
        """Why a `[out, in]` weight cannot be pruned with this pattern, or None when it can."""
        return None

    def analyse(self, scores: torch.Tensor) -> Any:
        """Work that `unit_scores` and `expand` share for the same scores (None when there is none).

        A caller that needs both passes the result to each as `analysis=` (N:M ranks every group
        once instead of twice).
        """
        return None

    @abstractmethod
    def unit_scores(self, scores: torch.Tensor, reduce: str = "mean", analysis: Any = None) -> torch.Tensor:
        """One score per unit (1-D), from element scores `[out, in]`; a low score is pruned first."""

    @abstractmethod
    def unit_sizes(self, shape: tuple[int, int]) -> int | torch.Tensor:
        """Weights zeroed by pruning each unit: an int when all units are equal, else a 1-D tensor."""

    @abstractmethod
    def expand(self, units: torch.Tensor, scores: torch.Tensor, analysis: Any = None) -> torch.Tensor:
        """Element mask `[out, in]` that is True on the weights the selected `units` prune."""

    @abstractmethod
    def units_of(self, pruned: torch.Tensor) -> torch.Tensor:
        """Which units an element-level pruned mask has pruned (any pruned weight marks its unit)."""

    @abstractmethod
    def num_units(self, shape: tuple[int, int]) -> int:
        """How many units a `[out, in]` weight has."""

    def prunable(self, shape: tuple[int, int]) -> int:
        """How many weights of a layer this pattern can prune at most (before max_sparsity_ratio_per_op)."""
        sizes = self.unit_sizes(shape)
        return int(sizes.sum()) if isinstance(sizes, torch.Tensor) else sizes * self.num_units(shape)

    def keep_mask(
        self,
        scores: torch.Tensor,
        target_sparsity: float,
        *,
        reduce: str = "mean",
        keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Boolean keep-mask `[out, in]` reaching `target_sparsity` of the layer's weights (local scope).

        `keep` is the previous keep-mask: what it prunes stays pruned (masks are monotone), and the
        new mask prunes at least that much even if the target is lower.
        """
        pruned = torch.zeros_like(scores, dtype=torch.bool) if keep is None else ~keep
        budget = round(target_sparsity * scores.numel())
        return ~self.prune_more(scores, pruned, budget, reduce=reduce)

    def prune_more(
        self,
        scores: torch.Tensor,
        pruned: torch.Tensor,
        budget: int,
        *,
        reduce: str = "mean",
        rounding: str = "nearest",
        n_pruned: int | None = None,
    ) -> torch.Tensor:
        """Element pruned-mask with about `budget` weights pruned, extending `pruned` (never shrinking it).

        `n_pruned` (the number of True in `pruned`, when the caller knows it) saves a pass.
        """
        return self._prune_more_counted(scores, pruned, budget, reduce, rounding, n_pruned)[0]

    def _prune_more_counted(
        self, scores: torch.Tensor, pruned: torch.Tensor, budget: int, reduce: str, rounding: str,
        n_pruned: int | None,
    ) -> tuple[torch.Tensor, int]:
        """`prune_more`, and the number of True in its result (known from the units, without a pass)."""
        analysis = self.analyse(scores)
        unit_scores = self.unit_scores(scores, reduce, analysis).float()
        n_pruned = int(torch.count_nonzero(pruned)) if n_pruned is None else n_pruned
        sizes = self.unit_sizes(tuple(scores.shape))
        if n_pruned == 0:
            chosen = select_lowest(unit_scores, sizes, budget, rounding)
            return self.expand(chosen, scores, analysis), _units_size(chosen, sizes)
        already = self.units_of(pruned)
        unit_scores = unit_scores.masked_fill(already, float("-inf"))
        chosen = select_lowest(unit_scores, sizes, max(budget, n_pruned), rounding)
        fresh = chosen & ~already  # units with no pruned weight yet: disjoint from `pruned`
        return pruned | self.expand(fresh, scores, analysis), n_pruned + _units_size(fresh, sizes)

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class BlockPattern(Pattern):
    """Blocks of `rows` output rows x `cols` input columns, pruned whole; edge blocks may be partial."""

    rows: int
    cols: int

    def __post_init__(self):
        if self.rows < 1 or self.cols < 1:
            raise PatternError(f"block sizes must be >= 1, got {self.rows}x{self.cols}")

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{self.rows}x{self.cols}"

    def _grid(self, shape: tuple[int, int]) -> tuple[int, int]:
        return -(-shape[0] // self.rows), -(-shape[1] // self.cols)

    def num_units(self, shape: tuple[int, int]) -> int:
        r, c = self._grid(shape)
        return r * c

    def _divides(self, shape: tuple[int, int]) -> bool:
        return shape[0] % self.rows == 0 and shape[1] % self.cols == 0

    def unit_scores(self, scores: torch.Tensor, reduce: str = "mean", analysis: Any = None) -> torch.Tensor:
        out, inp = scores.shape
        r, c = self._grid((out, inp))
        partial = not self._divides((out, inp))
        x = scores.float()
        if partial:
            x = torch.nn.functional.pad(x, (0, c * self.cols - inp, 0, r * self.rows - out), value=float("nan"))
        return _reduce(x.reshape(r, self.rows, c, self.cols), (1, 3), reduce, partial).reshape(-1)

    def unit_sizes(self, shape: tuple[int, int]) -> int | torch.Tensor:
        if self._divides(shape):
            return self.rows * self.cols
        r, c = self._grid(shape)
        row_sizes = torch.full((r,), self.rows, dtype=torch.long)
        row_sizes[-1] = shape[0] - (r - 1) * self.rows
        col_sizes = torch.full((c,), self.cols, dtype=torch.long)
        col_sizes[-1] = shape[1] - (c - 1) * self.cols
        return (row_sizes[:, None] * col_sizes[None, :]).reshape(-1)

    def expand(self, units: torch.Tensor, scores: torch.Tensor, analysis: Any = None) -> torch.Tensor:
        out, inp = scores.shape
        r, c = self._grid((out, inp))
        grid = units.reshape(r, 1, c, 1).expand(r, self.rows, c, self.cols).reshape(r * self.rows, c * self.cols)
        return grid[:out, :inp].contiguous() if not self._divides((out, inp)) else grid

    def units_of(self, pruned: torch.Tensor) -> torch.Tensor:
        out, inp = pruned.shape
        r, c = self._grid((out, inp))
        x = pruned
        if not self._divides((out, inp)):
            x = torch.nn.functional.pad(x, (0, c * self.cols - inp, 0, r * self.rows - out), value=False)
        return x.reshape(r, self.rows, c, self.cols).any(dim=3).any(dim=1).reshape(-1)


@dataclass(frozen=True)
class ChannelPattern(Pattern):
    """Whole channels: axis 0 prunes output rows (`1xchannel`), axis 1 input columns (`channelx1`)."""

    axis: int

    def __post_init__(self):
        if self.axis not in (0, 1):
            raise PatternError(f"channel axis must be 0 (rows) or 1 (columns), got {self.axis}")

    @property
    def name(self) -> str:  # type: ignore[override]
        return "1xchannel" if self.axis == 0 else "channelx1"

    def num_units(self, shape: tuple[int, int]) -> int:
        return shape[self.axis]

    def unit_scores(self, scores: torch.Tensor, reduce: str = "mean", analysis: Any = None) -> torch.Tensor:
        return _reduce(scores.float(), (1 - self.axis,), reduce, False)

    def unit_sizes(self, shape: tuple[int, int]) -> int | torch.Tensor:
        return shape[1 - self.axis]

    def expand(self, units: torch.Tensor, scores: torch.Tensor, analysis: Any = None) -> torch.Tensor:
        if self.axis == 0:
            return units[:, None].expand(scores.shape).contiguous()
        return units[None, :].expand(scores.shape).contiguous()

    def units_of(self, pruned: torch.Tensor) -> torch.Tensor:
        return pruned.any(dim=1 - self.axis)


@dataclass(frozen=True)
class NMPattern(Pattern):
    """At most `n` non-zeros in every `m` consecutive input weights (`2:4` keeps 2 of 4 = 50% sparse)."""

    n: int
    m: int

    def __post_init__(self):
        if not (1 <= self.n < self.m):
            raise PatternError(
                f"N:M pattern needs 1 <= N < M (N = weights kept per group of M), got {self.n}:{self.m}"
            )

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{self.n}:{self.m}"

    @property
    def max_sparsity(self) -> float:
        return (self.m - self.n) / self.m

    def check_shape(self, out_features: int, in_features: int) -> str | None:
        if in_features % self.m:
            return (
                f"its input size {in_features} is not a multiple of M={self.m} "
                f"(pattern {self.name} groups {self.m} consecutive input weights)"
            )
        return None

    def num_units(self, shape: tuple[int, int]) -> int:
        return shape[0] * (shape[1] // self.m)

    def _groups(self, scores: torch.Tensor) -> torch.Tensor:
        return scores.reshape(scores.shape[0], scores.shape[1] // self.m, self.m)

    def _smallest_columns(self, groups: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The m columns of `[..., m]` groups, and each group's m-n smallest values in ascending order.

        Insertion through a running list of the k = m-n smallest, with element-wise min/max over
        whole columns: on CPU this is several times faster than `topk` or `sort` along a last
        dimension of 4 or 8 (which loop per row), and it never copies the scores into a transposed
        layout (the columns are strided views).
        """
        k = self.m - self.n
        cols = list(groups.reshape(-1, self.m).unbind(1))
        array = _numpy(groups)
        # NumPy's min/max over the strided columns are about twice as fast as torch's on CPU (same values).
        lib: Any = np if array is not None else torch
        work = [array[:, j] for j in range(self.m)] if array is not None else cols
        smallest = [work[0]]
        for x in work[1:]:
            for j in range(len(smallest)):
                if j == k - 1:  # the list is full: only the smaller value can stay
                    smallest[j] = lib.minimum(smallest[j], x)
                    break
                smallest[j], x = lib.minimum(smallest[j], x), lib.maximum(smallest[j], x)
            else:
                smallest.append(x)
        if array is not None:
            smallest = [torch.from_numpy(np.ascontiguousarray(v)) for v in smallest]
        return cols, smallest

    def analyse(self, scores: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Each group's m-n smallest values (ascending) and its lowest-(m-n) mask `[groups, m]`.

        Ties go to the first weights by position, so masks are deterministic.
        """
        groups = scores.float().reshape(-1, self.m)
        k = self.m - self.n
        cols, smallest = self._smallest_columns(groups)
        threshold = smallest[k - 1]
        at_most = groups <= threshold[:, None]
        # Every group has at least k values at most its k-th smallest, so k per group is k * groups in all.
        if int(torch.count_nonzero(at_most)) == k * groups.shape[0]:  # no tie at any threshold: done
            return smallest, at_most
        below = [c < threshold for c in cols]
        need = k - sum(b.to(torch.uint8) for b in below)
        taken = torch.zeros_like(need)
        low = []
        for c, b in zip(cols, below, strict=True):
            tie = (c == threshold) & (taken < need)
            taken += tie
            low.append(b | tie)
        return smallest, torch.stack(low, dim=1)

    def unit_scores(self, scores: torch.Tensor, reduce: str = "mean", analysis=None) -> torch.Tensor:
        k = self.m - self.n
        v, _ = analysis if analysis is not None else self.analyse(scores)
        if reduce == "max":
            return v[k - 1]
        if reduce not in REDUCE_TYPES:
            raise ValueError(f"unknown criterion_reduce_type {reduce!r}; expected one of {REDUCE_TYPES}")
        total = v[0].clone()
        for x in v[1:k]:
            total += x
        return total / k if reduce == "mean" else total

    def unit_sizes(self, shape: tuple[int, int]) -> int | torch.Tensor:
        return self.m - self.n

    def expand(self, units: torch.Tensor, scores: torch.Tensor, analysis=None) -> torch.Tensor:
        _, low = analysis if analysis is not None else self.analyse(scores)
        return (low & units[:, None]).reshape(scores.shape)

    def units_of(self, pruned: torch.Tensor) -> torch.Tensor:
        return self._groups(pruned).any(dim=-1).reshape(-1)


@dataclass(frozen=True)
class StructurePattern:
    """Whole attention heads (`"head"`) or feed-forward neurons (`"neuron"`): units spanning several layers.

    A head is `head_size` rows of the query, key and value projections and the same columns of the output
    projection; a neuron is one row of the up projection and the same column of the down projection
    (`prunecli.structure` finds them, `prunecli.sparsity.units` lays each block out as a matrix
    with one row per unit, so that the row pattern `1xchannel` selects them). Removing such units makes
    the matrices smaller (`prunecli compact`), which is what makes a model faster on any runtime.
    """

    kind: str  # "head" or "neuron"

    @property
    def name(self) -> str:
        return self.kind

    @property
    def max_sparsity(self) -> float:
        return 1.0

    def check_shape(self, out_features: int, in_features: int) -> str | None:
        return None

    def __str__(self) -> str:
        return self.kind


STRUCTURE_PATTERNS = UNIT_PATTERNS


def parse_pattern(text: str) -> Pattern | StructurePattern:
    """`"4x1"` -> BlockPattern, `"2:4"` -> NMPattern, `"1xchannel"`/`"channelx1"` -> ChannelPattern,
    `"head"`/`"neuron"` -> StructurePattern.

    Raises PatternError with a message fit for a user (the recipe layer adds the JSON path).
    """
    if not isinstance(text, str):
        raise PatternError(f"a pattern is a string such as \"4x1\" or \"2:4\", got {text!r}")
    s = text.strip()
    if s in STRUCTURE_PATTERNS:
        return StructurePattern(s)
    if s == "1xchannel":
        return ChannelPattern(axis=0)
    if s == "channelx1":
        return ChannelPattern(axis=1)
    if m := _BLOCK_RE.match(s):
        return BlockPattern(rows=int(m.group(1)), cols=int(m.group(2)))
    if m := _NM_RE.match(s):
        return NMPattern(n=int(m.group(1)), m=int(m.group(2)))
    raise PatternError(
        f"unknown pattern {text!r}: expected NxM blocks (\"4x1\", \"1x1\", \"2x2\"), "
        "N:M (\"2:4\" keeps 2 of every 4), \"1xchannel\", \"channelx1\", \"head\" or \"neuron\""
    )
