"""Batch order for training: seeded shuffling, optionally grouped by length to cut padding.

With dynamic padding every batch is padded to its longest example, so on GLUE MRPC (mean 53 tokens,
longest 103) random batches of 16 carry 43% padding tokens, all of which the model computes on.
`LengthGroupedBatchSampler` shuffles the examples, cuts the shuffled order into mega-batches of
`megabatch_mult * batch_size` examples (50, as transformers' `LengthGroupedSampler`), sorts each
mega-batch by length, cuts it into batches, and shuffles the order of the batches. Which examples
meet in a mega-batch is random every epoch, so batches stay varied; padding drops to a few percent
(MRPC: 1.5%). The order depends only on (seed, epoch), so runs are reproducible and a resumed run
sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch


class LengthGroupedBatchSampler:
    """Yields lists of example indices; call `set_epoch` before each epoch (the order is a function of seed+epoch).

    Every batch has `batch_size` examples except possibly the last one, which holds the remainder,
    as with a plain shuffled DataLoader (`drop_last=False`).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, megabatch_mult: int = 50):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.lengths = torch.as_tensor(list(lengths), dtype=torch.long)
        self.batch_size = batch_size
        self.seed = seed
        self.megabatch_mult = max(1, megabatch_mult)
        self.epoch = 0
        self.drop_last = False  # read by accelerate when it shards batches across processes

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def batches(self) -> list[list[int]]:
        n = len(self.lengths)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(n, generator=generator)
        mega = self.batch_size * self.megabatch_mult
        full: list[list[int]] = []
        remainder: list[int] = []
        for start in range(0, n, mega):
            chunk = order[start : start + mega]
            # longest first; stable, so ties keep their random order
            chunk = chunk[torch.argsort(self.lengths[chunk], descending=True, stable=True)].tolist()
            for b in range(0, len(chunk), self.batch_size):
                batch = chunk[b : b + self.batch_size]
                if len(batch) == self.batch_size:
                    full.append(batch)
                else:
                    remainder = batch  # only the last mega-batch can leave one
        shuffled = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
        return shuffled + ([remainder] if remainder else [])

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.batches()


class SortedBatchSampler:
    """Consecutive batches over the examples sorted by length, longest first (for evaluation: fixed order)."""

    def __init__(self, lengths: Sequence[int], batch_size: int):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        lengths_t = torch.as_tensor(list(lengths), dtype=torch.long)
        self.order = torch.argsort(lengths_t, descending=True, stable=True).tolist()
        self.batch_size = batch_size
        self.drop_last = False

    def __len__(self) -> int:
        return -(-len(self.order) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        for start in range(0, len(self.order), self.batch_size):
            yield self.order[start : start + self.batch_size]


def example_lengths(dataset) -> list[int]:
    """Token count of every row of a tokenized dataset (its `input_ids` column)."""
    return [len(ids) for ids in dataset["input_ids"]]
