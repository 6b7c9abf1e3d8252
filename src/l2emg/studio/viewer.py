"""The studio's interactive 3D skeleton: joints (T, 22, 3) -> a self-contained three.js page.

    payload = viewer_payload([("ES-MoE", joints)])              # JSON-ready dict, positions in mm steps
    page = viewer_page(payload, static="./gradio_api/file=/…/l2emg/studio/static")
    html = viewer_iframe(page)                                  # what the Gradio HTML component shows

The page draws each motion as bones (cylinders coloured by kinematic chain, as `motion/render/`
colours its GIFs: left limbs blue, right limbs red, spine grey), joints and a head on a floor grid,
with the root's path on the floor; several motions stand side by side on one timeline (a shorter
one holds its last frame), each labelled. The user orbits / zooms / pans (OrbitControls), plays,
pauses, scrubs frame by frame (a range slider; space and the arrow keys too), changes the speed and
lets the camera follow the first figure.

Why an iframe with `srcdoc`: Gradio's HTML component sets `innerHTML`, where scripts do not run; in
an iframe the page is a document of its own with an import map for the ES modules, isolated from
Gradio's styles. Its base URL is the studio page's, so `static_url` may be relative to it.

three.js is vendored in `static/` (npm package `three` 0.185.0, the last release that ships the
minified module build: `build/three.module.min.js`, `build/three.core.min.js`, and
`examples/jsm/controls/OrbitControls.js`, MIT licence in `static/LICENSE`); nothing is fetched from
a CDN. For tests and tools the page exposes `window.l2emgViewer` (frames, current frame, frames
drawn, `setFrame`, `play`, `pause`) and sets `data-ready="true"` on `<body>` once it has drawn.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from l2emg.errors import DataError
from l2emg.motion.render import BONE_RADIUS, HEAD_RADIUS, LEFT_ARM, LEFT_LEG, RIGHT_ARM, RIGHT_LEG, SPINE
from l2emg.motion.skeleton import FPS, JOINT_INDEX, KINEMATIC_CHAIN, NUM_JOINTS, PARENTS

STATIC_DIR = Path(__file__).resolve().parent / "static"
THREE_VERSION = "0.185.0"
THREE_FILES = ("three.module.min.js", "three.core.min.js", "OrbitControls.js")
DECIMALS = 3  # positions in millimetre steps: ~80 kB of JSON for a 196-frame motion
SPACING = 1.6  # metres kept free between figures standing side by side

# KINEMATIC_CHAIN order (right leg, left leg, spine + head, right arm, left arm), as the GIF renderer.
_CHAIN_COLOURS = (RIGHT_LEG, LEFT_LEG, SPINE, RIGHT_ARM, LEFT_ARM)


def bone_colours() -> list[str]:
    """'#rrggbb' of the bone that ends at each joint (the joint's chain colour; spine for the root)."""
    colours = [SPINE] * NUM_JOINTS
    for chain, colour in zip(KINEMATIC_CHAIN, _CHAIN_COLOURS):
        for joint in chain[1:]:
            colours[joint] = colour
    return ["#%02x%02x%02x" % tuple(c) for c in colours]


def _checked(joints: Any, label: str) -> np.ndarray:
    array = np.asarray(joints, dtype=np.float64)
    if array.ndim != 3 or array.shape[1:] != (NUM_JOINTS, 3) or array.shape[0] < 1:
        raise DataError(f"{label}: expected joints of shape (T, {NUM_JOINTS}, 3), got {array.shape}")
    if not np.isfinite(array).all():
        raise DataError(f"{label}: joints contain NaN or infinite values")
    return array


def viewer_payload(motions: Sequence[tuple[str, np.ndarray]], fps: float = FPS) -> dict[str, Any]:
    """(label, joints (T, 22, 3) metres, Y up) pairs -> the JSON-ready data the page animates.

    One motion keeps its coordinates. Several are placed side by side along X: each is moved so its
    frame-0 root stands on the floor's X axis, at a distance that keeps their swept areas apart."""
    if not motions:
        raise DataError("viewer: no motion to show")
    arrays = [_checked(joints, label) for label, joints in motions]
    if len(arrays) > 1:
        starts = [a[0, 0, [0, 2]] for a in arrays]
        arrays = [a - np.array([s[0], 0.0, s[1]]) for a, s in zip(arrays, starts)]
        halves = [max(abs(a[..., 0].min()), abs(a[..., 0].max())) for a in arrays]
        x = 0.0
        placed = []
        for i, (a, half) in enumerate(zip(arrays, halves)):
            if i:
                x += halves[i - 1] + SPACING + half
            placed.append(a + np.array([x, 0.0, 0.0]))
        centre = x / 2
        arrays = [a - np.array([centre, 0.0, 0.0]) for a in placed]
    return {
        "fps": float(fps),
        "parents": list(PARENTS),
        "colours": bone_colours(),
        "head": JOINT_INDEX["head"],
        "boneRadius": BONE_RADIUS,
        "headRadius": HEAD_RADIUS,
        "motions": [{"label": str(label), "frames": int(a.shape[0]),
                     "positions": np.round(a, DECIMALS).reshape(-1).tolist()}
                    for (label, _), a in zip(motions, arrays)],
    }


def static_url(prefix: str = "./gradio_api/file=") -> str:
    """URL of the vendored three.js folder as Gradio serves allowed files (relative to the page)."""
    return prefix + STATIC_DIR.as_posix()


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element (no `</` that could close it)."""
    return json.dumps(value, separators=(",", ":")).replace("</", "<\\/")


def viewer_page(payload: dict[str, Any], static: str | None = None, title: str = "l2emg motion") -> str:
    """The complete HTML document of the viewer for `viewer_payload`'s data; `static` is the URL of
    the folder holding the three.js files (default: `static_url()`)."""
    base = (static if static is not None else static_url()).rstrip("/")
    imports = _script_json({"imports": {"three": f"{base}/three.module.min.js"}})
    return (_PAGE.replace("@TITLE@", html.escape(title))
            .replace("@IMPORTS@", imports)
            .replace("@ORBIT@", _script_json(f"{base}/OrbitControls.js"))
            .replace("@DATA@", _script_json(payload)))


def viewer_iframe(page: str, height: int = 460, elem_class: str = "l2emg-viewer") -> str:
    """`page` inside an iframe (srcdoc), for an HTML component."""
    return (f'<iframe class="{elem_class}" title="3D motion viewer" srcdoc="{html.escape(page, quote=True)}" '
            f'style="width:100%;height:{int(height)}px;border:0;border-radius:8px;display:block" '
            'allow="fullscreen"></iframe>')


_PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>@TITLE@</title>
<style>
  html, body { margin: 0; height: 100%; background: #f4f5f7; font: 13px system-ui, sans-serif; color: #222; overflow: hidden; }
  #stage { position: absolute; inset: 0 0 40px 0; }
  #stage canvas { display: block; width: 100%; height: 100%; outline: none; }
  #bar { position: absolute; left: 0; right: 0; bottom: 0; height: 40px; display: flex; gap: 8px; align-items: center;
         padding: 0 10px; box-sizing: border-box; background: #fff; border-top: 1px solid #dde0e5; }
  #bar button, #bar select { font: inherit; padding: 3px 8px; border: 1px solid #c8ccd3; border-radius: 5px; background: #fafbfc; cursor: pointer; }
  #scrub { flex: 1; min-width: 60px; }
  #clock { font-variant-numeric: tabular-nums; min-width: 150px; text-align: right; }
  #error { position: absolute; inset: 0 0 40px 0; display: flex; align-items: center; justify-content: center; padding: 20px;
           text-align: center; color: #8a1c1c; background: #fff5f5; }
  #error[hidden] { display: none; }
  #hint { position: absolute; top: 6px; left: 10px; color: #7a808a; font-size: 12px; pointer-events: none; }
</style>
<script>
  window.addEventListener("error", function (event) {
    var box = document.getElementById("error");
    if (!box) return;
    var target = event.target || {};
    var what = event.message || (target.tagName === "SCRIPT" ? "could not load " + (target.src || "three.js") : event.type);
    box.textContent = "The 3D view could not start (" + what + "); the MP4 shows the same motion.";
    box.hidden = false;
  }, true);
  window.addEventListener("unhandledrejection", function (event) {
    var box = document.getElementById("error");
    if (box) { box.textContent = "The 3D view could not start (" + event.reason + ")."; box.hidden = false; }
  });
</script>
<script type="importmap">@IMPORTS@</script>
</head>
<body data-ready="false">
<div id="stage"></div>
<div id="hint">drag: orbit · right-drag: pan · wheel: zoom · space: play/pause · ←/→: frame</div>
<div id="error" hidden></div>
<div id="bar">
  <button id="play" type="button" title="play / pause (space)">pause</button>
  <input id="scrub" type="range" min="0" max="0" step="1" value="0" aria-label="frame">
  <span id="clock"></span>
  <select id="speed" aria-label="speed"><option value="0.25">0.25×</option><option value="0.5">0.5×</option>
    <option value="1" selected>1×</option><option value="2">2×</option></select>
  <label><input id="follow" type="checkbox"> follow</label>
  <button id="reset" type="button" title="reset the camera">reset view</button>
</div>
<script type="application/json" id="motion-data">@DATA@</script>
<script type="module">
import * as THREE from "three";
import { OrbitControls } from @ORBIT@;

const data = JSON.parse(document.getElementById("motion-data").textContent);
const J = data.parents.length;
const total = Math.max(...data.motions.map((m) => m.frames));
const stage = document.getElementById("stage");
const scrub = document.getElementById("scrub");
const clock = document.getElementById("clock");
const playButton = document.getElementById("play");
const state = { frames: total, frame: 0, drawn: 0, playing: true, speed: 1, motions: data.motions.length };

const renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
stage.appendChild(renderer.domElement);
renderer.domElement.tabIndex = 0;

const scene = new THREE.Scene();
scene.background = new THREE.Color(0xf4f5f7);
scene.add(new THREE.HemisphereLight(0xffffff, 0x8a8f99, 2.0));
const sun = new THREE.DirectionalLight(0xffffff, 1.8);
sun.position.set(3, 6, 4);
scene.add(sun);

// Bounds of every joint over every frame: the floor and the camera fit them.
const lo = new THREE.Vector3(Infinity, Infinity, Infinity), hi = new THREE.Vector3(-Infinity, -Infinity, -Infinity);
for (const m of data.motions) {
  const p = m.positions;
  for (let i = 0; i < p.length; i += 3) {
    lo.x = Math.min(lo.x, p[i]); lo.y = Math.min(lo.y, p[i + 1]); lo.z = Math.min(lo.z, p[i + 2]);
    hi.x = Math.max(hi.x, p[i]); hi.y = Math.max(hi.y, p[i + 1]); hi.z = Math.max(hi.z, p[i + 2]);
  }
}
const centre = lo.clone().add(hi).multiplyScalar(0.5);
const size = Math.max(4, Math.ceil(Math.max(hi.x - lo.x, hi.z - lo.z) + 3));
const floor = new THREE.Mesh(new THREE.PlaneGeometry(size, size), new THREE.MeshStandardMaterial({ color: 0xe6e8ec }));
floor.rotation.x = -Math.PI / 2;
floor.position.set(centre.x, -0.002, centre.z);
scene.add(floor);
const grid = new THREE.GridHelper(size, size * 2, 0xb4b9c2, 0xd3d6dc);
grid.position.set(centre.x, 0, centre.z);
scene.add(grid);

function labelSprite(text) {
  const canvas = document.createElement("canvas");
  const ctx = canvas.getContext("2d");
  const font = "600 44px system-ui, sans-serif";
  ctx.font = font;
  canvas.width = Math.ceil(ctx.measureText(text).width) + 32;
  canvas.height = 64;
  ctx.font = font;
  ctx.fillStyle = "rgba(255,255,255,0.85)";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = "#222";
  ctx.textBaseline = "middle";
  ctx.fillText(text, 16, 34);
  const sprite = new THREE.Sprite(new THREE.SpriteMaterial({ map: new THREE.CanvasTexture(canvas), depthTest: false }));
  sprite.scale.set(0.2 * canvas.width / canvas.height, 0.2, 1);
  return sprite;
}

const up = new THREE.Vector3(0, 1, 0);
const boneGeometry = new THREE.CylinderGeometry(1, 1, 1, 14);
const jointGeometry = new THREE.SphereGeometry(1, 16, 12);
const jointMaterial = new THREE.MeshStandardMaterial({ color: 0x3a3d45, roughness: 0.6 });
const materials = new Map();
const material = (colour) => {
  if (!materials.has(colour)) materials.set(colour, new THREE.MeshStandardMaterial({ color: colour, roughness: 0.55 }));
  return materials.get(colour);
};
const figures = data.motions.map((m, index) => {
  const group = new THREE.Group();
  const bones = [], joints = [];
  for (let j = 0; j < J; j++) {
    const joint = new THREE.Mesh(jointGeometry, jointMaterial);
    joint.scale.setScalar(data.boneRadius * 1.3);
    group.add(joint);
    joints.push(joint);
    if (data.parents[j] >= 0) {
      const bone = new THREE.Mesh(boneGeometry, material(data.colours[j]));
      group.add(bone);
      bones[j] = bone;
    }
  }
  const head = new THREE.Mesh(jointGeometry, material(data.colours[data.head]));
  head.scale.setScalar(data.headRadius);
  group.add(head);
  const path = [];
  for (let t = 0; t < m.frames; t++) path.push(new THREE.Vector3(m.positions[t * J * 3], 0.004, m.positions[t * J * 3 + 2]));
  group.add(new THREE.Line(new THREE.BufferGeometry().setFromPoints(path), new THREE.LineBasicMaterial({ color: 0xe8961a })));
  const label = data.motions.length > 1 ? labelSprite(m.label) : null;
  if (label) group.add(label);
  scene.add(group);
  const lift = 0.3 + 0.22 * (index % 2);  // neighbouring labels at two heights: long ones do not overlap
  return { m, bones, joints, head, label, lift, points: Array.from({ length: J }, () => new THREE.Vector3()) };
});

const a = new THREE.Vector3(), dir = new THREE.Vector3();
function pose(figure, t) {
  const { m, bones, joints, head, label, lift, points } = figure;
  const base = Math.min(t, m.frames - 1) * J * 3;
  for (let j = 0; j < J; j++) {
    points[j].set(m.positions[base + 3 * j], m.positions[base + 3 * j + 1], m.positions[base + 3 * j + 2]);
    joints[j].position.copy(points[j]);
  }
  for (let j = 0; j < J; j++) {
    const bone = bones[j];
    if (!bone) continue;
    a.copy(points[data.parents[j]]);
    dir.subVectors(points[j], a);
    const length = Math.max(dir.length(), 1e-6);
    bone.position.copy(a).addScaledVector(dir, 0.5);
    bone.scale.set(data.boneRadius, length, data.boneRadius);
    bone.quaternion.setFromUnitVectors(up, dir.divideScalar(length));
  }
  head.position.copy(points[data.head]);
  if (label) label.position.set(points[0].x, points[data.head].y + lift, points[0].z);
}

const camera = new THREE.PerspectiveCamera(40, 1, 0.05, 500);
const controls = new OrbitControls(camera, renderer.domElement);
controls.enableDamping = true;
function resetView() {
  const radius = Math.max(lo.distanceTo(hi) / 2, 1.0);
  const distance = Math.max(3, 1.1 * radius / Math.sin(THREE.MathUtils.degToRad(20)));
  const azimuth = THREE.MathUtils.degToRad(35), elevation = THREE.MathUtils.degToRad(18);
  controls.target.set(centre.x, Math.max(centre.y, 0.9), centre.z);
  camera.position.set(centre.x + distance * Math.sin(azimuth) * Math.cos(elevation), controls.target.y + distance * Math.sin(elevation),
                      centre.z + distance * Math.cos(azimuth) * Math.cos(elevation));
  controls.update();
}
resetView();

function resize() {
  const w = Math.max(stage.clientWidth, 1), h = Math.max(stage.clientHeight, 1);
  renderer.setSize(w, h, false);
  camera.aspect = w / h;
  camera.updateProjectionMatrix();
}
new ResizeObserver(resize).observe(stage);
resize();

scrub.max = String(total - 1);
const follow = document.getElementById("follow");
let lastRoot = null;
function showFrame(t) {
  state.frame = ((t % total) + total) % total;
  for (const figure of figures) pose(figure, state.frame);
  scrub.value = String(state.frame);
  clock.textContent = `frame ${state.frame + 1} / ${total} · ${(state.frame / data.fps).toFixed(2)} s`;
  const root = figures[0].points[0];
  if (follow.checked && lastRoot) {
    const dx = root.x - lastRoot.x, dz = root.z - lastRoot.z;
    controls.target.x += dx; controls.target.z += dz;
    camera.position.x += dx; camera.position.z += dz;
  }
  lastRoot = root.clone();
}
function setPlaying(on) {
  state.playing = on;
  playButton.textContent = on ? "pause" : "play";
}
playButton.addEventListener("click", () => setPlaying(!state.playing));
scrub.addEventListener("input", () => { setPlaying(false); showFrame(Number(scrub.value)); });
document.getElementById("speed").addEventListener("change", (e) => { state.speed = Number(e.target.value); });
document.getElementById("reset").addEventListener("click", () => { resetView(); lastRoot = null; showFrame(state.frame); });
window.addEventListener("keydown", (e) => {
  if (e.code === "Space") { setPlaying(!state.playing); e.preventDefault(); }
  else if (e.code === "ArrowRight") { setPlaying(false); showFrame(state.frame + 1); }
  else if (e.code === "ArrowLeft") { setPlaying(false); showFrame(state.frame - 1); }
});

showFrame(0);
let last = performance.now(), carry = 0;
function tick(now) {
  const dt = Math.min((now - last) / 1000, 0.25);
  last = now;
  if (state.playing && total > 1) {
    carry += dt * data.fps * state.speed;
    const steps = Math.floor(carry);
    if (steps > 0) { carry -= steps; showFrame(state.frame + steps); }
  }
  controls.update();
  renderer.render(scene, camera);
  state.drawn += 1;
  if (state.drawn === 1) document.body.dataset.ready = "true";
  requestAnimationFrame(tick);
}
window.l2emgViewer = {
  get frames() { return state.frames; }, get frame() { return state.frame; }, get drawn() { return state.drawn; },
  get motions() { return state.motions; }, setFrame: (t) => { setPlaying(false); showFrame(t); },
  play: () => setPlaying(true), pause: () => setPlaying(false),
};
requestAnimationFrame(tick);
</script>
</body></html>
"""
