"""L_id: DECA's identity loss through dlib's face descriptor, with dlib's face-chip alignment.

dlib's ResNet descriptor (``facetwin.networks.face_recognition``) expects 150 × 150 chips
aligned exactly like ``dlib.get_face_chip(img, shape, 150, 0.25)``: a similarity transform fitted
(least squares) from 32 of the 68 landmarks (eyes, nose, upper lip; brows and lower lip are
ignored) to dlib's mean face shape, with 25 % padding. :func:`face_chips` reproduces it with a
differentiable ``grid_sample``, so the loss gradient reaches the rendered pixels. The transform
is fitted to the *labels* and shared by the composite and the image: both chips show the same
region and only their content differs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

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


def chip_template(size: int = 150, padding: float = 0.25, dtype=torch.float32, device=None) -> torch.Tensor:
    """(32, 2) chip-pixel positions (dlib's pixel-centre convention) of :data:`CHIP_LANDMARKS`."""
    idx = [i - 17 for i in CHIP_LANDMARKS]
    xy = torch.tensor([[_MEAN_FACE_X[i], _MEAN_FACE_Y[i]] for i in idx], dtype=torch.float64)
    return ((padding + xy) / (2 * padding + 1) * size).to(dtype=dtype, device=device)


def similarity_transform(src: torch.Tensor, dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares similarity (Umeyama, no reflection) with ``dst ≈ src @ A.T + t``.

    Args:
        src: (N, 2) or (B, N, 2); dst: (B, N, 2).
    Returns:
        A (B, 2, 2) scaled rotation and t (B, 2).
    """
    src = src.expand_as(dst)
    ms, md = src.mean(1, keepdim=True), dst.mean(1, keepdim=True)
    s0, d0 = src - ms, dst - md
    # For 2-D similarities the optimum is closed-form: A = [[a, -b], [b, a]].
    var = (s0 * s0).sum((1, 2))
    a = (s0 * d0).sum((1, 2)) / var
    b = (s0[..., 0] * d0[..., 1] - s0[..., 1] * d0[..., 0]).sum(1) / var
    A = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], -2)
    t = md[:, 0] - (ms[:, 0, None, :] @ A.transpose(1, 2))[:, 0]
    return A, t


def face_chips(
    images: torch.Tensor, landmarks: torch.Tensor, size: int = 150, padding: float = 0.25
) -> torch.Tensor:
    """dlib-aligned face chips (``dlib.get_face_chip``), differentiable in the images.

    Where the face is more than twice the chip size dlib samples from an image pyramid; here the
    image is average-pooled by 2 per pyramid level instead (close, not bit-exact). Up to that
    scale the chips equal dlib's to the uint8 rounding.

    Args:
        images: (B, C, H, W).
        landmarks: (B, 68, 2) in the project convention (pixels, origin at the top-left corner).
        size: chip side (150 for dlib's descriptor); padding: dlib's padding (0.25).
    Returns:
        (B, C, size, size), bilinear, zeros outside the image.
    """
    B = images.shape[0]
    dtype = images.dtype
    # dlib works with pixel centres at integer coordinates: shift by half a pixel.
    dst = landmarks[:, list(CHIP_LANDMARKS)].detach().to(dtype) - 0.5
    A, t = similarity_transform(chip_template(size, padding, dtype, images.device), dst)
    scale = torch.sqrt(torch.det(A))  # image pixels per chip pixel
    # dlib (chip_details, extract_image_chips): a box of side size·scale - 1 centred on fit(size/2),
    # rotated like the fit, whose corner pixel centres are chip pixels 0 and size - 1.
    centre = torch.full((1, 2), float(size // 2), dtype=dtype, device=images.device) @ A.transpose(1, 2) + t[:, None]
    step = (size * scale - 1) / (size - 1)
    r = torch.arange(size, dtype=dtype, device=images.device) - (size - 1) / 2
    grid_chip = torch.stack(torch.meshgrid(r, r, indexing="xy"), -1).reshape(-1, 2)  # (size², 2) (x, y)
    img_xy = grid_chip[None] @ (A * (step / scale)[:, None, None]).transpose(1, 2) + centre  # dlib pixel centres
    levels = torch.zeros(B, dtype=torch.long)
    s = scale.detach().cpu()
    while bool((s / 2 ** (levels + 1) > 1).any()):
        levels += (s / 2 ** (levels + 1) > 1).long()
    out = images.new_zeros(B, images.shape[1], size, size)
    for level in torch.unique(levels).tolist():
        sel = torch.nonzero(levels == level).flatten().to(images.device)
        img, xy = images[sel], img_xy[sel]
        for _ in range(level):
            img = F.avg_pool2d(img, 2, ceil_mode=True)
            xy = (xy - 0.5) / 2  # pooled pixel i covers old pixels 2i, 2i + 1
        H, W = img.shape[-2:]
        norm = torch.stack([(2 * xy[..., 0] + 1) / W - 1, (2 * xy[..., 1] + 1) / H - 1], -1)
        chips = F.grid_sample(img, norm.reshape(-1, size, size, 2), mode="bilinear", padding_mode="zeros", align_corners=False)
        out = out.index_copy(0, sel, chips)
    return out
