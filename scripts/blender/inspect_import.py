"""Import a GLB or OBJ into Debian's Blender headless and print what it made as one JSON line.

    blender --background --factory-startup --python scripts/blender/inspect_import.py -- FILE [--render OUT.png]

Debian's Blender 3.4 glTF importer uses ``numpy.bool``, which Debian's numpy 1.24 removed; the
alias is restored before ``bpy`` is imported (their packaging bug, not ours).
"""

import json
import sys

import numpy

if not hasattr(numpy, "bool"):
    numpy.bool = bool

import bpy  # noqa: E402


def main() -> None:
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    path = argv[0]
    render = argv[argv.index("--render") + 1] if "--render" in argv else None
    bpy.ops.wm.read_factory_settings(use_empty=True)
    if path.lower().endswith((".glb", ".gltf")):
        bpy.ops.import_scene.gltf(filepath=path)
    else:
        if hasattr(bpy.ops.wm, "obj_import"):
            bpy.ops.wm.obj_import(filepath=path)
        else:
            bpy.ops.import_scene.obj(filepath=path)
    report = {"objects": []}
    for ob in bpy.context.scene.objects:
        item = {"name": ob.name, "type": ob.type}
        if ob.type == "MESH":
            me = ob.data
            item.update(vertices=len(me.vertices), polygons=len(me.polygons), uv_layers=[uv.name for uv in me.uv_layers],
                        materials=[m.name for m in me.materials if m],
                        shape_keys=[k.name for k in me.shape_keys.key_blocks] if me.shape_keys else [],
                        shape_key_values={k.name: k.value for k in me.shape_keys.key_blocks} if me.shape_keys else {},
                        vertex_groups=[g.name for g in ob.vertex_groups],
                        armature=next((m.object.name for m in ob.modifiers if m.type == "ARMATURE" and m.object), None),
                        smooth=all(p.use_smooth for p in me.polygons), custom_normals=bool(me.has_custom_normals))
            textures = []
            for m in me.materials:
                if m and m.use_nodes:
                    textures += [n.image.name for n in m.node_tree.nodes if n.type == "TEX_IMAGE" and n.image]
            item["textures"] = textures
        if ob.type == "ARMATURE":
            item["bones"] = [b.name for b in ob.data.bones]
        report["objects"].append(item)
    report["actions"] = [a.name for a in bpy.data.actions]
    if render:
        _render(render)
    print("FACETWIN_REPORT " + json.dumps(report))


def _render(out: str, size: int = 420) -> None:
    """A picture of what was imported, seen from the front (Cycles on the CPU, a few samples)."""
    from mathutils import Vector

    scene = bpy.context.scene
    meshes = [o for o in scene.objects if o.type == "MESH"]
    pts = [o.matrix_world @ Vector(c) for o in meshes for c in o.bound_box]
    lo = Vector((min(p.x for p in pts), min(p.y for p in pts), min(p.z for p in pts)))
    hi = Vector((max(p.x for p in pts), max(p.y for p in pts), max(p.z for p in pts)))
    centre, extent = (lo + hi) / 2, max(hi - lo)
    cam = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
    scene.collection.objects.link(cam)
    # glTF's +z (out of the face) is Blender's -y after import: look along +y, slightly from the side
    cam.location = centre + Vector((-0.9 * extent, -2.6 * extent, 0.15 * extent))
    cam.rotation_euler = (centre - cam.location).to_track_quat("-Z", "Y").to_euler()
    cam.data.lens = 70
    scene.camera = cam
    sun = bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN"))
    sun.data.energy = 3.0
    sun.rotation_euler = (1.0, 0.0, -0.5)
    scene.collection.objects.link(sun)
    world = bpy.data.worlds.new("world")
    world.color = (0.35, 0.36, 0.4)
    scene.world = world
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 12
    scene.cycles.device = "CPU"
    scene.cycles.use_denoising = False
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.render.filepath = out
    bpy.ops.render.render(write_still=True)


main()
