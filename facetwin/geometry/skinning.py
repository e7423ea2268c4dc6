"""Linear blend skinning over a kinematic tree (FLAME/SMPL convention)."""

from __future__ import annotations

import torch

from facetwin.geometry.rotation import axis_angle_to_matrix


def rigid_transforms(rotations: torch.Tensor, joints: torch.Tensor, parents: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """World transforms of each joint, relative to its rest position.

    Args:
        rotations: (B, J, 3, 3) local joint rotations.
        joints: (B, J, 3) rest joint positions.
        parents: length J, parents[0] == -1, each parent index smaller than its child.
    Returns:
        posed_joints (B, J, 3) and relative transforms (B, J, 4, 4) that map a rest-pose point
        to its posed position when it is rigidly attached to the joint.
    """
    # out of place throughout, so torch.func transforms (vmap, jacfwd) can run through it
    rel = torch.cat([joints[:, :1], joints[:, 1:] - joints[:, parents[1:]]], 1)
    top = torch.cat([rotations, rel[..., None]], -1)  # (B, J, 3, 4)
    bottom = torch.zeros_like(top[..., :1, :])
    bottom = torch.cat([bottom[..., :3], torch.ones_like(bottom[..., 3:])], -1)  # (B, J, 1, 4) = (0, 0, 0, 1)
    local = torch.cat([top, bottom], -2)  # (B, J, 4, 4)
    chain = [local[:, 0]]
    for j in range(1, len(parents)):
        chain.append(chain[parents[j]] @ local[:, j])
    world = torch.stack(chain, 1)  # (B, J, 4, 4)
    posed_joints = world[..., :3, 3]
    # Remove the rest joint position so that the transform acts on rest-pose vertices.
    correction = (world[..., :3, :3] @ joints[..., None])[..., 0]
    relative = torch.cat([torch.cat([world[..., :3, :3], (posed_joints - correction)[..., None]], -1), world[..., 3:, :]], -2)
    return posed_joints, relative


def linear_blend_skinning(
    vertices: torch.Tensor,
    joints: torch.Tensor,
    pose: torch.Tensor,
    weights: torch.Tensor,
    parents: list[int],
    posedirs: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose a rest-pose mesh.

    Args:
        vertices: (B, V, 3) rest-pose vertices (identity and expression applied).
        joints: (B, J, 3) rest-pose joints.
        pose: (B, J, 3) axis-angle per joint.
        weights: (V, J) skinning weights (rows sum to 1).
        parents: kinematic tree, length J.
        posedirs: optional (P, V*3) pose-corrective blendshapes, P = 9 (J - 1) (FLAME).
    Returns:
        posed vertices (B, V, 3) and posed joints (B, J, 3).
    """
    B, V, _ = vertices.shape
    rotations = axis_angle_to_matrix(pose)  # (B, J, 3, 3)
    if posedirs is not None:
        eye = torch.eye(3, dtype=pose.dtype, device=pose.device)
        feature = (rotations[:, 1:] - eye).reshape(B, -1)  # (B, P)
        vertices = vertices + (feature @ posedirs).reshape(B, V, 3)
    posed_joints, transforms = rigid_transforms(rotations, joints, parents)
    blended = torch.einsum("vj,bjmn->bvmn", weights, transforms[..., :3, :])  # (B, V, 3, 4)
    posed = (blended[..., :3] @ vertices[..., None])[..., 0] + blended[..., 3]
    return posed, posed_joints
