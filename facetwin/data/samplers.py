"""Mini-batches grouped by identity (for the shape- and detail-consistency losses): the ONE
identity / same-video batch sampler. The training engine takes its batches from
:func:`identity_batches` (a stage's ``epoch_batches``); :class:`IdentityBatchSampler` wraps the
same function as a torch batch sampler for use outside the engine."""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


def identity_batches(identity: Sequence[int], rng: np.random.Generator, batch_size: int, per_identity: int = 2,
                     repeats: Sequence[int] | None = None, strict: bool = False) -> list[list[int]]:
    """One epoch of batches of exactly ``batch_size`` dataset indices, in which images come in
    groups of ``per_identity`` of one identity (a person, or a video: prepare gives each clip
    one identity) where the identity has that many images, the rest filled with singles.

    ``repeats``: how often each item appears per epoch (oversampling); ``strict``: keep only
    full groups (every batch is then ``batch_size // per_identity`` identities). Groups and the
    items inside each identity are shuffled with ``rng``; a final partial batch is dropped (every
    process of a DDP run needs the same batch size).
    """
    if per_identity < 1 or batch_size < 1:
        raise ValueError(f"need per_identity >= 1 and batch_size >= 1, got {per_identity}, {batch_size}")
    ids = np.asarray(identity).tolist()
    reps = np.ones(len(ids), np.int64) if repeats is None else np.asarray(repeats)
    by_id: dict[int, list[int]] = {}
    for i, k in enumerate(ids):
        by_id.setdefault(k, []).extend([i] * int(reps[i]))
    groups: list[list[int]] = []
    for members in by_id.values():
        members = [members[j] for j in rng.permutation(len(members))]
        if len(members) >= per_identity:
            for s in range(0, len(members) - per_identity + 1, per_identity):
                groups.append(members[s:s + per_identity])
            rest = len(members) % per_identity
            if rest and not strict:
                groups += [[m] for m in members[len(members) - rest:]]
        elif not strict:
            groups += [[m] for m in members]
    order = rng.permutation(len(groups))
    flat = [i for g in order for i in groups[g]]
    n = len(flat) // batch_size
    return [flat[b * batch_size:(b + 1) * batch_size] for b in range(n)]


class IdentityBatchSampler(Sampler[list[int]]):
    """:func:`identity_batches` as a torch batch sampler: a new shuffle per epoch, deterministic
    per (``seed``, epoch). ``identities``: identity label per dataset item (``PreparedDataset.identity_of``)."""

    def __init__(self, identities: Sequence[int], k: int = 2, batch_size: int = 16, strict: bool = False,
                 seed: int = 0, repeats: Sequence[int] | None = None):
        if k < 1 or batch_size < k:
            raise ValueError(f"need 1 <= k <= batch_size, got k={k}, batch_size={batch_size}")
        self.identities = np.asarray(identities)
        self.k, self.batch_size, self.strict, self.seed, self.repeats = k, batch_size, strict, seed, repeats
        self.epoch = 0
        if strict and not any(np.sum(self.identities == v) >= k for v in np.unique(self.identities)):
            raise ValueError(f"no identity has {k} items")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, epoch])
        return identity_batches(self.identities, rng, self.batch_size, self.k, self.repeats, self.strict)

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.batches(self.epoch)
        self.epoch += 1

    def __len__(self) -> int:
        return len(self.batches(self.epoch))
