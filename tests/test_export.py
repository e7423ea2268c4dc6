"""facetwin.export on a real photo (the shipped astronaut): the OBJ's vt/vn and material, the
GLB's 52 ARKit morph targets, skin and animation read back with pygltflib and trimesh, and the
GLB evaluated by the glTF rules (morph, then skin) reproduces the reconstructed mesh."""

import json
from pathlib import Path

import numpy as np
import pytest

from export_fixtures import astronaut_files, astronaut_reconstruction  # noqa: F401
from facetwin.errors import FacetwinError
from facetwin.headmodel import load_head_model_data

ARKIT_52 = {
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff", "cheekSquintLeft",
    "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft",
    "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft",
    "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight", "mouthFunnel", "mouthLeft",
    "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight",
    "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight",
    "tongueOut",
}  # Apple's ARKit ARFaceAnchor.BlendShapeLocation names


@pytest.fixture(scope="module")
def head():
    """The open head model as exported (eyeballs in their own UV discs)."""
    from facetwin.export.asset import export_layout

    return export_layout(load_head_model_data("open"))


def test_export_layout_gives_the_eyeballs_their_own_uv_discs(head):
    from facetwin.export.asset import EYE_HALF, EYE_SQUARES
    from facetwin.export.textures import uv_coverage

    source = load_head_model_data("open")
    eyes = source.masks["eyeballs"][source.faces].all(1)
    assert eyes.sum() == 280 and source.meta.get("export_layout") is None  # the source is untouched
    assert (head.uv_faces[~eyes] == source.uv_faces[~eyes]).all()
    uv = head.uv_coords[head.uv_faces[eyes]].reshape(-1, 2)
    d = np.min([np.hypot(uv[:, 0] - cu, uv[:, 1] - cv) for cu, cv in EYE_SQUARES.values()], axis=0)
    assert d.max() <= EYE_HALF * 1.0001
    # the discs overlap no other triangle of the layout
    other = uv_coverage(source.__class__(**{**source.__dict__, "uv_faces": source.uv_faces[~eyes], "faces": source.faces[~eyes]}), 256)
    S = 256
    for cu, cv in EYE_SQUARES.values():
        r0, r1 = int((1 - cv - EYE_HALF) * S), int((1 - cv + EYE_HALF) * S)
        c0, c1 = int((cu - EYE_HALF) * S), int((cu + EYE_HALF) * S)
        assert other[r0:r1, c0:c1].sum() == 0


def _obj_lines(path):
    lines = Path(path).read_text().splitlines()
    count = lambda tag: sum(1 for ln in lines if ln.startswith(tag + " "))  # noqa: E731
    return lines, count


def test_obj_has_uvs_smooth_normals_and_its_material(astronaut_files, head):
    files = astronaut_files["files"]
    lines, count = _obj_lines(files["obj"])
    n_split = len(np.unique(np.stack([head.faces.ravel(), head.uv_faces.ravel()], 1), axis=0))
    assert n_split == 4770  # 4,570 vertices + copies along the UV seams
    assert count("v") == count("vt") == count("vn") == n_split
    assert count("f") == head.faces.shape[0] == 9084
    assert "mtllib astronaut.mtl" in lines and "usemtl astronaut_texture" in lines and "s 1" in lines
    mtl = Path(files["mtl"]).read_text()
    assert "map_Kd astronaut_texture.png" in mtl
    from PIL import Image

    tex = Image.open(Path(files["obj"]).with_name("astronaut_texture.png"))
    assert tex.size == (512, 512) and tex.mode == "RGB"
    # normals are unit and smooth across UV seams: split copies of one vertex share a normal
    vn = np.array([[float(x) for x in ln.split()[1:]] for ln in lines if ln.startswith("vn ")])
    assert np.allclose(np.linalg.norm(vn, axis=1), 1, atol=1e-5)
    from facetwin.export import split_uv_seams

    src = split_uv_seams(head.faces, head.uv_coords, head.uv_faces).source
    dup = np.flatnonzero(np.bincount(src) > 1)
    assert len(dup) > 50
    for v in dup[:20]:
        copies = vn[src == v]
        assert np.allclose(copies, copies[0], atol=1e-6)


def test_obj_reads_back_in_trimesh_with_uvs_and_texture(astronaut_files, astronaut_reconstruction, head):
    import trimesh

    mesh = trimesh.load(astronaut_files["files"]["obj"], process=False)
    assert isinstance(mesh, trimesh.Trimesh) and len(mesh.vertices) == 4770 and len(mesh.faces) == 9084
    assert mesh.visual.kind == "texture" and mesh.visual.uv.shape == (4770, 2)
    assert mesh.visual.material.image.size == (512, 512)
    # positions are the posed mesh the camera saw (metres), so the camera convention still holds
    assert np.allclose(mesh.vertices, astronaut_reconstruction.vertices[_split_source(head)], atol=1e-7)
    assert np.allclose(mesh.bounds, [astronaut_reconstruction.vertices.min(0), astronaut_reconstruction.vertices.max(0)], atol=1e-6)


def _gltf(path):
    import pygltflib

    return pygltflib.GLTF2().load(str(path))


def _accessor(gl, index):
    acc = gl.accessors[index]
    view = gl.bufferViews[acc.bufferView]
    dtype = {5126: np.float32, 5121: np.uint8, 5123: np.uint16, 5125: np.uint32}[acc.componentType]
    width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}[acc.type]
    blob = gl.binary_blob()
    a = np.frombuffer(blob, dtype, acc.count * width, view.byteOffset + (acc.byteOffset or 0))
    return a.reshape(acc.count, width) if width > 1 else a


def _quat_to_matrix(q):
    x, y, z, w = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def test_glb_has_52_arkit_morph_targets_skin_and_default_expression(astronaut_files, astronaut_reconstruction, head):
    gl = _gltf(astronaut_files["files"]["glb"])
    mesh = gl.meshes[0]
    names = mesh.extras["targetNames"]
    assert len(names) == len(mesh.primitives[0].targets) == 52
    assert set(names) == ARKIT_52 and names == list(head.expression_names)
    assert np.allclose(mesh.weights, astronaut_reconstruction.params["expression"], atol=1e-6)
    skin = gl.skins[0]
    assert [gl.nodes[j].name for j in skin.joints] == ["global", "neck", "jaw", "eye_left", "eye_right"]
    assert gl.nodes[0].skin == 0 and gl.nodes[0].mesh == 0
    mat = gl.materials[0]
    assert mat.pbrMetallicRoughness.baseColorTexture is not None and gl.images[0].mimeType == "image/png"


def test_glb_evaluated_by_gltf_rules_reproduces_the_reconstructed_mesh(astronaut_files, astronaut_reconstruction, head):
    """Morph targets with the default weights, then linear blend skinning with the node
    transforms: every split vertex lands on the reconstructed (posed) vertex it copies."""
    gl = _gltf(astronaut_files["files"]["glb"])
    prim = gl.meshes[0].primitives[0]
    pos = _accessor(gl, prim.attributes.POSITION).astype(np.float64)
    for w, target in zip(gl.meshes[0].weights, prim.targets):
        pos = pos + w * _accessor(gl, target["POSITION"] if isinstance(target, dict) else target.POSITION)
    joints_idx = _accessor(gl, prim.attributes.JOINTS_0)
    weights = _accessor(gl, prim.attributes.WEIGHTS_0)
    assert np.allclose(weights.sum(1), 1, atol=1e-6)
    skin = gl.skins[0]
    ibm = _accessor(gl, skin.inverseBindMatrices).reshape(-1, 4, 4).transpose(0, 2, 1)  # column-major
    world = {}

    def world_of(n):
        if n in world:
            return world[n]
        node = gl.nodes[n]
        local = np.eye(4)
        local[:3, :3] = _quat_to_matrix(node.rotation or [0, 0, 0, 1])
        local[:3, 3] = node.translation or [0, 0, 0]
        parent = next((i for i, p in enumerate(gl.nodes) if n in (p.children or [])), None)
        world[n] = (world_of(parent) if parent is not None else np.eye(4)) @ local
        return world[n]

    mats = np.stack([world_of(j) @ ibm[k] for k, j in enumerate(skin.joints)])  # (J, 4, 4)
    blended = np.einsum("vk,vkij->vij", weights, mats[joints_idx])
    posed = np.einsum("vij,vj->vi", blended[:, :3, :3], pos) + blended[:, :3, 3]
    src = np.array([s for s in _split_source(head)])
    err = np.abs(posed - astronaut_reconstruction.vertices[src]).max()
    assert err < 2e-5, f"GLB default pose differs from the reconstruction by {err * 1000:.3f} mm"


def _split_source(head):
    from facetwin.export import split_uv_seams

    return split_uv_seams(head.faces, head.uv_coords, head.uv_faces).source


def test_glb_animation_round_trips(astronaut_files):
    gl = _gltf(astronaut_files["files"]["glb"])
    t, w, rot = astronaut_files["animation"]
    anim = gl.animations[0]
    weights_ch = [c for c in anim.channels if c.target.path == "weights"]
    rot_ch = [c for c in anim.channels if c.target.path == "rotation"]
    assert len(weights_ch) == 1 and weights_ch[0].target.node == 0 and len(rot_ch) == 5
    s = anim.samplers[weights_ch[0].sampler]
    assert np.allclose(_accessor(gl, s.input), t)
    assert np.allclose(_accessor(gl, s.output).reshape(len(t), 52), w)
    neck = next(c for c in rot_ch if gl.nodes[c.target.node].name == "neck")
    q = _accessor(gl, anim.samplers[neck.sampler].output)
    assert np.allclose(2 * np.arctan2(q[:, 1], q[:, 3]), rot[:, 1, 1], atol=1e-5)  # y rotation angle per frame


def test_glb_reads_back_in_trimesh(astronaut_files):
    import trimesh

    scene = trimesh.load(astronaut_files["files"]["glb"])
    geoms = list(scene.geometry.values())
    assert len(geoms) == 1 and len(geoms[0].vertices) == 4770 and len(geoms[0].faces) == 9084
    assert geoms[0].visual.kind == "texture" and geoms[0].visual.material.baseColorTexture.size == (512, 512)


def test_result_json_names_the_expression_and_units(astronaut_files, astronaut_reconstruction):
    doc = json.loads(Path(astronaut_files["files"]["json"]).read_text())
    assert set(doc["expression_weights"]) == ARKIT_52
    assert doc["expression_weights"]["jawOpen"] == pytest.approx(float(astronaut_reconstruction.params["expression"][24]))
    assert "metres" in doc["units"] and doc["camera"]["model"] == "orthographic"
    assert doc["files"]["glb"] == "astronaut.glb" and doc["image_size"] == [512, 512]


def test_textures_photo_where_seen_albedo_elsewhere(astronaut_files):
    from PIL import Image

    out = astronaut_files["out"]
    photo = np.asarray(Image.open(out / "astronaut_photo.png"))
    texture = np.asarray(Image.open(out / "astronaut_texture.png")).astype(float)
    albedo = np.asarray(Image.open(out / "astronaut_albedo.png")).astype(float)
    assert photo.shape == (512, 512, 4)
    seen = photo[..., 3] > 127
    assert 0.1 < seen.mean() < 0.6  # a frontal photo sees the face, not the back of the head
    # deep inside the seen area the material texture is the photo
    import cv2

    core = cv2.erode(seen.astype(np.uint8), np.ones((31, 31), np.uint8)) > 0
    assert core.sum() > 1000
    assert np.abs(texture[core] - photo[..., :3][core]).mean() < 3
    # the eyes' discs: a plain eye where the photo did not see it (dark pupil at the centre)
    from facetwin.export.asset import EYE_SQUARES

    for cu, cv in EYE_SQUARES.values():
        r, c = int((1 - cv) * 512), int(cu * 512)
        if photo[r, c, 3] == 0:
            assert texture[r, c].max() < 40
    # far from it, it is the (gain-matched) albedo: same pattern, another overall colour
    far = (cv2.dilate(seen.astype(np.uint8), np.ones((41, 41), np.uint8)) == 0) & (albedo.sum(-1) > 0)
    assert far.sum() > 1000
    corr = np.corrcoef(texture[far][:, 0], albedo[far][:, 0])[0, 1]
    assert corr > 0.9


def test_export_from_npz_matches_direct_export(astronaut_files, tmp_path):
    from facetwin.export import FaceResult, export_result

    files = export_result(FaceResult.from_npz(astronaut_files["files"]["npz"]), tmp_path, "astronaut", formats=("obj",))
    assert Path(files["obj"]).read_text() == Path(astronaut_files["files"]["obj"]).read_text()
    assert "glb" not in files


def test_normal_map_from_displacement_known_answers():
    from facetwin.export.textures import normal_map_from_displacement

    S, texel = 64, 0.001  # 1 mm per texel
    flat = normal_map_from_displacement(np.zeros((S, S)), texel)
    assert (flat == [128, 128, 255]).all()
    slope = 0.5  # h rises 0.5 mm per mm along +u: the normal tilts towards -u
    cols = np.arange(S) * texel
    ramp = normal_map_from_displacement(np.tile(slope * cols, (S, 1)), texel)
    n = ramp[S // 2, S // 2].astype(float) / 255 * 2 - 1
    expect = np.array([-slope, 0, 1]) / np.sqrt(1 + slope**2)
    assert np.allclose(n, expect, atol=0.01)
    # rows grow downwards = v decreases: a height rising towards the top (+v) tilts towards -v
    rows = np.arange(S)[:, None] * texel
    up = normal_map_from_displacement(np.tile(-slope * rows, (1, S)), texel)
    n = up[S // 2, S // 2].astype(float) / 255 * 2 - 1
    assert np.allclose(n, [0, -slope / np.sqrt(1 + slope**2), 1 / np.sqrt(1 + slope**2)], atol=0.01)


def test_glb_normal_map_is_stored_when_given(head, tmp_path):
    from facetwin.export import build_face_asset, write_glb

    nm = np.full((32, 32, 3), [128, 128, 255], np.uint8)
    asset = build_face_asset(head, textures={"base_color": np.full((32, 32, 3), 200, np.uint8), "normal": nm})
    gl = _gltf(write_glb(asset, tmp_path / "n.glb"))
    assert gl.materials[0].normalTexture is not None and len(gl.images) == 2


@pytest.mark.parametrize("bad", [
    (np.array([0.0, 0.0]), np.zeros((2, 52))),                 # times not increasing
    (np.array([0.0, 1.0]), np.zeros((2, 51))),                 # wrong number of weights
    (np.array([0.0, 1.0]), np.full((2, 52), np.nan)),          # NaN weights
    (np.array([0.0, 1.0]), np.zeros((2, 52)), np.zeros((2, 4, 3))),  # wrong joints
])
def test_bad_animation_is_a_clear_error(head, tmp_path, bad):
    from facetwin.export import build_face_asset, write_glb

    with pytest.raises(FacetwinError):
        write_glb(build_face_asset(head), tmp_path / "a.glb", animation=bad)
    assert not (tmp_path / "a.glb").exists()


def test_unknown_format_is_a_clear_error(astronaut_files, tmp_path):
    from facetwin.export import FaceResult, export_result

    with pytest.raises(FacetwinError, match="unknown export format"):
        export_result(FaceResult.from_npz(astronaut_files["files"]["npz"]), tmp_path, "x", formats=("fbx",))


def test_vertex_tangents_on_a_flat_grid_follow_u_and_the_handedness_of_v():
    """Known answer: a flat square in z = 0 facing +z with u = x: the tangent is +x; v = y gives
    w = +1 (normal × tangent = +y = dP/dv), v = −y gives w = −1 (a mirrored layout)."""
    from facetwin.export.asset import uv_tangents, vertex_tangents

    xy = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float64)
    verts = np.concatenate([xy * 0.02, np.zeros((4, 1))], 1)   # 2 cm square, metres
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    normals = np.tile([0.0, 0.0, 1.0], (4, 1))
    for flip, w in ((1.0, 1.0), (-1.0, -1.0)):
        uv = np.stack([xy[:, 0], flip * xy[:, 1]], 1)
        t = vertex_tangents(normals, *uv_tangents(verts, faces, uv, faces))
        assert np.allclose(t[:, :3], [1, 0, 0], atol=1e-6) and np.all(t[:, 3] == w)
    # degenerate UVs (all corners at one point): still a unit tangent orthogonal to the normal
    t = vertex_tangents(normals, *uv_tangents(verts, faces, np.zeros((4, 2)), faces))
    assert np.allclose(np.linalg.norm(t[:, :3], axis=1), 1) and np.allclose(t[:, :3] @ [0, 0, 1], 0)


def test_a_glb_with_a_normal_texture_carries_its_tangents(tmp_path):
    """The GLB of a result with details has TANGENT (unit xyz orthogonal to NORMAL, w = ±1) beside
    its normal texture, as glTF wants (the validator warns otherwise); without details none."""
    import pygltflib

    from facetwin.export.asset import build_face_asset
    from facetwin.export.gltf import write_glb
    from facetwin.headmodel import load_head_model

    data = load_head_model("open").data
    for textures, expect in (({"normal": np.full((64, 64, 3), (128, 128, 255), np.uint8)}, True), ({}, False)):
        asset = build_face_asset(data, textures=textures)
        path = write_glb(asset, tmp_path / f"t{int(expect)}.glb")
        gl = pygltflib.GLTF2().load(str(path))
        attrs = gl.meshes[0].primitives[0].attributes
        assert (attrs.TANGENT is not None) == expect
        if expect:
            acc = gl.accessors[attrs.TANGENT]
            view = gl.bufferViews[acc.bufferView]
            blob = gl.binary_blob()
            t = np.frombuffer(blob[view.byteOffset + (acc.byteOffset or 0):][: acc.count * 16], np.float32).reshape(-1, 4)
            assert len(t) == len(asset.positions)
            assert np.allclose(np.linalg.norm(t[:, :3], axis=1), 1, atol=1e-5) and set(np.unique(t[:, 3])) <= {-1.0, 1.0}
            assert np.abs((t[:, :3] * asset.normals).sum(1)).max() < 1e-4
