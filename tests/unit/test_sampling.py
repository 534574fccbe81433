from __future__ import annotations

import random

import pytest

from prunecli.training.sampling import LengthGroupedBatchSampler, SortedBatchSampler


def padded_tokens(lengths, batches) -> int:
    """Tokens computed with dynamic padding: each batch is padded to its longest example."""
    return sum(len(batch) * max(lengths[i] for i in batch) for batch in batches if batch)


def _lengths(n=1000, seed=0):
    rng = random.Random(seed)
    return [rng.randint(8, 128) for _ in range(n)]


def test_every_example_once_per_epoch_and_batch_sizes():
    lengths = _lengths(1003)
    sampler = LengthGroupedBatchSampler(lengths, batch_size=16, seed=3, megabatch_mult=10)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 63
        assert sorted(i for b in batches for i in b) == list(range(1003))
        assert [len(b) for b in batches[:-1]] == [16] * 62 and len(batches[-1]) == 1003 % 16


def test_order_is_a_function_of_seed_and_epoch():
    lengths = _lengths()
    a = LengthGroupedBatchSampler(lengths, 8, seed=1)
    b = LengthGroupedBatchSampler(lengths, 8, seed=1)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b)
    b.set_epoch(3)
    assert list(a) != list(b)
    c = LengthGroupedBatchSampler(lengths, 8, seed=2)
    c.set_epoch(2)
    assert list(a) != list(c)


def test_grouping_cuts_padding_and_keeps_batches_varied():
    lengths = _lengths(3200)
    grouped = LengthGroupedBatchSampler(lengths, 16, seed=0)
    real = sum(lengths)
    grouped_cost = padded_tokens(lengths, list(grouped))
    import torch

    perm = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(0)).tolist()
    random_cost = padded_tokens(lengths, [perm[i : i + 16] for i in range(0, len(perm), 16)])
    assert grouped_cost < 1.05 * real < random_cost / 1.3
    # batch order is shuffled: batch lengths are not monotone over the epoch
    longest = [max(lengths[i] for i in b) for b in grouped]
    assert longest != sorted(longest) and longest != sorted(longest, reverse=True)
    # which examples meet changes between epochs
    first = {tuple(sorted(b)) for b in grouped}
    grouped.set_epoch(1)
    assert len(first & {tuple(sorted(b)) for b in grouped}) < len(first) // 10


def test_sorted_batches_for_evaluation():
    lengths = [5, 9, 1, 7, 3]
    batches = list(SortedBatchSampler(lengths, 2))
    assert batches == [[1, 3], [0, 4], [2]]
    with pytest.raises(ValueError):
        SortedBatchSampler(lengths, 0)
