"""The viewer page: a GLB, a slider per morph target, the animation, optional picture sections.

The page reports what it loaded in ``<pre id="facetwin-report">`` (JSON: ``status``,
``morphTargets``, ``morphTargetNames``, ``animations``, ``vertices``, ``frames``) and in its title
(``facetwin viewer · N morph targets``), so a headless browser can check it (tests/test_viewer.py).
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
BUNDLE = ASSETS / "three-bundle.min.js"


@dataclass
class Section:
    """A row of pictures on the page: ``images`` are (caption, PNG/JPEG bytes) pairs."""

    title: str
    images: list[tuple[str, bytes]]
    text: str = ""


_STYLE = """
body{margin:0;font:14px/1.4 system-ui,sans-serif;background:#1d1f24;color:#e8e8e8}
header{padding:10px 16px;background:#111316}header h1{font-size:18px;margin:0}
header p{margin:4px 0 0;color:#aab}
#main{display:flex;flex-wrap:wrap}
#view{flex:1 1 640px;min-width:320px;height:640px;position:relative;background:#30343b}
#view canvas{display:block}
#panel{flex:0 0 330px;max-height:640px;overflow-y:auto;padding:8px 12px;box-sizing:border-box;background:#25282e}
#panel label{display:flex;align-items:center;gap:6px;font-size:12px}
#panel label span{flex:0 0 150px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
#panel input[type=range]{flex:1}
#panel button{margin:2px 4px 8px 0}
section{padding:8px 16px}section h2{font-size:16px;margin:8px 0}
figure{display:inline-block;margin:0 12px 12px 0;vertical-align:top}
figure img{max-height:240px;max-width:100%;border:1px solid #444;background:#000}
figcaption{color:#aab;font-size:12px}
#facetwin-report{font-size:11px;color:#889;white-space:pre-wrap;word-break:break-all;padding:0 16px}
"""

_SCRIPT = r"""
(function () {
  const report = { status: "loading", morphTargets: 0, morphTargetNames: [], animations: 0, vertices: 0, frames: 0 };
  const out = document.getElementById("facetwin-report");
  function publish() {
    out.textContent = JSON.stringify(report);
    document.title = "facetwin viewer · " + report.morphTargets + " morph targets · " + report.status;
  }
  publish();
  try {
    const { THREE, GLTFLoader, OrbitControls } = window.FACETWIN_THREE;
    const box = document.getElementById("view");
    const renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
    renderer.setPixelRatio(window.devicePixelRatio || 1);
    renderer.setSize(box.clientWidth, box.clientHeight);
    renderer.outputColorSpace = THREE.SRGBColorSpace;
    box.appendChild(renderer.domElement);
    const scene = new THREE.Scene();
    scene.background = new THREE.Color(0x30343b);
    scene.add(new THREE.HemisphereLight(0xffffff, 0x404048, 2.2));
    const key = new THREE.DirectionalLight(0xffffff, 1.6);
    key.position.set(0.4, 0.6, 1.0);
    scene.add(key);
    const camera = new THREE.PerspectiveCamera(30, box.clientWidth / box.clientHeight, 0.01, 10);
    const controls = new OrbitControls(camera, renderer.domElement);
    const clock = new THREE.Clock();
    let mixer = null, action = null, face = null;
    const sliders = [];

    const b64 = document.getElementById("facetwin-glb").textContent.trim();
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    new GLTFLoader().parse(bytes.buffer, "", (gltf) => {
      scene.add(gltf.scene);
      gltf.scene.traverse((o) => { if (o.isMesh && o.morphTargetDictionary) face = o; });
      const bounds = new THREE.Box3().setFromObject(gltf.scene);
      const centre = bounds.getCenter(new THREE.Vector3());
      const size = bounds.getSize(new THREE.Vector3()).length();
      camera.position.copy(centre).add(new THREE.Vector3(0, 0, size * 1.9));
      controls.target.copy(centre);
      controls.update();
      const panel = document.getElementById("sliders");
      if (face) {
        const names = Object.keys(face.morphTargetDictionary).sort((a, b) => face.morphTargetDictionary[a] - face.morphTargetDictionary[b]);
        report.morphTargets = names.length;
        report.morphTargetNames = names;
        report.vertices = face.geometry.attributes.position.count;
        names.forEach((name) => {
          const i = face.morphTargetDictionary[name];
          const label = document.createElement("label");
          const span = document.createElement("span");
          span.textContent = name;
          const input = document.createElement("input");
          input.type = "range"; input.min = "0"; input.max = "1"; input.step = "0.01";
          input.value = String(face.morphTargetInfluences[i]);
          input.dataset.morph = name;
          input.addEventListener("input", () => {
            if (action) { action.paused = true; playButton.textContent = "play"; }
            face.morphTargetInfluences[i] = parseFloat(input.value);
          });
          label.append(span, input);
          panel.appendChild(label);
          sliders.push([input, i]);
        });
      }
      report.animations = gltf.animations.length;
      const playButton = document.getElementById("play");
      if (gltf.animations.length) {
        mixer = new THREE.AnimationMixer(gltf.scene);
        action = mixer.clipAction(gltf.animations[0]);
        action.play();
        playButton.textContent = "pause";
        playButton.disabled = false;
      }
      playButton.addEventListener("click", () => {
        if (!action) return;
        action.paused = !action.paused;
        playButton.textContent = action.paused ? "play" : "pause";
      });
      document.getElementById("reset").addEventListener("click", () => {
        if (action) { action.paused = true; playButton.textContent = "play"; }
        sliders.forEach(([input, i]) => { face.morphTargetInfluences[i] = 0; input.value = "0"; });
      });
      report.status = "loaded";
      publish();
    }, (err) => { report.status = "error: " + (err && err.message ? err.message : err); publish(); });

    let lastSync = 0;
    renderer.setAnimationLoop(() => {
      const dt = clock.getDelta();
      if (mixer && action && !action.paused) {
        mixer.update(dt);
        const now = performance.now();
        if (now - lastSync > 100) {  // keep the sliders showing the playing weights
          sliders.forEach(([input, i]) => { input.value = String(face.morphTargetInfluences[i]); });
          lastSync = now;
        }
      }
      controls.update();
      renderer.render(scene, camera);
      if (report.status === "loaded") {
        report.frames += 1;
        if (report.frames === 1 || report.frames % 30 === 0) publish();
      }
    });
    window.addEventListener("resize", () => {
      camera.aspect = box.clientWidth / box.clientHeight;
      camera.updateProjectionMatrix();
      renderer.setSize(box.clientWidth, box.clientHeight);
    });
  } catch (e) {
    report.status = "error: " + e.message;
    publish();
  }
})();
"""


def _image_uri(data: bytes) -> str:
    mime = "image/jpeg" if data[:3] == b"\xff\xd8\xff" else "image/png"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def page_html(glb: bytes, title: str = "facetwin", subtitle: str = "", sections: list[Section] | None = None,
              info: dict | None = None) -> str:
    """The whole page as text (everything inline: no network when it is opened)."""
    # inlined verbatim: escape any "</script" inside it (none today) to keep the page valid
    bundle = BUNDLE.read_text(encoding="utf-8").replace("</script", "<\\/script")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<header><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p></header>",
        '<div id="main"><div id="view"></div><div id="panel">',
        '<button id="play" disabled>no animation</button><button id="reset">neutral</button>',
        "<div>drag to orbit, wheel to zoom; one slider per expression (ARKit blendshape)</div>",
        '<div id="sliders"></div></div></div>',
    ]
    for s in sections or []:
        parts.append(f"<section><h2>{html.escape(s.title)}</h2>")
        if s.text:
            parts.append(f"<p>{html.escape(s.text)}</p>")
        for caption, data in s.images:
            parts.append(f'<figure><img alt="{html.escape(caption)}" src="{_image_uri(data)}"><figcaption>{html.escape(caption)}</figcaption></figure>')
        parts.append("</section>")
    if info:
        parts.append(f"<section><h2>details</h2><pre>{html.escape(json.dumps(info, indent=1))}</pre></section>")
    parts += [
        '<pre id="facetwin-report"></pre>',
        f'<script type="application/octet-stream" id="facetwin-glb">{base64.b64encode(glb).decode("ascii")}</script>',
        f"<script>{bundle}</script>",
        f"<script>{_SCRIPT}</script>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_page(path: str | Path, glb: bytes, title: str = "facetwin", subtitle: str = "", sections: list[Section] | None = None,
               info: dict | None = None) -> Path:
    """Write the page atomically; returns its path."""
    from facetwin.outputs import write_text

    return write_text(path, page_html(glb, title, subtitle, sections, info))
