"""Inference through onnxruntime (networks/onnx_runtime.py, CoarseModel.use_onnxruntime): the same
parameters as torch on real photos, one export per set of weights (a person's adapters make
another), gradients always through torch, the switch and its faults."""

import os

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from facetwin.errors import FacetwinError  # noqa: E402
from facetwin.networks import onnx_runtime  # noqa: E402


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FACETWIN_CACHE", str(tmp_path))
    monkeypatch.delenv("FACETWIN_BACKEND", raising=False)
    return tmp_path / "onnx"


@pytest.fixture()
def model():
    from facetwin.models.coarse import load_coarse_model

    m = load_coarse_model()[0]
    m.use_onnxruntime(False)  # from torch, whatever earlier tests of this process switched on
    yield m
    m.use_onnxruntime(False)  # the face descriptor is shared by every model of the process


@pytest.fixture(scope="module")
def crops():
    """The astronaut (the package's public-domain photo) and its mirror image as 224² face crops."""
    import cv2

    from facetwin.paths import PACKAGE_DIR

    img = cv2.cvtColor(cv2.imread(str(PACKAGE_DIR / "assets" / "astronaut.png")), cv2.COLOR_BGR2RGB)[40:360, 100:420]
    crop = cv2.resize(img, (224, 224), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(np.stack([crop, crop[:, ::-1]])).permute(0, 3, 1, 2).float() / 255


def test_same_parameters_as_torch_and_one_export_per_weights(cache, model, crops):
    with torch.no_grad():
        ref = model.predict(crops)
        assert model.use_onnxruntime()
        files = sorted(cache.glob("*.onnx"))
        assert [f.name.split("-")[0] for f in files] == ["coarse", "dlib"]
        assert not model.encoder.training and not model.descriptor().training  # exporting left them in eval mode
        out = model.predict(crops)
    for name in ("shape", "expression", "pose", "scale", "translation"):
        a, b = getattr(ref, name), getattr(out, name)
        assert torch.allclose(a, b, atol=2e-4, rtol=1e-4), (name, (a - b).abs().max())
    assert not torch.equal(ref.shape, out.shape) or not torch.equal(ref.pose, out.pose)  # it did run elsewhere
    stamps = {f: f.stat().st_mtime_ns for f in files}
    model.use_onnxruntime()  # the same weights: the cached graphs, not a new export
    assert {f: f.stat().st_mtime_ns for f in cache.glob("*.onnx")} == stamps


def test_a_person_s_adapters_are_exported_with_the_encoder(cache, model, crops):
    from facetwin.models.person import prepare_encoder

    model.use_onnxruntime()
    prepare_encoder(model.encoder, 8)
    with torch.no_grad():
        for p in model.encoder.transfer_parameters():
            p.add_(0.05 * torch.randn_like(p))  # adapters that change the output
        model.use_onnxruntime()
        assert len(list(cache.glob("coarse-encoder-*.onnx"))) == 2
        fast = model.encoder.raw(model.encoder_input(crops))
        model.use_onnxruntime(False)
        slow = model.encoder.raw(model.encoder_input(crops))
    assert torch.allclose(fast, slow, atol=1e-4), (fast - slow).abs().max()


def test_gradients_always_go_through_torch(cache, model, crops):
    model.use_onnxruntime()
    x = model.encoder_input(crops).requires_grad_(True)
    raw = model.encoder.raw(x)
    assert raw.grad_fn is not None
    raw.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_backend_switch_and_faults(cache, model, monkeypatch, tmp_path):
    monkeypatch.setenv("FACETWIN_BACKEND", "torch")
    assert not model.use_onnxruntime() and model.encoder.runtime is None
    monkeypatch.setenv("FACETWIN_BACKEND", "gpu")
    with pytest.raises(FacetwinError, match="FACETWIN_BACKEND must be auto, onnx or torch"):
        model.use_onnxruntime()
    monkeypatch.setenv("FACETWIN_BACKEND", "auto")
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv("FACETWIN_CACHE", str(blocker))
    with pytest.warns(UserWarning, match="onnxruntime not used .* running on torch"):
        assert not model.use_onnxruntime()
    assert model.encoder.runtime is None
    assert not os.path.exists(blocker / "onnx")


def test_the_detail_network_runs_the_same_and_a_persons_detail_adapters_make_a_new_graph(cache, model, crops):
    from facetwin.models.detail import DetailModel, DetailModelConfig, build_network
    from facetwin.networks.adapters import add_adapters

    cfg = DetailModelConfig()
    net = build_network("mae", cfg.mae, cfg.map_size)
    torch.manual_seed(0)
    with torch.no_grad():
        net.output_layer.weight.normal_(0, 0.02)  # a D that is not zero
    detail = DetailModel(model, net, cfg.map_size, cfg.image_size, highpass=cfg.highpass).eval()
    with torch.no_grad():
        ref = detail(crops)[1].displacement
        assert detail.use_onnxruntime() and len(list(cache.glob("detail-mae-*.onnx"))) == 1
        out = detail(crops)[1].displacement
        assert ref.abs().max() > 1e-4
        assert torch.allclose(out, ref, atol=1e-6 * 0.01 + 1e-4 * ref.abs().max()), (out - ref).abs().max()
        add_adapters(net, 8)  # in the MAE's blocks, as personalisation adds them
        for p in net.transfer_parameters():
            p.add_(0.05 * torch.randn_like(p))
        assert detail.use_onnxruntime() and len(list(cache.glob("detail-mae-*.onnx"))) == 2
        fast = detail(crops)[1].displacement
        detail.use_onnxruntime(False)
        assert net.runtime is None
        slow = detail(crops)[1].displacement
    assert not torch.allclose(slow, ref, atol=1e-5)  # the adapters changed D...
    assert torch.allclose(fast, slow, atol=1e-4 * slow.abs().max()), (fast - slow).abs().max()  # ...in both
