"""L_sil, the silhouette vertex re-projection loss (the paper's Eq. 1).

For each of the 17 annotated contour landmarks k_i the model provides its *zero-pose* boundary
landmark k̃_i (a fixed point on the mesh) with the z component of its posed unit normal:

* N_z > 0 (k̃_i faces the camera, not occluded): vanilla re-projection, d(k_i, Π k̃_i);
* otherwise (turned away, occluded): d(k_i, v_e) to the nearest projected silhouette vertex
  v_e ∈ Ṽ_e — vertices on mesh edges whose end-point normals have opposite z signs,
  restricted to the head model's candidate region (nose and ears excluded).

d is the L1 distance. The loss takes tensors only; which vertices are silhouette vertices is
computed by the caller (``facetwin.rendering.silhouette``), so this stays a pure function.
The nearest vertex is chosen without gradient (an arg-min) and the distance is recomputed from
its projected position, so the gradient flows to that vertex (and through it to the camera and
the head-model parameters) exactly as for a landmark.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from facetwin.losses.landmarks import crop_size_of, l1_point_distance, weighted_mean
from facetwin.rendering.silhouette import nearest_silhouette_vertex


@dataclass
class SilhouetteMatch:
    """What Eq. 1 compares each contour label with.

    Attributes:
        target: (B, 17, 2) the projected point each label is pulled towards (landmark or vertex).
        occluded: (B, 17) bool, N_z <= 0.
        vertex: (B, 17) long, index of the matched silhouette vertex (-1 where unused).
        fallback: (B, 17) bool, occluded but the image had no silhouette vertex (used the landmark).
        distance: (B, 17) L1 distance in pixels.
    """

    target: torch.Tensor
    occluded: torch.Tensor
    vertex: torch.Tensor
    fallback: torch.Tensor
    distance: torch.Tensor


def match_silhouette(
    contour2d: torch.Tensor,
    contour_normal_z: torch.Tensor,
    vertices2d: torch.Tensor,
    silhouette: torch.Tensor,
    gt_contour: torch.Tensor,
) -> SilhouetteMatch:
    """Pair each of the 17 contour labels with its Eq. 1 target.

    Args:
        contour2d: (B, 17, 2) projected zero-pose boundary landmarks k̃_i, crop pixels.
        contour_normal_z: (B, 17) z of their posed unit normals (> 0 faces the camera).
        vertices2d: (B, V, 2) projected vertices, crop pixels.
        silhouette: (B, V) bool, silhouette vertices within the candidate region.
        gt_contour: (B, 17, 2) annotated contour landmarks k_i.
    Returns:
        :class:`SilhouetteMatch`. An occluded landmark in an image without any silhouette
        vertex falls back to the vanilla re-projection (``fallback``).
    """
    B, K, _ = gt_contour.shape
    occluded = contour_normal_z <= 0
    silhouette = silhouette.to(torch.bool)
    has_sil = silhouette.any(1)  # (B,)
    nearest = nearest_silhouette_vertex(vertices2d, silhouette, gt_contour).clamp_min(0)  # (B, K); 0 where none
    use_vertex = occluded & has_sil[:, None]
    vertex_pos = torch.gather(vertices2d, 1, nearest[..., None].expand(B, K, 2))
    target = torch.where(use_vertex[..., None], vertex_pos, contour2d)
    return SilhouetteMatch(
        target=target,
        occluded=occluded,
        vertex=torch.where(use_vertex, nearest, torch.full_like(nearest, -1)),
        fallback=occluded & ~has_sil[:, None],
        distance=l1_point_distance(gt_contour, target),
    )


def silhouette_loss(
    contour2d: torch.Tensor,
    contour_normal_z: torch.Tensor,
    vertices2d: torch.Tensor,
    silhouette: torch.Tensor,
    gt_contour: torch.Tensor,
    crop_size,
    landmark_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """L_sil of Eq. 1 (batched), as the weighted mean over the 17 contour points / crop size.

    The paper sums over the 17 points; averaging instead (weights are per point) keeps the
    weight comparable with the inner-landmark loss.

    Args:
        contour2d: (B, 17, 2) projected zero-pose boundary landmarks (model points 1–17).
        contour_normal_z: (B, 17) posed normal z at those points.
        vertices2d: (B, V, 2) projected vertices.
        silhouette: (B, V) bool silhouette ∧ candidate-region mask.
        gt_contour: (B, 17, 2) labels 1–17.
        crop_size: float or (B,) crop side in pixels.
        landmark_weight: optional (B, 17) confidences.
    Returns:
        scalar.
    """
    m = match_silhouette(contour2d, contour_normal_z, vertices2d, silhouette, gt_contour)
    return weighted_mean(m.distance / crop_size_of(crop_size, m.distance), landmark_weight)
