"""Inference through onnxruntime (optional, ``pip install onnxruntime``).

A frozen network is exported once to ONNX — cached on disk under a key of its class, its weights
(adapters included), its input shape and the torch version — and run by an onnxruntime session
with as many threads as torch has at the call. Only inference uses it: with gradients enabled
(training, personalisation) the torch path runs, so results never depend on it beyond float
rounding (outputs equal to ~1e-6; BENCHMARKS.md "Inference through onnxruntime").

    runtime = OnnxRuntime(encoder, example_inputs, "coarse-encoder", method="raw")  # exports or reuses the cache
    raw = runtime(images)                                                            # torch tensors in and out

A module that takes a runtime keeps it as ``module.runtime`` and calls it from its own method at
inference (:func:`active`: ``CoarseEncoder.raw``, ``DlibFaceDescriptor.forward``, ``DetailMAE`` and
``DetailUNet.forward``).

``FACETWIN_BACKEND=torch`` turns it off everywhere (:func:`wanted`).
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings

import numpy as np
import torch
from torch import nn

from facetwin.errors import FacetwinError
from facetwin.paths import cache_dir


def available() -> bool:
    """onnxruntime can be imported."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def wanted() -> bool:
    """Use onnxruntime for inference: installed and not turned off (``FACETWIN_BACKEND``: ``auto``
    (default) | ``onnx`` (required: an error without it) | ``torch``)."""
    choice = os.environ.get("FACETWIN_BACKEND", "auto").strip().lower()
    if choice not in ("auto", "onnx", "torch"):
        raise FacetwinError(f"FACETWIN_BACKEND must be auto, onnx or torch, not {choice!r}")
    if choice == "torch":
        return False
    if choice == "onnx" and not available():
        raise FacetwinError("FACETWIN_BACKEND=onnx but onnxruntime is not installed (pip install onnxruntime)")
    return available()


def active(module: nn.Module):
    """``module.runtime`` when one is set and this is inference (eval mode, no gradient), else None."""
    runtime = getattr(module, "runtime", None)
    return runtime if runtime is not None and not module.training and not torch.is_grad_enabled() else None


def attach(module: nn.Module, example: tuple[torch.Tensor, ...], name: str, method: str = "forward", on: bool = True) -> bool:
    """Set ``module.runtime`` to an onnxruntime session of ``module.<method>`` with its current
    weights (one it already has of the same weights is kept) when ``on``, the module is on CPU and
    onnxruntime is :func:`wanted`; else remove it. A fault exporting or loading (an unwritable cache,
    an exporter limit) warns and leaves the work to torch. Returns whether a session is set."""
    param = next(module.parameters(), None)
    if not on or (param is not None and param.device.type != "cpu") or not wanted():
        module.runtime = None
        return False
    old = getattr(module, "runtime", None)
    key = weights_key(module, f"{name}.{method}", example)
    if old is not None and old.key == key:
        return True
    try:
        module.runtime = OnnxRuntime(module, example, name, method, key=key)
    except Exception as exc:  # torch does the same work
        module.runtime = None
        first = str(exc).splitlines()[0][:160] if str(exc) else ""
        warnings.warn(f"onnxruntime not used for the {name} ({type(exc).__name__}: {first}); running on torch", stacklevel=2)
        return False
    return True


def weights_key(module: nn.Module, name: str, example: tuple[torch.Tensor, ...]) -> str:
    """SHA-256 (hex, 24 characters) of what the exported graph depends on."""
    h = hashlib.sha256(f"{name}|{type(module).__qualname__}|{torch.__version__}".encode())
    for x in example:
        h.update(str(tuple(x.shape[1:])).encode())
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


class _Method(nn.Module):
    """``module.<method>`` as a module of its own (what the exporter traces), without its runtime."""

    def __init__(self, module: nn.Module, method: str):
        super().__init__()
        self.inner, self.method = module, method

    def forward(self, *inputs):
        return getattr(self.inner, self.method)(*inputs)


class OnnxRuntime:
    """``module.<method>`` (frozen; tensors in and out, batch first) as an onnxruntime session.

    Args:
        module: the network (its current weights are what is exported).
        example: example inputs (any batch size: the batch dimension is dynamic).
        name: a label for the cache file and messages.
        method: what to export (default ``forward``).
        key: :func:`weights_key` of these, when the caller has it.
    """

    def __init__(self, module: nn.Module, example: tuple[torch.Tensor, ...], name: str, method: str = "forward",
                 key: str | None = None):
        import onnxruntime

        self._ort = onnxruntime
        self.name = name
        self.key = key or weights_key(module, f"{name}.{method}", example)  # ``key``: already computed
        self.path = cache_dir() / "onnx" / f"{name}-{self.key}.onnx"
        if not self.path.is_file():
            self._export(_Method(module, method), example)
        self._model = self.path.read_bytes()
        self._sessions: dict[int, object] = {}
        first = self._session(1)
        self.input_names = [i.name for i in first.get_inputs()]
        self.output_names = [o.name for o in first.get_outputs()]

    def _export(self, module: nn.Module, example: tuple[torch.Tensor, ...]) -> None:
        from facetwin.outputs import write_bytes

        names = [f"input{i}" for i in range(len(example))]
        buf = io.BytesIO()
        was_training, runtime = module.inner.training, getattr(module.inner, "runtime", None)  # the wrapped network's
        module.eval()
        module.inner.runtime = None  # trace the torch path, not an older session
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the exporter's notes on traced shapes
                torch.onnx.export(module, tuple(example), buf, input_names=names, output_names=["output"],
                                  dynamic_axes={n: {0: "batch"} for n in names + ["output"]},
                                  opset_version=17, dynamo=False)
        finally:
            module.train(was_training)
            module.inner.runtime = runtime
        write_bytes(self.path, buf.getvalue())

    def _session(self, threads: int):
        if threads not in self._sessions:
            so = self._ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            so.log_severity_level = 3
            # no busy-waiting between runs: its spinning threads would take the cores from torch's
            # own pool (2 threads: 80–125 ms per frame with spinning, BENCHMARKS.md)
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self._sessions[threads] = self._ort.InferenceSession(self._model, so, providers=["CPUExecutionProvider"])
        return self._sessions[threads]

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        device, dtype = inputs[0].device, inputs[0].dtype
        feeds = {n: np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy()) for n, x in zip(self.input_names, inputs)}
        out = self._session(max(1, torch.get_num_threads())).run(self.output_names, feeds)[0]
        return torch.from_numpy(out).to(device, dtype)
