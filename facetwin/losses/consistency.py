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
    p[i] != i wherever the identity has at least two images (a random cyclic shift per group).

    Use as ``swapped_shape = shape[p]``.
    """
    identity = torch.as_tensor(identity)
    B = identity.shape[0]
    perm = torch.arange(B, device=identity.device)
    for value in torch.unique(identity):
        members = torch.nonzero(identity == value).flatten()
        n = members.numel()
        if n < 2:
            continue
        order = members[torch.randperm(n, generator=generator).to(members.device)]
        perm[order] = order.roll(1)  # a cycle over the shuffled group: no fixed points
    return perm


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


def identity_spread(shape: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
    """Mean squared deviation of β from its identity's mean β: (B, n), (B,) → scalar.

    Zero exactly when all images of each person have the same β; a cheap diagnostic (and an
    optional direct regulariser) for the consistency the swap loss enforces.
    """
    identity = torch.as_tensor(identity, device=shape.device)
    _, inverse = torch.unique(identity, return_inverse=True)
    G = int(inverse.max()) + 1
    sums = torch.zeros(G, shape.shape[1], dtype=shape.dtype, device=shape.device).index_add(0, inverse, shape)
    counts = torch.zeros(G, dtype=shape.dtype, device=shape.device).index_add(0, inverse, torch.ones_like(shape[:, 0]))
    means = sums / counts[:, None]
    return ((shape - means[inverse]) ** 2).sum(1).mean()


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
