"""Optional visibility backend: OpenGL through moderngl over headless EGL (Mesa llvmpipe on CPU).

Never required: ``pip install moderngl`` plus the system's EGL/Mesa libraries (Debian:
libegl1 libegl-mesa0 libgl1 libglx-mesa0 libgl1-mesa-dri libgbm1). Only the triangle-id pass
runs in OpenGL; barycentrics and gradients stay in torch, so results differ from the default
backend only where OpenGL's tie rules pick another triangle for a pixel centre on a shared edge
or where depths are nearly equal.

Select it with ``rasterize(..., backend="moderngl")`` or ``FACETWIN_RASTER_BACKEND=moderngl``.
"""

from __future__ import annotations

import threading

import numpy as np
import torch

_VERTEX = """
#version 330
in vec3 in_pos;
void main() { gl_Position = vec4(in_pos, 1.0); }
"""
_FRAGMENT = """
#version 330
out int tri;
void main() { tri = gl_PrimitiveID + 1; }
"""

_state: dict = {}
_lock = threading.Lock()


def available() -> bool:
    """True when a headless OpenGL 3.3 context can be created."""
    try:
        _context()
        return True
    except Exception:  # import error, no EGL, no GL 3.3: all mean "not available"
        return False


def _context():
    with _lock:
        if "ctx" not in _state:
            import moderngl

            ctx = moderngl.create_standalone_context(backend="egl", require=330)
            prog = ctx.program(vertex_shader=_VERTEX, fragment_shader=_FRAGMENT)
            _state.update(ctx=ctx, prog=prog, fbos={})
        return _state


def _framebuffer(state, H: int, W: int):
    key = (H, W)
    if key not in state["fbos"]:
        ctx = state["ctx"]
        colour = ctx.texture((W, H), 1, dtype="i4")
        depth = ctx.depth_renderbuffer((W, H))
        state["fbos"][key] = ctx.framebuffer(color_attachments=[colour], depth_attachment=depth)
    return state["fbos"][key]


def visibility(sv: torch.Tensor, faces: torch.Tensor, H: int, W: int, cull: bool, perspective: bool) -> torch.Tensor:
    """Same contract as ``rasterizer._visibility``: (B, H, W) int64 triangle ids, -1 = background."""
    import moderngl

    state = _context()
    ctx, prog = state["ctx"], state["prog"]
    fbo = _framebuffer(state, H, W)
    sv64 = sv.detach().to("cpu", torch.float64)
    faces_cpu = faces.to("cpu")
    B = sv64.shape[0]
    tri = sv64[:, faces_cpu]  # (B, F, 3, 3)
    x, y, z = tri[..., 0], tri[..., 1], tri[..., 2]
    area = (x[..., 1] - x[..., 0]) * (y[..., 2] - y[..., 0]) - (x[..., 2] - x[..., 0]) * (y[..., 1] - y[..., 0])
    valid = (area.abs() > 1e-12) & torch.isfinite(area)
    if cull:
        valid &= area < 0
    if perspective:
        valid &= (z > 0).all(-1)
    zv = sv64[..., 2]
    zmax = zv.amax(1)
    zmin = torch.where(zv > 0, zv, torch.full_like(zv, float("inf"))).amin(1).clamp_max(zmax) if perspective else zv.amin(1)
    out = torch.full((B, H, W), -1, dtype=torch.int64)
    fbo.use()
    ctx.enable(moderngl.DEPTH_TEST)
    ctx.disable(moderngl.CULL_FACE)
    ctx.depth_func = "<"
    for b in range(B):
        sel = torch.nonzero(valid[b]).squeeze(1)
        if sel.numel() == 0:
            continue
        # NDC: x → [-1, 1]; image row 0 at NDC y = -1 (the framebuffer's first row read back);
        # NDC depth -0.9 = closest, so the usual "less" test keeps the nearest surface.
        ndc = torch.stack([
            2 * sv64[b, :, 0] / W - 1,
            2 * sv64[b, :, 1] / H - 1,
            1.8 * (zmax[b] - zv[b]) / (zmax[b] - zmin[b]).clamp_min(1e-12) - 0.9,  # inside the clip range
        ], -1).to(torch.float32).numpy()
        idx = faces_cpu[sel].to(torch.int32).numpy()
        vbo = ctx.buffer(np.ascontiguousarray(ndc).tobytes())
        ibo = ctx.buffer(np.ascontiguousarray(idx).tobytes())
        vao = ctx.vertex_array(prog, [(vbo, "3f", "in_pos")], index_buffer=ibo, index_element_size=4)
        fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        vao.render(moderngl.TRIANGLES)
        raw = np.frombuffer(fbo.read(components=1, dtype="i4"), dtype=np.int32).reshape(H, W)
        ids = torch.from_numpy(raw.astype(np.int64))
        hit = ids > 0
        out[b][hit] = sel[ids[hit] - 1]
        vao.release()
        vbo.release()
        ibo.release()
    return out.to(sv.device)
