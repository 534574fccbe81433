"""Mask maths of every pattern: conformance, achieved sparsity, monotonicity, determinism."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prunecli.sparsity.patterns import (
    BlockPattern,
    ChannelPattern,
    NMPattern,
    PatternError,
    parse_pattern,
)
from prunecli.sparsity.selection import select_lowest

PATTERNS = ["1x1", "4x1", "2x2", "1x16", "3x2", "1xchannel", "channelx1", "2:4", "1:4", "3:8"]


def max_unit(pattern, shape) -> int:
    sizes = pattern.unit_sizes(shape)
    return int(sizes.max()) if isinstance(sizes, torch.Tensor) else sizes


def assert_conforms(pattern, pruned: torch.Tensor) -> None:
    """Every unit is all pruned or untouched; N:M groups keep at most N weights."""
    out, inp = pruned.shape
    if isinstance(pattern, NMPattern):
        kept = (~pruned).reshape(out, inp // pattern.m, pattern.m).sum(-1)
        touched = pruned.reshape(out, -1, pattern.m).any(-1)
        # A touched group keeps exactly N (so at most N non-zero, never over-pruned); others stay dense.
        assert bool((kept[touched] == pattern.n).all())
        assert bool((kept[~touched] == pattern.m).all())
    elif isinstance(pattern, ChannelPattern):
        other = 1 - pattern.axis
        assert bool((pruned.all(dim=other) == pruned.any(dim=other)).all())
    else:
        r, c = pattern.rows, pattern.cols
        for i in range(0, out, r):
            for j in range(0, inp, c):
                block = pruned[i : i + r, j : j + c]
                assert bool(block.all()) or not bool(block.any()), (i, j, block)


@st.composite
def layer_case(draw):
    name = draw(st.sampled_from(PATTERNS))
    pattern = parse_pattern(name)
    out = draw(st.integers(1, 20))
    if isinstance(pattern, NMPattern):
        inp = pattern.m * draw(st.integers(1, 4))
    else:
        inp = draw(st.integers(1, 20))
    target = draw(st.floats(0.0, pattern.max_sparsity, allow_nan=False, exclude_max=pattern.max_sparsity == 1.0))
    seed = draw(st.integers(0, 2**16))
    return pattern, (out, inp), target, seed


@settings(max_examples=120, deadline=None)
@given(layer_case())
def test_local_mask_reaches_target_within_one_unit_and_conforms(case):
    pattern, shape, target, seed = case
    scores = torch.rand(shape, generator=torch.Generator().manual_seed(seed))
    keep = pattern.keep_mask(scores, target)
    pruned = ~keep
    assert keep.shape == scores.shape and keep.dtype == torch.bool
    assert_conforms(pattern, pruned)
    goal = min(round(target * scores.numel()), pattern.prunable(shape))
    assert abs(int(pruned.sum()) - goal) <= max_unit(pattern, shape)
    # Same inputs, same mask.
    assert torch.equal(pattern.keep_mask(scores.clone(), target), keep)


@settings(max_examples=60, deadline=None)
@given(layer_case(), st.floats(0.0, 1.0))
def test_masks_are_monotone(case, fraction):
    pattern, shape, target, seed = case
    g = torch.Generator().manual_seed(seed)
    first = pattern.keep_mask(torch.rand(shape, generator=g), target * fraction)
    # New, unrelated scores: what was pruned stays pruned, and more is pruned to reach the target.
    second = pattern.keep_mask(torch.rand(shape, generator=g), target, keep=first)
    assert not bool((second & ~first).any())
    assert_conforms(pattern, ~second)
    # A lower target never un-prunes.
    third = pattern.keep_mask(torch.rand(shape, generator=g), 0.0, keep=second)
    assert torch.equal(third, second)


def test_block_4x1_prunes_lowest_mean_blocks():
    scores = torch.tensor([[1.0, 9.0], [1.0, 9.0], [1.0, 9.0], [1.0, 9.0], [5.0, 2.0], [5.0, 2.0], [5.0, 2.0],
                           [5.0, 2.0]])
    keep = BlockPattern(4, 1).keep_mask(scores, 0.5)
    expected = torch.tensor([[False, True]] * 4 + [[True, False]] * 4)
    assert torch.equal(keep, expected)


def test_reduce_types_choose_differently():
    # Block A: one large weight among zeros (high max, low mean); block B: uniform medium weights.
    scores = torch.tensor([[8.0, 1.5], [0.0, 1.5], [0.0, 1.5], [0.0, 1.5]])
    p = BlockPattern(4, 1)
    assert torch.equal(p.keep_mask(scores, 0.5, reduce="max"), torch.tensor([[True, False]] * 4))
    assert torch.equal(p.keep_mask(scores, 0.5, reduce="mean"), torch.tensor([[True, False]] * 4))
    assert torch.equal(p.keep_mask(scores, 0.5, reduce="sum"), torch.tensor([[True, False]] * 4))
    scores[0, 0] = 5.0  # mean 1.25 < 1.5 and sum 5 < 6, but max 5 > 1.5
    assert torch.equal(p.keep_mask(scores, 0.5, reduce="max"), torch.tensor([[True, False]] * 4))
    assert torch.equal(p.keep_mask(scores, 0.5, reduce="mean"), torch.tensor([[False, True]] * 4))
    assert torch.equal(p.keep_mask(scores, 0.5, reduce="sum"), torch.tensor([[False, True]] * 4))


def test_partial_edge_blocks_are_pruned_not_skipped():
    p = BlockPattern(4, 1)
    scores = torch.rand(6, 3, generator=torch.Generator().manual_seed(0))  # 6 rows: one full and one 2-row block
    sizes = p.unit_sizes((6, 3))
    assert sizes.tolist() == [4, 4, 4, 2, 2, 2]
    scores[4:, :] = -1.0  # the partial edge blocks are the least important
    keep = p.keep_mask(scores, 6 / 18)
    assert not bool(keep[4:].any()) and bool(keep[:4].all())
    assert_conforms(p, ~keep)


def test_nm_keeps_n_largest_of_every_group():
    scores = torch.tensor([[4.0, 1.0, 3.0, 2.0, 0.1, 0.2, 0.9, 0.8]])
    keep = NMPattern(2, 4).keep_mask(scores, 0.5)
    assert keep.tolist() == [[True, False, True, False, False, False, True, True]]
    keep_1_4 = NMPattern(1, 4).keep_mask(scores, 0.75)
    assert keep_1_4.tolist() == [[True, False, False, False, False, False, True, False]]


def test_nm_below_its_limit_prunes_whole_groups_only_to_the_target():
    scores = torch.rand(8, 16, generator=torch.Generator().manual_seed(1))
    keep = NMPattern(2, 4).keep_mask(scores, 0.25)  # half of the groups become 2:4, the rest stay dense
    groups = keep.reshape(8, 4, 4).sum(-1)
    assert sorted(set(groups.flatten().tolist())) == [2, 4]
    assert int((groups == 2).sum()) == 16
    assert int((~keep).sum()) == 32


def test_nm_shape_check_names_the_problem():
    assert NMPattern(2, 4).check_shape(8, 12) is None
    reason = NMPattern(2, 4).check_shape(8, 10)
    assert reason is not None and "10" in reason and "M=4" in reason


def test_channels_prune_whole_rows_or_columns():
    scores = torch.rand(6, 10, generator=torch.Generator().manual_seed(2))
    rows = ~ChannelPattern(axis=0).keep_mask(scores, 0.5)
    assert int(rows.all(dim=1).sum()) == 3 and int(rows.sum()) == 30
    cols = ~ChannelPattern(axis=1).keep_mask(scores, 0.3)
    assert int(cols.all(dim=0).sum()) == 3 and int(cols.sum()) == 18


def test_parse_pattern():
    assert parse_pattern("4x1") == BlockPattern(4, 1)
    assert parse_pattern(" 1x16 ") == BlockPattern(1, 16)
    assert parse_pattern("1xchannel") == ChannelPattern(axis=0)
    assert parse_pattern("channelx1") == ChannelPattern(axis=1)
    assert parse_pattern("2:4") == NMPattern(2, 4)
    assert parse_pattern("2:4").max_sparsity == 0.5
    assert parse_pattern("1:4").max_sparsity == 0.75
    assert parse_pattern("1x1").max_sparsity == 1.0
    for bad in ["3x", "x1", "0x4", "4:4", "5:4", "0:4", "2in4", "channel", "", "4x1x1", "4X1", "1xChannel"]:
        with pytest.raises(PatternError):
            parse_pattern(bad)


def test_select_lowest_exact_count_with_ties():
    scores = torch.zeros(10)
    picked = select_lowest(scores, 1, 4)
    assert picked.tolist() == [True] * 4 + [False] * 6  # ties broken by position: deterministic
    scores = torch.tensor([3.0, 1.0, 1.0, 1.0, 0.0, 5.0])
    assert select_lowest(scores, 2, 6).tolist() == [False, True, True, False, True, False]
    assert not select_lowest(scores, 1, 0).any()
    assert select_lowest(scores, 1, 100).all()


def test_select_lowest_unequal_sizes_lands_within_half_a_unit():
    scores = torch.tensor([0.1, 0.2, 0.3, 0.4])
    sizes = torch.tensor([4, 4, 2, 8])
    # A unit is taken when at least half of it fits: budget 8 -> 8 weights, 9 -> 10 (the half-unit tie).
    assert select_lowest(scores, sizes, 8).tolist() == [True, True, False, False]
    assert select_lowest(scores, sizes, 9).tolist() == [True, True, True, False]
    assert select_lowest(scores, sizes, 13).tolist() == [True, True, True, False]  # 18 would overshoot by 5
    assert select_lowest(scores, sizes, 14).tolist() == [True, True, True, True]


def test_nm_ties_are_broken_by_position():
    keep = NMPattern(2, 4).keep_mask(torch.zeros(3, 8), 0.5)
    assert keep.tolist() == [[False, False, True, True] * 2] * 3
    keep = NMPattern(1, 4).keep_mask(torch.tensor([[1.0, 1.0, 0.0, 1.0]]), 0.75)
    assert keep.tolist() == [[False, False, False, True]]


def test_selecting_the_k_lowest_is_exact_on_large_inputs():
    """The sampled bracket around the k-th smallest (NumPy on CPU floats, torch otherwise) picks exactly the
    first k of a stable sort, ties by position, on layouts that stress the strided sample."""
    from prunecli.sparsity.selection import select_lowest

    g = torch.Generator().manual_seed(0)
    for values in (
        torch.rand(1_500_000, generator=g),
        torch.randint(0, 4, (1_500_000,), generator=g).float(),  # heavy ties
        torch.cat([torch.full((900_000,), float("-inf")), torch.rand(700_000, generator=g)]),  # pruned units
        torch.sort(torch.rand(1_200_000, generator=g)).values,  # an ordered layout for the strided sample
        torch.rand(1_100_000, generator=g).half(),  # no NumPy view: torch's path
    ):
        for q in (0.001, 0.3, 0.9999):
            k = max(1, int(q * values.numel()))
            expected = torch.zeros(values.numel(), dtype=torch.bool)
            expected[torch.sort(values, stable=True).indices[:k]] = True
            assert torch.equal(select_lowest(values, 1, k), expected)


@pytest.mark.parametrize(("n", "m"), [(1, 2), (2, 4), (1, 4), (3, 4), (2, 8), (4, 8), (5, 16)])
def test_nm_group_scores_and_masks_match_topk(n, m):
    pattern = NMPattern(n, m)
    x = torch.rand(16, 4 * m, generator=torch.Generator().manual_seed(n * 100 + m))
    values, idx = torch.topk(x.reshape(16, 4, m), m - n, dim=-1, largest=False)
    assert torch.allclose(pattern.unit_scores(x, "mean"), values.mean(-1).reshape(-1))
    assert torch.allclose(pattern.unit_scores(x, "sum"), values.sum(-1).reshape(-1))
    assert torch.allclose(pattern.unit_scores(x, "max"), values.amax(-1).reshape(-1))
    low = torch.zeros(16, 4, m, dtype=torch.bool).scatter_(-1, idx, True)
    assert torch.equal(pattern.expand(torch.ones(64, dtype=torch.bool), x), low.reshape(x.shape))
    some = torch.arange(64) % 3 == 0
    assert torch.equal(pattern.expand(some, x), (low & some.reshape(16, 4, 1)).reshape(x.shape))
