"""The training sampler that puts a fixed number of fully labelled images in every batch."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import DistributedSampler


class StrongWeakSampler(DistributedSampler):
    """Order a training set so that every batch holds ``strong_per_batch`` images of F.

    The semi-supervised methods (Papandreou et al. 2015; Ibrahim et al. 2020) mix a fixed number
    of fully labelled images into every batch. An epoch is one pass over W (over F when every
    slot is strong); F is reshuffled and cycled as often as needed. Use it with
    ``DataLoader(batch_size=batch_size, drop_last=True)``.

    Distributed training: the sampler shards by itself. All ranks draw the same global order
    (from ``seed`` and the epoch) in blocks of ``num_replicas * batch_size`` images and rank r
    takes its own slice of each block's strong and weak parts, so every rank's batch holds
    exactly ``strong_per_batch`` images of F and the ranks see disjoint images of W. Being a
    `DistributedSampler`, Lightning uses it as it is instead of wrapping it. The epoch is set by
    `set_epoch` (Lightning calls it) and also advances after every pass.

    Args:
        strong_indices: Dataset positions of the images of F.
        weak_indices: Dataset positions of the images of W.
        batch_size: Images per batch on each rank.
        strong_per_batch: Images of F in each batch (0..batch_size).
        num_replicas: Number of distributed ranks.
        rank: This process's rank.
        seed: Seed of the shuffles.
    """

    def __init__(
        self,
        strong_indices: Sequence[int],
        weak_indices: Sequence[int],
        batch_size: int,
        strong_per_batch: int,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
    ) -> None:
        if not 0 <= strong_per_batch <= batch_size:
            raise ValueError(
                f"strong_per_batch={strong_per_batch} must lie in [0, batch_size={batch_size}]"
            )
        if strong_per_batch > 0 and len(strong_indices) == 0:
            raise ValueError(f"strong_per_batch={strong_per_batch} but the strong set F is empty")
        if strong_per_batch < batch_size and len(weak_indices) == 0:
            raise ValueError(
                f"strong_per_batch={strong_per_batch} < batch_size={batch_size} but the weak set W "
                "is empty"
            )
        all_indices = [*strong_indices, *weak_indices]
        super().__init__(all_indices, num_replicas, rank, shuffle=True, seed=seed, drop_last=True)
        self.strong = np.asarray(strong_indices, dtype=np.int64)
        self.weak = np.asarray(weak_indices, dtype=np.int64)
        self.batch_size = batch_size
        self.strong_per_batch = strong_per_batch
        weak_per_batch = batch_size - strong_per_batch
        if weak_per_batch > 0:
            self.num_blocks = len(self.weak) // (weak_per_batch * num_replicas)
        else:
            self.num_blocks = len(self.strong) // (batch_size * num_replicas)
        if self.num_blocks == 0:
            raise ValueError(
                f"too few images for one batch per rank: |F|={len(self.strong)}, "
                f"|W|={len(self.weak)}, batch_size={batch_size}, "
                f"strong_per_batch={strong_per_batch}, ranks={num_replicas}"
            )

    def __len__(self) -> int:
        return self.num_blocks * self.batch_size

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        strong_count, weak_count = self.strong_per_batch, self.batch_size - self.strong_per_batch
        weak = rng.permutation(self.weak)
        needed = self.num_blocks * strong_count * self.num_replicas
        rounds = -(-needed // len(self.strong)) if needed else 0
        strong = np.concatenate([rng.permutation(self.strong) for _ in range(rounds)] or [[]])
        strong = strong.astype(np.int64)
        for block in range(self.num_blocks):
            first = (block * self.num_replicas + self.rank) * strong_count
            yield from strong[first : first + strong_count].tolist()
            first = (block * self.num_replicas + self.rank) * weak_count
            yield from weak[first : first + weak_count].tolist()
