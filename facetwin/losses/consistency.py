"""L_sc, DECA's shape-consistency loss: images of one person must share the identity β.

The model predicts β for every image; the forward pass is repeated with β *swapped* among
images of the same identity (each image gets the β of another image of that person), and the
ordinary losses are applied to the swapped result. If the network predicts one β per person the
swapped forward equals the original one. Images with no other image of their identity in the
batch keep their own β.
"""

from __future__ import annotations

import torch

from facetwin.losses.landmarks import inner_landmark_loss
from facetwin.losses.photometric import photometric_loss


def identity_swap_permutation(identity: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B,) identity labels → (B,) long permutation ``p`` with identity[p[i]] == identity[i] and
    p[i] != i wherever the identity has at least two images in the batch: the β swap of L_sc,
    the ONE implementation (the coarse model's swapped forward uses it).

    Without ``generator`` each image takes the β of the next image of its identity in batch
    order (cyclically; deterministic); with one, a random cycle per group. Negative labels mean
    "identity unknown": those images keep their own β. Use as ``swapped_shape = shape[p]``.
    """
    identity = torch.as_tensor(identity)
    ids = identity.tolist()
    perm = list(range(len(ids)))
    groups: dict = {}
    for i, k in enumerate(ids):
        if k >= 0:
            groups.setdefault(k, []).append(i)
    for members in groups.values():
        if len(members) < 2:
            continue
        if generator is not None:
            members = [members[j] for j in torch.randperm(len(members), generator=generator).tolist()]
        for a, b in zip(members, members[1:] + members[:1]):
            perm[a] = b
    return torch.tensor(perm, dtype=torch.long, device=identity.device)


def shape_consistency_loss(
    swapped_landmarks2d: torch.Tensor,
    gt_landmarks: torch.Tensor,
    crop_size,
    landmark_weight: torch.Tensor | None = None,
    swapped_render: torch.Tensor | None = None,
    image: torch.Tensor | None = None,
    photometric_mask: torch.Tensor | None = None,
    photometric_weight: float = 0.0,
) -> torch.Tensor:
    """The landmark loss (inner points 18–68, whose mesh positions are fixed) of the β-swapped
    forward, plus optionally ``photometric_weight`` × the photometric loss of a swapped render.

    Args:
        swapped_landmarks2d: (B, 68, 2) landmarks of the forward with ``shape[p]``.
        gt_landmarks: (B, 68, 2); crop_size: float or (B,).
        swapped_render, image, photometric_mask: optional (B, 3, H, W), (B, 3, H, W), (B, 1, H, W).
    """
    loss = inner_landmark_loss(swapped_landmarks2d, gt_landmarks, crop_size, landmark_weight)
    if swapped_render is not None and photometric_weight > 0:
        loss = loss + photometric_weight * photometric_loss(swapped_render, image, photometric_mask)
    return loss


def shape_spread_loss(shape: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
    """Mean over images of people seen at least twice in the batch of ‖β - β̄_person‖²
    (β̄_person: that person's mean β in the batch); unknown identities (< 0) and people seen once
    are left out; 0 when no person is seen twice. (B, n), (B,) → scalar.

    Unlike L_sc (which only sees β through the landmarks it moves) this pulls the photos of one
    person to one β directly, in every component, including those the landmarks barely see.
    """
    identity = torch.as_tensor(identity, device=shape.device).long()
    keep = identity >= 0
    if int(keep.sum()) < 2:
        return shape.sum() * 0.0
    _, inverse, counts = torch.unique(identity[keep], return_inverse=True, return_counts=True)
    x = shape[keep]
    G = counts.numel()
    sums = torch.zeros(G, x.shape[1], dtype=x.dtype, device=x.device).index_add(0, inverse, x)
    means = sums / counts[:, None].to(x.dtype)
    multi = counts[inverse] > 1
    if not bool(multi.any()):
        return shape.sum() * 0.0
    dev = ((x - means[inverse]) ** 2).sum(1)
    return dev[multi].mean()
