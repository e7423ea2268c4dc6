"""L_id: DECA's identity loss through dlib's face descriptor, with dlib's face-chip alignment.

dlib's ResNet descriptor (:mod:`facetwin.networks.face_recognition`) expects 150 × 150 chips
aligned exactly like ``dlib.get_face_chip(img, shape, 150, 0.25)``: a similarity transform fitted
(least squares) from 33 of the 68 landmarks (eyes, nose, upper lip; brows and lower lip are
ignored) — or from dlib's 5 points — to dlib's mean face shape, with 25 % padding.
:func:`face_chips` reproduces it with a differentiable ``grid_sample`` (sampling positions equal
dlib's to 1e-13 px), so the loss gradient reaches the rendered pixels. The transform is fitted
to the *labels* and shared by the composite and the image: both chips show the same region and
only their content differs.

Landmarks use the project convention: pixels with the origin at the top-left *corner* of the
image (pixel ``i`` spans ``[i, i + 1)``); dlib's own points have pixel centres at integers, i.e.
``project = dlib + 0.5``.

Entry points: :func:`identity_loss` (per-sample, ``(B,)``) and :func:`dlib_identity_loss`, an
:class:`IdentityLoss` ``(composite, image, landmarks) -> scalar`` callable for
:func:`facetwin.losses.coarse_losses`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

CHIP_SIZE = 150
CHIP_PADDING = 0.25  # dlib's compute_face_descriptor default

# dlib's mean face shape (interpolation.h, get_face_chip_details), points 18–68 (0-based 17–67).
_MEAN_FACE_X = (
    0.000213256, 0.0752622, 0.18113, 0.29077, 0.393397, 0.586856, 0.689483, 0.799124,
    0.904991, 0.98004, 0.490127, 0.490127, 0.490127, 0.490127, 0.36688, 0.426036,
    0.490127, 0.554217, 0.613373, 0.121737, 0.187122, 0.265825, 0.334606, 0.260918,
    0.182743, 0.645647, 0.714428, 0.793132, 0.858516, 0.79751, 0.719335, 0.254149,
    0.340985, 0.428858, 0.490127, 0.551395, 0.639268, 0.726104, 0.642159, 0.556721,
    0.490127, 0.423532, 0.338094, 0.290379, 0.428096, 0.490127, 0.552157, 0.689874,
    0.553364, 0.490127, 0.42689,
)
_MEAN_FACE_Y = (
    0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891,
    0.0187482, 0.038915, 0.106454, 0.203352, 0.307009, 0.409805, 0.515625, 0.587326,
    0.609345, 0.628106, 0.609345, 0.587326, 0.216423, 0.178758, 0.179852, 0.231733,
    0.245099, 0.244077, 0.231733, 0.179852, 0.178758, 0.216423, 0.244077, 0.245099,
    0.780233, 0.745405, 0.727388, 0.742578, 0.727388, 0.745405, 0.780233, 0.864805,
    0.902192, 0.909281, 0.902192, 0.864805, 0.784792, 0.778746, 0.785343, 0.778746,
    0.784792, 0.824182, 0.831803, 0.824182,
)
# dlib skips the brows (17–26) and the lower lip (55–59, 65–67).
CHIP_LANDMARKS = tuple(i for i in range(17, 68) if not (i <= 26 or 55 <= i <= 59 or 65 <= i <= 67))
# dlib's 5-point layout (shape_predictor_5_face_landmarks: eye corners, nose base).
_MEAN_FACE_5 = (
    (0.8595674595992, 0.2134981538014),
    (0.6460604764104, 0.2289674387677),
    (0.1205750620789, 0.2137274526848),
    (0.3340850613712, 0.2290642403242),
    (0.4901123135679, 0.6277975316475),
)


def chip_template(
    size: int = CHIP_SIZE, padding: float = CHIP_PADDING, dtype=torch.float32, device=None, num_points: int = 68
) -> torch.Tensor:
    """dlib's target positions in chip pixels (pixel centres at integers): ``(32, 2)`` for the
    :data:`CHIP_LANDMARKS` of a 68-point shape, ``(5, 2)`` for a 5-point shape."""
    if num_points == 68:
        xy = torch.tensor([[_MEAN_FACE_X[i - 17], _MEAN_FACE_Y[i - 17]] for i in CHIP_LANDMARKS], dtype=torch.float64)
    elif num_points == 5:
        xy = torch.tensor(_MEAN_FACE_5, dtype=torch.float64)
    else:
        raise ValueError(f"face chips need 68 (iBUG) or 5 (dlib) landmarks, got {num_points}")
    return ((padding + xy) / (2 * padding + 1) * size).to(dtype=dtype, device=device)


def similarity_transform(src: torch.Tensor, dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares similarity (Umeyama, no reflection; dlib's ``find_similarity_transform``)
    with ``dst ≈ src @ A.T + t``.

    Args:
        src: (N, 2) or (B, N, 2); dst: (B, N, 2).
    Returns:
        A (B, 2, 2) scaled rotation and t (B, 2).
    """
    src = src.to(dst).expand_as(dst)
    ms, md = src.mean(1, keepdim=True), dst.mean(1, keepdim=True)
    s0, d0 = src - ms, dst - md
    # For 2-D similarities the optimum is closed-form: A = [[a, -b], [b, a]].
    var = (s0 * s0).sum((1, 2))
    a = (s0 * d0).sum((1, 2)) / var
    b = (s0[..., 0] * d0[..., 1] - s0[..., 1] * d0[..., 0]).sum(1) / var
    A = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], -2)
    t = md[:, 0] - (ms[:, 0, None, :] @ A.transpose(1, 2))[:, 0]
    return A, t


def chip_to_image_transform(
    landmarks: torch.Tensor, size: int = CHIP_SIZE, padding: float = CHIP_PADDING
) -> torch.Tensor:
    """``(B, 2, 3)`` affine maps from chip pixels to image pixels, both with pixel centres at
    integers (dlib's convention), exactly as ``dlib.get_face_chip`` samples.

    ``landmarks``: ``(B, 68, 2)`` or ``(B, 5, 2)`` in dlib's convention (pixel centres at
    integers). dlib fits ``T`` (chip → image), re-expresses it as a rectangle centred on
    ``T(size/2, size/2)`` of side ``size·scale`` (a ``drectangle``, whose corner-to-corner
    extent is ``side - 1``) rotated by T's angle, and maps chip pixels ``0`` and ``size - 1``
    onto its corners.
    """
    n = landmarks.shape[1]
    dst = landmarks[:, list(CHIP_LANDMARKS)] if n == 68 else landmarks
    A, t = similarity_transform(chip_template(size, padding, dst.dtype, dst.device, num_points=n), dst)
    scale = torch.sqrt(torch.det(A))  # image pixels per chip pixel
    centre = (A @ torch.full((2, 1), size / 2, dtype=A.dtype, device=A.device))[..., 0] + t
    A = A * ((size * scale - 1) / ((size - 1) * scale))[:, None, None]
    t = centre - (A @ torch.full((2, 1), (size - 1) / 2, dtype=A.dtype, device=A.device))[..., 0]
    return torch.cat([A, t[..., None]], -1)


def _binomial_kernel(channels: int, dtype, device) -> torch.Tensor:
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=dtype, device=device)
    return (k[:, None] * k[None, :] / 256.0).expand(channels, 1, 5, 5).contiguous()


def _pyramid_plan(tform: torch.Tensor, size: int, height: int, width: int) -> tuple[int, tuple[int, int, int, int]]:
    """dlib's ``extract_image_chips`` bookkeeping for one chip: number of ``pyramid_down<2>``
    steps and the (left, top, right, bottom) crop the pyramid is built from."""
    a = tform.detach().double().cpu()
    side = float(a[:, 0].norm()) * (size - 1)  # corner-to-corner extent of the chip rectangle
    downs, grow, extent = 0, 2.0, side
    # rect_down maps a rectangle's corners by p / 2 - (1.25, 0.75): its extent halves.
    while (extent / 2 + 1) ** 2 > size * size:
        extent /= 2
        downs += 1
        grow = grow * 2 + 2  # border dlib keeps around the crop per level
    if downs == 0:
        return 0, (0, 0, width - 1, height - 1)
    corners = torch.tensor([[0.0, 0.0, 1.0], [size - 1, 0.0, 1.0], [0.0, size - 1, 1.0], [size - 1, size - 1, 1.0]], dtype=torch.float64)
    xy = corners @ a.T
    lo, hi = xy.min(0).values - grow, xy.max(0).values + grow
    box = [max(float(lo[0]), 0.0), max(float(lo[1]), 0.0), min(float(hi[0]), width - 1.0), min(float(hi[1]), height - 1.0)]
    return downs, tuple(int(math.floor(v + 0.5)) for v in box)  # drectangle -> rectangle rounding


def face_chips(
    images: torch.Tensor, landmarks: torch.Tensor, size: int = CHIP_SIZE, padding: float = CHIP_PADDING
) -> torch.Tensor:
    """dlib-aligned face chips (``dlib.get_face_chip``), differentiable in the images.

    Sampling positions equal dlib's. Where the face box is more than about twice the chip size,
    dlib first builds ``pyramid_down<2>`` levels (5×5 binomial filter, stride 2) from a crop
    around the face; this is reproduced too (same crop, filter and coordinate mapping). dlib
    truncates to uint8 after each step; these chips stay float.

    Args:
        images: (B, C, H, W).
        landmarks: (B, 68, 2) or (B, 5, 2), project convention (pixels, origin at the top-left
            corner). Treated as labels: no gradient flows to them.
        size: chip side (150 for dlib's descriptor); padding: dlib's padding (0.25).
    Returns:
        (B, C, size, size), bilinear, zeros outside the image.
    """
    B, C, H, W = images.shape
    # dlib works with pixel centres at integer coordinates: shift by half a pixel.
    tform = chip_to_image_transform(landmarks.detach().double() - 0.5, size, padding)
    ar = torch.arange(size, dtype=torch.float64, device=images.device)
    v, u = torch.meshgrid(ar, ar, indexing="ij")
    uv1 = torch.stack([u, v, torch.ones_like(u)], -1).reshape(1, -1, 3)
    img_xy = uv1 @ tform.transpose(1, 2)  # (B, size², 2) dlib pixel centres, float64

    def sample(img: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[-2:]
        norm = torch.stack([(2 * xy[..., 0] + 1) / w - 1, (2 * xy[..., 1] + 1) / h - 1], -1)
        grid = norm.to(img.dtype).reshape(img.shape[0], size, size, 2)
        return F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    plans = [_pyramid_plan(tform[i], size, H, W) for i in range(B)]
    direct = [i for i, (downs, _) in enumerate(plans) if downs == 0]
    if len(direct) == B:
        return sample(images, img_xy)
    out = images.new_zeros(B, C, size, size)
    if direct:
        sel = torch.tensor(direct, device=images.device)
        out = out.index_copy(0, sel, sample(images[sel], img_xy[sel]))
    kernel = _binomial_kernel(C, images.dtype, images.device)
    for i, (downs, (left, top, right, bottom)) in enumerate(plans):
        if downs == 0:
            continue
        img = images[i : i + 1, :, top : bottom + 1, left : right + 1]
        xy = img_xy[i : i + 1] - torch.tensor([left, top], dtype=torch.float64, device=images.device)
        for _ in range(downs):
            if min(img.shape[-2:]) < 9:  # dlib returns an empty level: nothing to sample
                img = img[..., :0, :0]
                break
            img = F.conv2d(img, kernel, stride=2, groups=C)
            xy = xy / 2 - torch.tensor([1.25, 0.75], dtype=torch.float64, device=images.device)
        chip = sample(img, xy) if img.numel() else images.new_zeros(1, C, size, size)
        out = out.index_copy(0, torch.tensor([i], device=images.device), chip)
    return out


def default_descriptor(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> nn.Module:
    """dlib's frozen descriptor for ``[0, 1]`` chips (converted once, cached on disk)."""
    from facetwin.networks.face_recognition import load_face_descriptor

    key = (str(device), dtype)
    if key not in _DESCRIPTORS:
        _DESCRIPTORS[key] = load_face_descriptor(device=device, dtype=dtype)
    return _DESCRIPTORS[key]


_DESCRIPTORS: dict = {}


def identity_loss(
    pred_images: torch.Tensor,
    target_images: torch.Tensor,
    landmarks: torch.Tensor,
    descriptor=None,
    padding: float = CHIP_PADDING,
) -> torch.Tensor:
    """``(B,)`` cosine distance ``1 - cos(f(chip(pred)), f(chip(target)))`` (paper Eq. 2, L_id).

    Args:
        pred_images, target_images: (B, 3, H, W) RGB in [0, 1] with the same framing (the
            render composited over the photo, and the photo).
        landmarks: (B, 68, 2) or (B, 5, 2) labels of the target, project convention (pixels,
            origin at the top-left corner); both images are chipped with the same transform.
        descriptor: ``(B, 3, 150, 150) -> (B, D)`` callable; default dlib's frozen ResNet
            (:func:`default_descriptor`). The target branch carries no gradient.
    """
    if descriptor is None:
        descriptor = default_descriptor(pred_images.device, pred_images.dtype)
    with torch.no_grad():
        target = descriptor(face_chips(target_images, landmarks, padding=padding))
    pred = descriptor(face_chips(pred_images, landmarks, padding=padding))
    return 1.0 - F.cosine_similarity(pred, target.to(pred.dtype), dim=-1, eps=1e-8)


class IdentityLoss(nn.Module):
    """``(composite, image, landmarks) -> scalar`` mean :func:`identity_loss` with a frozen
    descriptor (default: dlib's ResNet on ``device``)."""

    def __init__(self, descriptor: nn.Module | None = None, device: torch.device | str = "cpu"):
        super().__init__()
        self.descriptor = descriptor if descriptor is not None else default_descriptor(device)
        self.descriptor.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> "IdentityLoss":
        super().train(mode)
        self.descriptor.eval()
        return self

    def forward(self, composite: torch.Tensor, image: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        return identity_loss(composite, image, landmarks, self.descriptor).mean()


def dlib_identity_loss(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> IdentityLoss:
    """The pluggable L_id callable ``(composite, image, landmarks) -> scalar`` for
    :func:`facetwin.losses.coarse_losses`, with dlib's descriptor on ``device``."""
    return IdentityLoss(default_descriptor(device, dtype))
