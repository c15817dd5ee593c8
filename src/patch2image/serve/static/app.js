// patch2image serve: the page. No library, no network beyond this server.
//
// Each photograph goes to POST /api/segment, one at a time. The page then fetches a preview of the
// photograph and of the probability map (16-bit, preview.u16) once, and draws the overlay, the mask or
// the probability map on a canvas itself: moving the threshold slider redraws from the probabilities
// without asking the server. The download links carry ?threshold= so that the server re-thresholds
// its full-size probability map the same way.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  config: null,
  models: new Map(),
  queue: [],
  busy: false,
  total: 0,
  finished: 0,
  failed: 0,
  seconds: 0,
  entries: [], // {res, card, prob (Uint16Array), photo (ImageData), width, height, stale}
  threshold: 0.5,
  view: "overlay",
  tables: null,
};

function showPageError(message) {
  const el = $("page-error");
  el.textContent = message;
  el.hidden = false;
}

function modelLabel(m) {
  const dataset = m.dataset ? m.dataset.toUpperCase() : "unknown dataset";
  return `${m.name} — ${m.task.replace("_", " ")}, trained on ${dataset}` + (m.network ? ` (${m.network} network)` : "");
}

function overlayTables(colour, alpha) {
  return colour.map((c) => {
    const table = new Uint8ClampedArray(256);
    for (let v = 0; v < 256; v++) table[v] = Math.round((1 - alpha) * v + alpha * c);
    return table;
  });
}

async function init() {
  try {
    const response = await fetch("/api/config");
    if (!response.ok) throw new Error(`status ${response.status}`);
    state.config = await response.json();
  } catch (err) {
    showPageError(`error: cannot reach the patch2image server (${err.message}); is it still running?`);
    return;
  }
  const config = state.config;
  const select = $("model");
  select.textContent = "";
  for (const m of config.models) {
    state.models.set(m.name, m);
    const option = document.createElement("option");
    option.value = m.name;
    option.textContent = modelLabel(m);
    select.append(option);
  }
  select.value = config.default_model;
  select.disabled = false;
  setThreshold(state.models.get(select.value)?.threshold ?? 0.5);
  setOpacity(config.overlay.alpha);
  $("limits").textContent =
    `PNG, JPEG, TIFF, BMP, PPM… up to ${config.max_upload_bytes / 1e6} MB and ${config.max_megapixels} megapixels each`;

  select.addEventListener("change", () => setThreshold(state.models.get(select.value).threshold));
  $("threshold").addEventListener("input", (e) => setThreshold(Number(e.target.value)));
  $("opacity").addEventListener("input", (e) => setOpacity(Number(e.target.value)));
  $("view").addEventListener("change", (e) => {
    state.view = e.target.value;
    redrawAll();
  });
  $("file-input").addEventListener("change", (e) => {
    addFiles(e.target.files);
    e.target.value = "";
  });
  const drop = $("drop");
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      $("file-input").click();
    }
  });
  // Dropping anywhere on the page takes the files (and keeps the browser from opening them itself).
  window.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  window.addEventListener("dragleave", (e) => {
    if (!e.relatedTarget) drop.classList.remove("over");
  });
  window.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer?.files?.length) addFiles(e.dataTransfer.files);
  });
  state.observer = new IntersectionObserver((items) => {
    for (const item of items) {
      const entry = item.isIntersecting && state.entries.find((x) => x.card === item.target);
      if (entry && entry.stale) draw(entry);
    }
  });
  document.body.dataset.ready = "1";
}

function setThreshold(value) {
  state.threshold = Math.min(1, Math.max(0, value));
  $("threshold").value = String(state.threshold);
  $("threshold-value").textContent = state.threshold.toFixed(2);
  redrawAll();
  clearTimeout(state.discTimer);
  state.discTimer = setTimeout(() => state.entries.forEach(showDisc), 250); // once the slider rests
}

// How much of the tint covers the photograph in the overlay view; the downloads keep the server's.
function setOpacity(alpha) {
  const config = state.config;
  $("opacity").value = String(alpha);
  $("opacity-value").textContent = alpha.toFixed(2);
  state.tables = overlayTables(config.overlay.colour, alpha);
  // One tint per task, as the downloads have it: green vessels, an amber optic disc.
  state.tablesByTask = Object.fromEntries(
    Object.entries(config.overlay.colours || {}).map(([task, colour]) => [task, overlayTables(colour, alpha)])
  );
  redrawAll();
}

// The optic disc's centre and diameter at the slider's threshold, as segment's optic_disc.csv gives them.
async function showDisc(entry) {
  const url = entry.res.urls.optic_disc;
  if (!url) return;
  const threshold = state.threshold.toFixed(2);
  const el = entry.card.querySelector(".disc");
  let disc;
  try {
    const response = await fetch(`${url}?threshold=${threshold}`);
    if (!response.ok) return; // the server forgot the result: the downloads say so
    disc = await response.json();
  } catch {
    return; // the server is gone: the next upload says so
  }
  if (threshold !== state.threshold.toFixed(2)) return; // the slider moved on meanwhile
  el.textContent = disc.diameter === ""
    ? `Optic disc: none at threshold ${threshold}.`
    : `Optic disc at threshold ${threshold}: centre (x ${disc.centre_x}, y ${disc.centre_y}), ` +
      `diameter ${disc.diameter} pixels of the photograph (of a circle of the same area).`;
  el.hidden = false;
}

let redrawPending = false;
function redrawAll() {
  for (const entry of state.entries) entry.stale = true;
  updateLinks();
  if (redrawPending) return;
  redrawPending = true;
  requestAnimationFrame(() => {
    redrawPending = false;
    for (const entry of state.entries) if (entry.stale && isVisible(entry.card)) draw(entry);
  });
}

function isVisible(el) {
  const r = el.getBoundingClientRect();
  return r.bottom >= 0 && r.top <= window.innerHeight;
}

// ----------------------------------------------------------------------------- queue

function addFiles(files) {
  for (const file of files) {
    state.queue.push({ file, card: makeCard(file.name) });
    state.total++;
  }
  updateProgress();
  pump();
}

async function pump() {
  if (state.busy) return;
  state.busy = true;
  while (state.queue.length) {
    const job = state.queue.shift();
    try {
      await segmentOne(job);
    } catch (err) {
      fail(job.card, `${job.file.name}: ${err.message || err}`);
    }
    state.finished++;
    updateProgress();
  }
  state.busy = false;
}

function makeCard(name) {
  const card = $("card-template").content.firstElementChild.cloneNode(true);
  card.querySelector(".name").textContent = name;
  setStatus(card, "waiting", "waiting");
  $("results").append(card);
  return card;
}

function setStatus(card, text, phase) {
  card.querySelector(".status").textContent = text;
  card.dataset.state = phase;
  card.classList.toggle("working", phase === "uploading" || phase === "segmenting" || phase === "drawing");
}

function fail(card, message) {
  state.failed++;
  setStatus(card, "failed", "failed");
  card.classList.add("failed");
  const el = card.querySelector(".error");
  el.textContent = `error: ${message}`;
  el.hidden = false;
}

function updateProgress() {
  $("progress-bar").hidden = state.total === 0;
  $("progress").max = Math.max(1, state.total);
  $("progress").value = state.finished;
  const segmented = state.finished - state.failed;
  let text = `${segmented} of ${state.total} photograph${state.total === 1 ? "" : "s"} segmented`;
  if (state.failed) text += `, ${state.failed} failed`;
  if (state.entries.length) text += ` · ${state.seconds.toFixed(2)} s segmenting`;
  $("progress-text").textContent = text;
  updateLinks();
}

function post(file, card) {
  return new Promise((resolve) => {
    const form = new FormData();
    form.append("image", file, file.name);
    form.append("model", $("model").value);
    form.append("threshold", state.threshold.toFixed(2));
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/segment");
    xhr.responseType = "json";
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) setStatus(card, `uploading ${Math.round((100 * e.loaded) / e.total)}%`, "uploading");
    };
    xhr.upload.onload = () => setStatus(card, "segmenting…", "segmenting");
    xhr.onload = () => resolve({ status: xhr.status, body: xhr.response });
    xhr.onerror = () => resolve({ status: 0, body: null });
    setStatus(card, "uploading", "uploading");
    xhr.send(form);
  });
}

async function segmentOne({ file, card }) {
  const limit = state.config.max_upload_bytes;
  if (file.size > limit) {
    fail(card, `${file.name}: ${(file.size / 1e6).toFixed(1)} MB is over this server's limit of ${limit / 1e6} MB`);
    return;
  }
  const { status, body } = await post(file, card);
  if (status !== 200) {
    const why = body?.error || (status ? `${file.name}: the server answered ${status}` :
      `${file.name}: no answer from the server (is it still running?)`);
    fail(card, why);
    return;
  }
  setStatus(card, "drawing…", "drawing");
  const entry = await loadPreview(body, card);
  state.entries.push(entry);
  state.seconds += body.seconds;
  card.dataset.id = body.id;
  card.querySelector(".images").hidden = false;
  card.querySelector(".downloads").hidden = false;
  if (body.warning) {
    const warning = card.querySelector(".warning");
    warning.textContent = `warning: ${body.name}: ${body.warning}`;
    warning.hidden = false;
  }
  draw(entry);
  state.observer.observe(card);
  const size = `${body.width}×${body.height}`;
  const task = body.task.replace("_", " ");
  const what = body.model.replace(/[-_]/g, " ").includes(task) ? body.model : `${body.model} (${task})`;
  setStatus(card, `${body.seconds.toFixed(2)} s · ${what} · ${size}`, "done");
  card.classList.add("done");
  showDisc(entry);
}

async function loadPreview(res, card) {
  const img = card.querySelector(".photo");
  img.src = res.urls.preview;
  const [response] = await Promise.all([fetch(res.urls.preview_prob), img.decode()]);
  if (!response.ok) throw new Error(`the probability map could not be fetched (${response.status})`);
  const width = Number(response.headers.get("X-Width"));
  const height = Number(response.headers.get("X-Height"));
  const prob = new Uint16Array(await response.arrayBuffer());
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(img, 0, 0, width, height);
  const photo = context.getImageData(0, 0, width, height);
  return { res, card, prob, photo, width, height, stale: true };
}

// ----------------------------------------------------------------------------- drawing

function draw(entry) {
  entry.stale = false;
  const { prob, photo, width, height } = entry;
  const canvas = entry.card.querySelector(".result");
  if (canvas.width !== width) canvas.width = width;
  if (canvas.height !== height) canvas.height = height;
  const context = canvas.getContext("2d");
  const out = context.createImageData(width, height);
  const dst = out.data;
  const src = photo.data;
  const cut = state.threshold * 65535;
  const [red, green, blue] = state.tablesByTask[entry.res.task] || state.tables;
  const view = state.view;
  for (let i = 0, j = 0; i < prob.length; i++, j += 4) {
    const p = prob[i];
    if (view === "overlay") {
      const r = src[j], g = src[j + 1], b = src[j + 2];
      if (p >= cut) {
        dst[j] = red[r];
        dst[j + 1] = green[g];
        dst[j + 2] = blue[b];
      } else {
        dst[j] = r;
        dst[j + 1] = g;
        dst[j + 2] = b;
      }
    } else {
      const v = view === "mask" ? (p >= cut ? 255 : 0) : p >> 8;
      dst[j] = dst[j + 1] = dst[j + 2] = v;
    }
    dst[j + 3] = 255;
  }
  context.putImageData(out, 0, 0);
  const caption = { overlay: "Overlay", mask: "Mask", prob: "Probability map" }[view];
  entry.card.querySelector(".result-caption").textContent =
    view === "prob" ? caption : `${caption} at threshold ${state.threshold.toFixed(2)}`;
}

function updateLinks() {
  const t = `?threshold=${state.threshold.toFixed(2)}`;
  for (const { res, card } of state.entries) {
    card.querySelector(".dl-prob").href = res.urls.prob;
    card.querySelector(".dl-mask").href = res.urls.mask + t;
    card.querySelector(".dl-overlay").href = res.urls.overlay + t;
    card.querySelector(".dl-zip").href = res.urls.zip + t;
  }
  const all = $("zip-all");
  all.hidden = state.entries.length < 2;
  all.href = `/api/zip?ids=${state.entries.map((e) => e.res.id).join(",")}&threshold=${state.threshold.toFixed(2)}`;
}

init();
