"""GLB (binary glTF 2.0) through pygltflib: the mesh, its textures, the expressions as named
morph targets, the head model's joints as a skin and, optionally, an animation.

Layout of the file (what Blender, three.js and the Khronos validator see):

* node 0 ``face`` — the skinned mesh (root node, as glTF asks); ``mesh.extras.targetNames``
  names the morph targets (the 52 ARKit names for the open model), ``mesh.weights`` is the
  reconstructed expression;
* nodes 1… — the joints ``global → neck → {jaw, eye_left, eye_right}`` with their rest
  offsets as translations and the reconstructed pose as rotations; skin 0 binds them;
* material 0 — base colour texture (and a normal map when given), metallic 0;
* animation 0 (optional) ``expressions`` — morph weights (and joint rotations) per frame.

Units metres; axes: y up, +z out of the face, x towards the subject's left (glTF's own frame).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facetwin.export.asset import FaceAsset

# glTF constants
_FLOAT, _UBYTE, _USHORT, _UINT = 5126, 5121, 5123, 5125
_ARRAY, _ELEMENTS = 34962, 34963
_LINEAR, _LINEAR_MIPMAP_LINEAR, _CLAMP = 9729, 9987, 33071


@dataclass
class Animation:
    """Per-frame values for :func:`write_glb`.

    Attributes:
        times: (T,) seconds, strictly increasing.
        weights: (T, K) morph weights per frame (K = the asset's morph targets).
        rotations: optional (T, J, 3) axis-angle per joint per frame (J = 5 joints, radians).
        name: the animation's name.
    """

    times: np.ndarray
    weights: np.ndarray
    rotations: np.ndarray | None = None
    name: str = "expressions"

    @classmethod
    def coerce(cls, value) -> "Animation | None":
        if value is None or isinstance(value, Animation):
            return value
        times, weights, *rest = value
        return cls(np.asarray(times), np.asarray(weights), np.asarray(rest[0]) if rest and rest[0] is not None else None)


def axis_angle_to_quaternion(aa: np.ndarray) -> np.ndarray:
    """(..., 3) axis-angle → (..., 4) unit quaternions in glTF's (x, y, z, w) order."""
    aa = np.asarray(aa, np.float64)
    angle = np.linalg.norm(aa, axis=-1, keepdims=True)
    half = angle / 2
    k = np.where(angle > 1e-12, np.sin(half) / np.maximum(angle, 1e-12), 0.5)
    return np.concatenate([aa * k, np.cos(half)], -1)


class _Blob:
    """The GLB's binary chunk: 4-byte aligned buffer views appended one after another."""

    def __init__(self, gltf):
        self.gltf = gltf
        self.data = io.BytesIO()

    def view(self, payload: bytes, target: int | None = None) -> int:
        import pygltflib as g

        pad = (-self.data.tell()) % 4
        self.data.write(b"\0" * pad)
        offset = self.data.tell()
        self.data.write(payload)
        self.gltf.bufferViews.append(g.BufferView(buffer=0, byteOffset=offset, byteLength=len(payload), target=target))
        return len(self.gltf.bufferViews) - 1

    def accessor(self, array: np.ndarray, kind: str, component: int = _FLOAT, target: int | None = _ARRAY,
                 bounds: bool = False, normalized: bool = False) -> int:
        import pygltflib as g

        dtype = {_FLOAT: np.float32, _UBYTE: np.uint8, _USHORT: np.uint16, _UINT: np.uint32}[component]
        a = np.ascontiguousarray(array, dtype=dtype)
        rows = a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(-1, 1)
        acc = g.Accessor(bufferView=self.view(a.tobytes(), target), componentType=component, count=int(rows.shape[0]), type=kind,
                         normalized=normalized or None)
        if bounds:
            acc.min = [float(x) if component == _FLOAT else int(x) for x in rows.min(0)]
            acc.max = [float(x) if component == _FLOAT else int(x) for x in rows.max(0)]
        self.gltf.accessors.append(acc)
        return len(self.gltf.accessors) - 1


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def build_gltf(asset: FaceAsset, animation: Animation | tuple | None = None, name: str = "face"):
    """The :class:`pygltflib.GLTF2` document (binary blob attached) of an asset."""
    import pygltflib as g

    anim = Animation.coerce(animation)
    gl = g.GLTF2(asset=g.Asset(version="2.0", generator="facetwin"), scene=0, scenes=[g.Scene(nodes=[0, 1])],
                 buffers=[g.Buffer(byteLength=0)])
    blob = _Blob(gl)
    K, J = len(asset.morph_names), len(asset.joint_names)

    attributes = g.Attributes(
        POSITION=blob.accessor(asset.positions, "VEC3", bounds=True),
        NORMAL=blob.accessor(asset.normals, "VEC3"),
        TEXCOORD_0=blob.accessor(np.stack([asset.uv[:, 0], 1.0 - asset.uv[:, 1]], 1), "VEC2"),  # glTF: v down
        JOINTS_0=blob.accessor(asset.skin_joints, "VEC4", _UBYTE if asset.skin_joints.dtype == np.uint8 else _USHORT),
        WEIGHTS_0=blob.accessor(asset.skin_weights, "VEC4"),
    )
    if "normal" in asset.textures:  # a normal texture needs its tangent frame: the one the map was baked in
        from facetwin.export.asset import uv_tangents, vertex_tangents

        tan, bit = uv_tangents(asset.positions, asset.faces, asset.uv, asset.faces)
        attributes.TANGENT = blob.accessor(vertex_tangents(asset.normals, tan, bit), "VEC4")
    n_idx = asset.faces.max() + 1
    indices = blob.accessor(asset.faces.reshape(-1), "SCALAR", _USHORT if n_idx < 65535 else _UINT, target=_ELEMENTS)
    targets = [g.Attributes(POSITION=blob.accessor(asset.morph_positions[k], "VEC3", bounds=True),
                            NORMAL=blob.accessor(asset.morph_normals[k], "VEC3")) for k in range(K)]

    material = g.Material(name=f"{name}_skin", doubleSided=False,
                          pbrMetallicRoughness=g.PbrMetallicRoughness(metallicFactor=0.0, roughnessFactor=0.75))
    gl.samplers.append(g.Sampler(magFilter=_LINEAR, minFilter=_LINEAR_MIPMAP_LINEAR, wrapS=_CLAMP, wrapT=_CLAMP))
    for key in ("base_color", "normal"):
        if key not in asset.textures:
            continue
        gl.images.append(g.Image(bufferView=blob.view(_png(asset.textures[key])), mimeType="image/png", name=f"{name}_{key}"))
        gl.textures.append(g.Texture(sampler=0, source=len(gl.images) - 1))
        if key == "base_color":
            material.pbrMetallicRoughness.baseColorTexture = g.TextureInfo(index=len(gl.textures) - 1)
        else:
            material.normalTexture = g.NormalMaterialTexture(index=len(gl.textures) - 1)
    if "base_color" not in asset.textures:
        material.pbrMetallicRoughness.baseColorFactor = [0.8, 0.66, 0.58, 1.0]
    gl.materials.append(material)
    gl.meshes.append(g.Mesh(name=name, primitives=[g.Primitive(attributes=attributes, indices=indices, material=0, targets=targets)],
                            weights=[float(w) for w in asset.weights], extras={"targetNames": list(asset.morph_names)}))

    # nodes: 0 = the skinned mesh, 1.. = joints (parents before children, as in the head model)
    gl.nodes.append(g.Node(name=name, mesh=0, skin=0))
    quats = axis_angle_to_quaternion(asset.pose)
    for j, (jn, parent) in enumerate(zip(asset.joint_names, asset.joint_parents)):
        offset = asset.joints[j] - (asset.joints[parent] if parent >= 0 else 0)
        gl.nodes.append(g.Node(name=jn, translation=[float(x) for x in offset], rotation=[float(x) for x in quats[j]]))
    for j, parent in enumerate(asset.joint_parents):
        if parent >= 0:
            gl.nodes[1 + parent].children.append(1 + j)
    inverse_bind = np.tile(np.eye(4, dtype=np.float32), (J, 1, 1))
    inverse_bind[:, :3, 3] = -asset.joints  # rest joints are unrotated: the inverse is a translation
    ibm = blob.accessor(np.transpose(inverse_bind, (0, 2, 1)).reshape(J, 16), "MAT4", target=None)  # column-major
    gl.skins.append(g.Skin(name=f"{name}_rig", inverseBindMatrices=ibm, joints=list(range(1, J + 1)), skeleton=1))

    if anim is not None:
        gl.animations.append(_animation(blob, anim, K, J))
    gl.buffers[0].byteLength = blob.data.tell()
    gl.set_binary_blob(blob.data.getvalue())
    return gl


def _animation(blob: _Blob, anim: Animation, K: int, J: int):
    import pygltflib as g

    from facetwin.errors import FacetwinError

    t = np.asarray(anim.times, np.float32).reshape(-1)
    w = np.asarray(anim.weights, np.float32)
    if w.shape != (len(t), K):
        raise FacetwinError(f"animation weights must be (frames, {K}) = ({len(t)}, {K}), got {w.shape}")
    if len(t) < 1 or not np.all(np.isfinite(t)) or np.any(np.diff(t) <= 0) or t[0] < 0:
        raise FacetwinError("animation times must be finite, non-negative and strictly increasing")
    if not np.all(np.isfinite(w)):
        raise FacetwinError("animation weights contain NaN or infinity")
    times = blob.accessor(t, "SCALAR", target=None, bounds=True)
    samplers = [g.AnimationSampler(input=times, output=blob.accessor(w.reshape(-1), "SCALAR", target=None), interpolation="LINEAR")]
    channels = [g.AnimationChannel(sampler=0, target=g.AnimationChannelTarget(node=0, path="weights"))]
    if anim.rotations is not None:
        r = np.asarray(anim.rotations, np.float32)
        if r.shape != (len(t), J, 3) or not np.all(np.isfinite(r)):
            raise FacetwinError(f"animation rotations must be finite (frames, {J}, 3), got {r.shape}")
        q = axis_angle_to_quaternion(r)
        for j in range(J):
            samplers.append(g.AnimationSampler(input=times, output=blob.accessor(q[:, j], "VEC4", target=None), interpolation="LINEAR"))
            channels.append(g.AnimationChannel(sampler=len(samplers) - 1, target=g.AnimationChannelTarget(node=1 + j, path="rotation")))
    return g.Animation(name=anim.name, samplers=samplers, channels=channels)


def glb_bytes(asset: FaceAsset, animation: Animation | tuple | None = None, name: str = "face") -> bytes:
    gl = build_gltf(asset, animation, name)
    return b"".join(gl.save_to_bytes())


def write_glb(asset: FaceAsset, path: str | Path, animation: Animation | tuple | None = None, name: str = "face") -> Path:
    """Write ``asset`` as a GLB (atomically). ``animation``: an :class:`Animation` or a tuple
    ``(times (T,), weights (T, K)[, rotations (T, 5, 3)])``."""
    from facetwin.outputs import write_bytes

    return write_bytes(path, glb_bytes(asset, animation, name))
