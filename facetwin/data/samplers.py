"""Mini-batches grouped by identity (for the shape- and detail-consistency losses)."""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class IdentityBatchSampler(Sampler[list[int]]):
    """Batches made of groups of ``k`` items of the same identity.

    Each epoch, every identity's items are shuffled and cut into groups of ``k`` (the last group
    of an identity may be smaller; identities with fewer than ``k`` items form one small group,
    so single-image data sets such as UTKFace still take part). Groups are shuffled and packed
    into batches of ``batch_size`` items without splitting a group.

    ``strict=True`` keeps only full groups of exactly ``k`` (identities with >= ``k`` items), so
    every batch is ``batch_size // k`` identities × ``k`` images.

    ``identities``: identity label per dataset item (e.g. ``PreparedDataset.identity_of``).
    """

    def __init__(self, identities: Sequence[int], k: int = 4, batch_size: int = 16, strict: bool = False,
                 seed: int = 0, drop_last: bool = False):
        if k < 1 or batch_size < k:
            raise ValueError(f"need 1 <= k <= batch_size, got k={k}, batch_size={batch_size}")
        self.identities = np.asarray(identities)
        self.k, self.batch_size, self.strict, self.seed, self.drop_last = k, batch_size, strict, seed, drop_last
        self.epoch = 0
        self.groups_of = {}
        for i, ident in enumerate(self.identities.tolist()):
            self.groups_of.setdefault(ident, []).append(i)
        if strict and not any(len(v) >= k for v in self.groups_of.values()):
            raise ValueError(f"no identity has {k} items")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        rng = np.random.default_rng(self.seed + 1_000_003 * self.epoch)
        groups = []
        for ident in sorted(self.groups_of):
            items = np.array(self.groups_of[ident])
            rng.shuffle(items)
            for s in range(0, len(items), self.k):
                g = items[s : s + self.k].tolist()
                if self.strict and len(g) < self.k:
                    continue
                groups.append(g)
        order = rng.permutation(len(groups))
        batches, current = [], []
        for gi in order:
            g = groups[gi]
            if len(current) + len(g) > self.batch_size:
                batches.append(current)
                current = []
            current = current + g
        if current and (not self.drop_last or len(current) == self.batch_size):
            batches.append(current)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._batches()
        self.epoch += 1

    def __len__(self) -> int:
        return len(self._batches())
