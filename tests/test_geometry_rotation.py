import numpy as np
import torch
from scipy.spatial.transform import Rotation

from facetwin.geometry.rotation import axis_angle_to_matrix
from facetwin.geometry.skinning import rigid_transforms


def test_axis_angle_matches_scipy():
    rng = np.random.default_rng(0)
    aa = rng.normal(size=(64, 3)) * 1.3
    ours = axis_angle_to_matrix(torch.tensor(aa)).numpy()
    ref = Rotation.from_rotvec(aa).as_matrix()
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_axis_angle_zero_is_identity_and_has_finite_gradient():
    aa = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    R = axis_angle_to_matrix(aa)
    np.testing.assert_allclose(R.detach().numpy(), np.broadcast_to(np.eye(3), (2, 3, 3)))
    R.sum().backward()
    assert torch.isfinite(aa.grad).all()
    # d R / d aa at 0 is the cross-product generator: R ≈ I + [aa]x, so sum(R) changes by 0 to first order
    np.testing.assert_allclose(aa.grad.numpy(), 0, atol=1e-12)


def test_axis_angle_gradient_matches_finite_differences():
    aa = torch.tensor([[0.3, -0.7, 0.2], [1e-5, 2e-5, -1e-5]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(axis_angle_to_matrix, (aa,))


def test_rigid_transforms_chain_composes_parent_rotations():
    # joint 1 hangs 1 unit above joint 0; rotating joint 0 by 90° about z carries joint 1 along.
    joints = torch.tensor([[[0.0, 0, 0], [0, 1, 0]]], dtype=torch.float64)
    rot = axis_angle_to_matrix(torch.tensor([[[0, 0, np.pi / 2], [0, 0, 0]]], dtype=torch.float64))
    posed, rel = rigid_transforms(rot, joints, [-1, 0])
    np.testing.assert_allclose(posed[0, 1].numpy(), [-1, 0, 0], atol=1e-12)
    # A rest-pose point at joint 1 maps to the posed joint 1.
    p = rel[0, 1, :3, :3] @ joints[0, 1] + rel[0, 1, :3, 3]
    np.testing.assert_allclose(p.numpy(), [-1, 0, 0], atol=1e-12)
