// The explorer page: plain JS against the server's JSON API (no build step). Errors are shown in #status and kept in
// window.__errors, which the browser test reads.
"use strict";

const $ = (id) => document.getElementById(id);
window.__errors = [];
function report(msg) {
  window.__errors.push(String(msg));
  $("status").textContent = String(msg);
}
window.addEventListener("error", (e) => report(e.message));
window.addEventListener("unhandledrejection", (e) => report(e.reason && e.reason.message ? e.reason.message : e.reason));

const PAD = 2; // the border of the server's PNG tiles
let info = null; // /api/model; info.shape is the model's images' { channels, height, width }
let z = [];
let label = 0;
const conditional = () => info.classes.length > 0;

// The backend behind the page: the server's JSON API (`vae-train serve`), or, in a static site that
// `vae-train export-web` wrote, the same calls answered by the model in WebAssembly. `site.json` says which. GET
// routes are files either way (the static site holds them under api/); only the POST calls differ.
let post = null;
async function connect() {
  const answer = await fetch("site.json");
  if (!answer.ok) throw new Error(`site.json: ${answer.status} ${answer.statusText}`);
  const site = await answer.json();
  if (site.backend !== "wasm") {
    post = (path, body) => fetch(path, {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
    });
    return;
  }
  const wasm = await import("./vae_web.js");
  await wasm.default({ module_or_path: "vae_web_bg.wasm" });
  const res = await fetch(site.model);
  if (!res.ok) throw new Error(`${site.model}: ${res.status} ${res.statusText}`);
  const explorer = new wasm.WebExplorer(new Uint8Array(await res.arrayBuffer()));
  window.__explorer = explorer;
  post = async (path, body) => {
    try {
      const type = path === "api/encode" ? "application/json" : "image/png";
      return new Response(explorer.call(`/${path}`, JSON.stringify(body)), { headers: { "content-type": type } });
    } catch (e) {
      return new Response(JSON.stringify({ error: e.message ?? String(e) }), { status: 400, statusText: "Bad Request" });
    }
  };
}

// A route of the backend, with its one-line JSON error turned into an exception: GET without a body, POST with one.
async function api(path, body) {
  const res = body === undefined ? await fetch(path) : await post(path, body);
  if (!res.ok) {
    let msg = res.statusText;
    try { msg = (await res.json()).error; } catch (_) { /* not JSON */ }
    throw new Error(`${path}: ${msg}`);
  }
  return res;
}

// A one-tile PNG from the server onto a canvas, without the tile's border, scaled up without smoothing.
async function drawTile(canvas, blob) {
  const bitmap = await createImageBitmap(blob);
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(bitmap, PAD, PAD, bitmap.width - 2 * PAD, bitmap.height - 2 * PAD, 0, 0, canvas.width, canvas.height);
}

// Sizes a canvas to the model's images scaled by a whole factor to at least `least` pixels on the longer side, as the
// server's tiles are.
function sizeCanvas(canvas, least) {
  const { height, width } = info.shape;
  const scale = Math.max(1, Math.ceil(least / Math.max(height, width)));
  canvas.width = width * scale;
  canvas.height = height * scale;
}

// An image in the model's layout (values in [0, 1], grey or RGB channel planes one after another) onto a canvas.
function drawPixels(canvas, pixels) {
  const { channels, height, width } = info.shape;
  const small = document.createElement("canvas");
  small.width = width;
  small.height = height;
  const img = small.getContext("2d").createImageData(width, height);
  const level = (v) => Math.round(Math.max(0, Math.min(1, v)) * 255);
  for (let i = 0; i < width * height; i++) {
    const rgb = [0, 1, 2].map((c) => level(pixels[Math.min(c, channels - 1) * width * height + i]));
    img.data.set([...rgb, 255], 4 * i);
  }
  small.getContext("2d").putImageData(img, 0, 0);
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(small, 0, 0, canvas.width, canvas.height);
}

// Decoding, coalesced: one request in flight; moves made meanwhile are sent once it returns, the latest only.
let decoding = false;
let pending = false;
async function decode() {
  if (decoding) { pending = true; return; }
  decoding = true;
  try {
    do {
      pending = false;
      const body = { z: z.slice() };
      if (conditional()) body.label = label;
      await drawTile($("decoded"), await (await api("api/decode", body)).blob());
      const canvas = $("decoded");
      canvas.dataset.version = String(Number(canvas.dataset.version) + 1);
    } while (pending);
  } catch (e) {
    report(e.message);
  } finally {
    decoding = false;
  }
}

// --- latent sliders ---------------------------------------------------------------------------------------------

function buildSliders() {
  const box = $("sliders");
  for (const d of info.order) {
    const inactive = info.inactive[d];
    const kl = info.kl_per_dim.length ? ` (KL ${info.kl_per_dim[d].toFixed(2)})` : "";
    const name = document.createElement("label");
    name.textContent = `z${d}${kl}`;
    const input = document.createElement("input");
    Object.assign(input, { type: "range", min: -3, max: 3, step: 0.01, value: 0 });
    input.className = "slider";
    input.dataset.dim = d;
    const out = document.createElement("output");
    out.textContent = "0.00";
    for (const el of [name, input, out]) {
      if (inactive) el.classList.add("inactive");
      box.append(el);
    }
    input.addEventListener("input", () => {
      z[d] = Number(input.value);
      out.textContent = z[d].toFixed(2);
      decode();
    });
  }
}

function setZ(values) {
  z = values.map((v) => Math.max(-3, Math.min(3, v)));
  for (const input of document.querySelectorAll(".slider")) {
    const d = Number(input.dataset.dim);
    input.value = z[d];
    input.nextElementSibling.textContent = z[d].toFixed(2);
  }
  decode();
}

function normal() {
  const u = 1 - Math.random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * Math.random());
}

// --- the latent plane of a 2-D model ------------------------------------------------------------------------------

// Acklam's rational approximation of the standard normal quantile (relative error < 1.2e-9).
function normalQuantile(p) {
  const a = [-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const lo = 0.02425;
  if (p < lo) {
    const q = Math.sqrt(-2 * Math.log(p));
    return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
  if (p > 1 - lo) return -normalQuantile(1 - p);
  const q = p - 0.5;
  const r = q * q;
  return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

// The standard normal CDF, from erf (Abramowitz & Stegun 7.1.26, error < 1.5e-7).
function normalCdf(x) {
  const t = 1 / (1 + 0.3275911 * Math.abs(x) / Math.SQRT2);
  const poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
  const erf = 1 - poly * Math.exp(-x * x / 2);
  return x >= 0 ? (1 + erf) / 2 : (1 - erf) / 2;
}

const COLOURS = ["#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#fabed4"];

async function buildPlane() {
  $("plane-section").hidden = false;
  const img = $("plane");
  const layout = await (await api("api/plane")).json();
  img.addEventListener("load", () => drawPoints(img, layout.points));
  img.src = "api/plane.png";
  $("show-points").addEventListener("change", () => drawPoints(img, layout.points));
  window.addEventListener("resize", () => drawPoints(img, layout.points));
  const shown = [...new Set(layout.points.map((p) => p[2]))].sort((a, b) => a - b);
  for (const l of shown) {
    const key = document.createElement("span");
    key.style.setProperty("--c", COLOURS[l % COLOURS.length]);
    key.textContent = layout.names[l] ?? String(l);
    $("plane-legend").append(key);
  }
  const pick = (e) => {
    const box = img.getBoundingClientRect();
    const u = (e.clientX - box.left) / box.width;
    const v = (e.clientY - box.top) / box.height;
    const q = (t) => normalQuantile(Math.min(0.999, Math.max(0.001, t)));
    setZ([q(u), q(v)]);
  };
  $("plane-wrap").addEventListener("pointerdown", (e) => { pick(e); e.target.setPointerCapture?.(e.pointerId); });
  $("plane-wrap").addEventListener("pointermove", (e) => { if (e.buttons) pick(e); });
}

function drawPoints(img, points) {
  const canvas = $("plane-points");
  canvas.width = img.width;
  canvas.height = img.height;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!$("show-points").checked) return;
  for (const [z1, z2, l] of points) {
    ctx.fillStyle = COLOURS[l % COLOURS.length];
    ctx.fillRect(normalCdf(z1) * canvas.width - 1, normalCdf(z2) * canvas.height - 1, 3, 3);
  }
}

// --- the drawing pad -----------------------------------------------------------------------------------------------

let drawing = null; // the last encoded drawing: { input, label }

function setupPad() {
  const pad = $("pad");
  const ctx = pad.getContext("2d");
  const clear = () => { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, pad.width, pad.height); };
  clear();
  let last = null;
  const at = (e) => {
    const box = pad.getBoundingClientRect();
    return [(e.clientX - box.left) * pad.width / box.width, (e.clientY - box.top) * pad.height / box.height];
  };
  pad.addEventListener("pointerdown", (e) => { last = at(e); pad.setPointerCapture?.(e.pointerId); });
  pad.addEventListener("pointermove", (e) => {
    if (!last) return;
    const p = at(e);
    Object.assign(ctx, { strokeStyle: "#fff", lineWidth: 20, lineCap: "round", lineJoin: "round" });
    ctx.beginPath();
    ctx.moveTo(...last);
    ctx.lineTo(...p);
    ctx.stroke();
    last = p;
  });
  const end = () => { if (last) { last = null; encodeDrawing(); } };
  pad.addEventListener("pointerup", end);
  pad.addEventListener("pointercancel", end);
  $("clear").addEventListener("click", clear);
}

async function encodeDrawing() {
  const pad = $("pad");
  const data = pad.getContext("2d").getImageData(0, 0, pad.width, pad.height).data;
  const pixels = [];
  for (let i = 0; i < data.length; i += 4) pixels.push(data[i] / 255);
  const body = { width: pad.width, height: pad.height, pixels };
  if (conditional()) body.label = label;
  try {
    const enc = await (await api("api/encode", body)).json();
    drawPixels($("input"), enc.input);
    drawPixels($("recon"), enc.recon);
    $("recon").dataset.version = String(Number($("recon").dataset.version || 0) + 1);
    drawing = { input: enc.input, label };
    setZ(enc.mu);
    const more = { input: enc.input, n: 8 };
    if (conditional()) more.label = label;
    await showImage($("more"), await (await api("api/samples", more)).blob());
    $("more-hint").hidden = true;
  } catch (e) {
    report(e.message);
  }
}

// A PNG answer into an <img>, shown once it has loaded (before, it is hidden: no broken-image text).
function showImage(img, blob) {
  return new Promise((resolve, reject) => {
    img.addEventListener("load", () => { img.hidden = false; resolve(); }, { once: true });
    img.addEventListener("error", () => reject(new Error(`${img.id}: the image did not load`)), { once: true });
    img.src = URL.createObjectURL(blob);
  });
}

// --- morph --------------------------------------------------------------------------------------------------------

const ends = { from: null, to: null };

async function testImage(index) {
  const t = await (await api(`api/test/${index}`)).json();
  return { input: t.pixels, label: t.label };
}

async function morph() {
  try {
    const from = ends.from || await testImage($("from-index").value);
    const to = ends.to || await testImage($("to-index").value);
    const body = { from: from.input, to: to.input, steps: 10, slerp: $("slerp").checked };
    if (conditional()) body.labels = [from.label, to.label];
    await showImage($("path"), await (await api("api/interpolate", body)).blob());
  } catch (e) {
    report(e.message);
  }
}

// The drawing pad, for grey models: the sections that need a drawing are hidden for the others.
function setupDrawing() {
  for (const id of ["input", "recon"]) sizeCanvas($(id), 112);
  if (!info.pad) {
    $("draw").hidden = true;
    $("morph-hint").textContent = "Two test images, picked by index, and the path between their posterior means.";
    $("morph").hidden = info.test_images === 0;
    return;
  }
  if (info.config.input_shape) {
    const { height, width } = info.shape;
    $("draw-title").textContent = "Draw a picture";
    $("draw-hint").textContent = `Draw with the mouse or a finger. It is made into the model's input as its ` +
      `pictures were (resized to ${width}×${height}), encoded, and its posterior mean is put on the sliders.`;
  }
  setupPad();
}

function setupMorph() {
  $("use-a").addEventListener("click", () => { ends.from = drawing; });
  $("use-b").addEventListener("click", () => { ends.to = drawing; });
  $("from-index").addEventListener("input", () => { ends.from = null; });
  $("to-index").addEventListener("input", () => { ends.to = null; });
  $("morph-go").addEventListener("click", morph);
  const last = Math.max(0, info.test_images - 1);
  for (const [id, fallback] of [["from-index", 0], ["to-index", last]]) {
    if (info.test_images === 0) $(id).disabled = true;
    // A test set too small for the default index: its first and last images instead.
    $(id).max = last;
    if (Number($(id).value) > last) $(id).value = fallback;
  }
}

// The training facts of "About this model".
function showFacts() {
  const t = info.training;
  const facts = [
    ["dataset", info.dataset || "unknown"],
    ["epochs", t.epochs ?? "unknown (no metrics.jsonl beside the model)"],
    ["final test −ELBO", t.final_test_loss == null ? "unknown" : `${t.final_test_loss.toFixed(2)} nats per image`],
    ["written", t.written_unix_s == null ? "unknown" : new Date(t.written_unix_s * 1000).toISOString().slice(0, 16).replace("T", " ") + " UTC"],
  ];
  for (const [name, value] of facts) {
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = String(value);
    $("facts").append(dt, dd);
  }
}

// --- start ----------------------------------------------------------------------------------------------------------

async function start() {
  await connect();
  info = await (await api("api/model")).json();
  const c = info.config;
  const { channels, height, width } = info.shape;
  $("summary").textContent = `${[c.input_dim, ...c.hidden_dims, c.latent_dim].join("-")} ${c.activation}` +
    `${conditional() ? ", conditional" : ""}, ${width}×${height} ${channels === 3 ? "RGB" : "grey"} pictures, ` +
    `trained on ${info.dataset || "an unknown dataset"}`;
  $("config").textContent = JSON.stringify({ dataset: info.dataset, ...c }, null, 2);
  showFacts();
  if (info.kl_per_dim.length === 0) {
    $("slider-hint").textContent = "Each slider is one dimension of z, in index order: without the test set the " +
      "dimensions cannot be ranked by use.";
  }
  if (info.curves) {
    $("curves").src = "api/curves.png";
    $("curves").hidden = false;
  }
  z = new Array(c.latent_dim).fill(0);
  buildSliders();
  if (conditional()) {
    $("label-row").hidden = false;
    info.classes.forEach((name, i) => $("label").append(new Option(name, i)));
    $("label").addEventListener("change", () => { label = Number($("label").value); decode(); });
  }
  $("random").addEventListener("click", () => setZ(z.map(normal)));
  $("reset").addEventListener("click", () => setZ(z.map(() => 0)));
  sizeCanvas($("decoded"), 224);
  setupDrawing();
  setupMorph();
  if (info.plane) await buildPlane();
  await decode();
  if (info.test_images > 0) await morph();
  document.body.dataset.ready = "true";
}

start().catch((e) => report(e.message));
