"use strict";
// The page talks to the same public API as any client: /v1/models and /v1/models/{name}/predict.

const $ = (id) => document.getElementById(id);
const state = { model: null, info: null };

function describeError(body, response) {
  if (body && body.error) return `${body.error.message} (${body.error.code}, HTTP ${response.status})`;
  return `HTTP ${response.status} ${response.statusText}`;
}

async function getJson(url, options) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (err) {
    throw new Error(`the server could not be reached (${err.message})`);
  }
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON: described by status */ }
  if (!response.ok) throw new Error(describeError(body, response));
  return body;
}

function showError(message) {
  const item = document.createElement("p");
  item.className = "error";
  item.textContent = message;
  $("errors").replaceChildren(item);
}

function clearError() { $("errors").replaceChildren(); }

function topK() {
  const value = parseInt($("top-k").value, 10);
  const classes = state.info ? state.info.manifest.labels.length : 10;
  return Math.max(1, Math.min(Number.isFinite(value) ? value : 3, classes));
}

function renderBars(container, predictions) {
  container.replaceChildren(...predictions.map((p) => {
    const row = document.createElement("div");
    row.className = "bar";
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = p.label;
    const meter = document.createElement("meter");
    meter.min = 0; meter.max = 1; meter.value = p.score;
    meter.setAttribute("aria-label", `score for ${p.label}`);
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = `${(p.score * 100).toFixed(1)}%`;
    row.append(label, meter, score);
    return row;
  }));
}

function addFact(list, name, value) {
  const dt = document.createElement("dt");
  dt.textContent = name;
  const dd = document.createElement("dd");
  dd.textContent = value;
  list.append(dt, dd);
}

// "test_top5_accuracy" -> "Top-5 accuracy (test)": metric keys as people read them.
function metricName(key) {
  const [split, ...rest] = key.split("_");
  const words = rest.join(" ").replace("top5", "top-5").replace("top2", "top-2").replace(" f1", " F1");
  return `${words.charAt(0).toUpperCase()}${words.slice(1)} (${split === "val" ? "validation" : split})`;
}

const NETWORKS = { softmax: "Softmax regression", mlp: "Multilayer perceptron", lenet: "LeNet-5",
                   cnn_bn: "CNN with BatchNorm", cnn4: "Four-block CNN", resnet18: "ResNet-18", resnet34: "ResNet-34",
                   resnet50: "ResNet-50", mobilenet_v2: "MobileNetV2", mobilenet_v3_small: "MobileNetV3 small" };

function network(m) {
  const name = NETWORKS[m.architecture] || m.architecture;
  const members = ((m.training || {}).members || []).length;
  return members > 1 ? `${name}, ensemble of ${members}` : name;
}

// The views of each image whose probabilities the exported network averages (its training
// config's export section says which); "" where it reads the image once.
function views(m) {
  const exported = (((m.training || {}).config || {}).export) || {};
  const angles = exported.rotation_average || [];
  const read = [];
  if (angles.length) read.push(`turned ${angles.join(", ")} degrees`);
  if (exported.flip_average) read.push("mirrored");
  return read.length ? `the image as given and ${read.join(", and ")}` : "";
}

function percent(value) { return `${(value * 100).toFixed(1)}%`; }

function accuracy(metrics) {
  const key = Object.keys(metrics).find((k) => /^(test|val)_accuracy$/.test(k));
  return key ? `${percent(metrics[key])} on ${key.startsWith("test") ? "its test" : "its validation"} set` : "";
}

function trainedOn(dataset) {
  const splits = Object.entries(dataset.splits || {})
    .map(([split, count]) => `${count.toLocaleString("en")} ${split.replaceAll("_", " ")}`).join(", ");
  return splits ? `${dataset.name}: ${splits}` : dataset.name;
}

function renderInfo(info) {
  const m = info.manifest;
  const weights = ((m.training || {}).config || {}).finetune;
  const start = weights && weights.init_from ? "fine-tuned from pretrained weights" : "trained from scratch";
  $("model-summary").textContent = [network(m), `${m.labels.length} classes`, accuracy(m.metrics)]
    .filter(Boolean).join(" · ");
  const facts = $("model-facts");
  facts.replaceChildren();
  addFact(facts, "Version", `${info.version} (of ${info.versions.join(", ")})`);
  addFact(facts, "Network", `${network(m)}, ${start}`);
  const averaged = views(m);
  if (averaged) addFact(facts, "Averaged over", averaged);
  addFact(facts, "Labels", m.labels.join(", "));
  addFact(facts, "Input", `${m.input.shape.slice(1).join("×")} ${m.input.color_mode === "L" ? "grey" : "colour"}`);
  addFact(facts, "Preprocessing", m.preprocessing.description || "");
  addFact(facts, "Steps", m.preprocessing.steps.map((s) => s.op).join(" → "));
  for (const [name, value] of Object.entries(m.metrics)) {
    addFact(facts, metricName(name), value <= 1 ? percent(value) : String(value));
  }
  addFact(facts, "Trained on", trainedOn(m.dataset));
  addFact(facts, "Runs on", `${info.runtime.device}, ${info.runtime.backend}`);
}

function isDigitModel(info) {
  const m = info.manifest;
  return m.input.color_mode === "L" && m.input.shape[2] === 28 && m.input.shape[3] === 28;
}

function clearResults() {
  $("results").replaceChildren();
  $("results-section").hidden = true;
  $("draw-result").replaceChildren();
}

async function selectModel(name) {
  state.model = name;
  state.info = null;
  clearResults();  // a result belongs to the model that gave it
  $("model-status").textContent = `Loading ${name}…`;
  $("model-summary").textContent = "";
  try {
    state.info = await getJson(`/v1/models/${encodeURIComponent(name)}`);
    renderInfo(state.info);
    $("model-status").textContent = `${name} is ready.`;
    $("draw-section").hidden = !isDigitModel(state.info);
    clearError();
  } catch (err) {
    $("model-status").textContent = "";
    showError(`Model ${name}: ${err.message}`);
  }
}

async function loadModels() {
  try {
    const { models } = await getJson("/v1/models");
    const select = $("model-select");
    select.replaceChildren(...models.map((m) => {
      const option = document.createElement("option");
      option.value = m.name;
      option.textContent = `${m.name} (v${m.default_version}, ${m.status})`;
      option.disabled = m.status !== "ready";
      return option;
    }));
    const preferred = models.find((m) => m.name === "mnist-lenet" && m.status === "ready")
      || models.find((m) => m.status === "ready");
    if (!preferred) { showError("No model is ready yet."); return; }
    select.value = preferred.name;
    await selectModel(preferred.name);
  } catch (err) {
    showError(`Could not list models: ${err.message}`);
  }
}

async function predictBlob(blob, filename) {
  const form = new FormData();
  form.append("file", blob, filename);
  const url = `/v1/models/${encodeURIComponent(state.model)}/predict?top_k=${topK()}&explain=input`;
  return getJson(url, { method: "POST", body: form });
}

function placeholder(text) {
  const box = document.createElement("div");
  box.className = "placeholder";
  box.textContent = text;
  return box;
}

function figure(src, caption, className) {
  const fig = document.createElement("figure");
  const img = document.createElement("img");
  img.src = src;
  img.alt = caption;
  if (className) img.className = className;
  // A file the browser cannot show either (not an image): say so instead of a broken icon.
  img.addEventListener("error", () => img.replaceWith(placeholder("cannot show this file")));
  const cap = document.createElement("figcaption");
  cap.textContent = caption;
  fig.append(img, cap);
  return fig;
}

function preview(file) {
  if (file.type && !file.type.startsWith("image/")) {
    const fig = document.createElement("figure");
    const cap = document.createElement("figcaption");
    cap.textContent = "uploaded";
    fig.append(placeholder(file.type || "not an image"), cap);
    return fig;
  }
  return figure(URL.createObjectURL(file), "uploaded");
}

async function classifyFile(file) {
  const card = document.createElement("li");
  card.className = "card";
  const title = document.createElement("h3");
  title.textContent = file.name;
  const model = document.createElement("p");
  model.className = "model-tag";
  model.textContent = `${state.model}${state.info ? ` v${state.info.version}` : ""}`;
  const images = document.createElement("div");
  images.className = "images";
  images.append(preview(file));
  const result = document.createElement("div");
  result.className = "result";
  result.textContent = "Classifying…";
  card.append(title, model, images, result);
  $("results-section").hidden = false;
  $("results").prepend(card);
  try {
    const body = await predictBlob(file, file.name);
    if (body.input_image) images.append(figure(body.input_image, "what the model sees", "model-input"));
    renderBars(result, body.predictions);
    card.dataset.top = body.predictions[0].label;
  } catch (err) {
    result.replaceChildren();
    const message = document.createElement("p");
    message.className = "error";
    message.setAttribute("role", "alert");
    message.textContent = `Could not classify ${file.name}: ${err.message}`;
    result.append(message);
    card.dataset.error = "true";
  }
}

function classifyFiles(files) {
  if (!state.model) { showError("Choose a model first."); return; }
  clearError();
  for (const file of files) classifyFile(file);
}

function setUpUpload() {
  $("file-input").addEventListener("change", (event) => classifyFiles(event.target.files));
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    classifyFiles(event.dataTransfer.files);
  });
}

function setUpCanvas() {
  const canvas = $("draw-canvas");
  const ctx = canvas.getContext("2d");
  let drawing = false, last = null, pending = false, dirty = false, inked = false;

  function clear() {
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    inked = false;
    $("draw-result").replaceChildren();
  }
  function point(event) {
    const rect = canvas.getBoundingClientRect();
    return { x: (event.clientX - rect.left) * canvas.width / rect.width,
             y: (event.clientY - rect.top) * canvas.height / rect.height };
  }
  async function predictDrawing() {
    if (!inked || !state.model) return;
    if (pending) { dirty = true; return; }
    pending = true;
    dirty = false;
    // aria-busy tells screen readers (and tests) that the shown label may still change.
    $("draw-result").setAttribute("aria-busy", "true");
    try {
      const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
      const body = await predictBlob(blob, "drawing.png");
      const result = $("draw-result");
      renderBars(result, body.predictions);
      result.dataset.top = body.predictions[0].label;
      if (body.input_image) result.prepend(figure(body.input_image, "what the model sees", "model-input"));
    } catch (err) {
      $("draw-result").textContent = err.message;
    } finally {
      pending = false;
      if (dirty) predictDrawing();
      if (!pending) $("draw-result").removeAttribute("aria-busy");
    }
  }
  canvas.addEventListener("pointerdown", (event) => {
    drawing = true;
    last = point(event);
    canvas.setPointerCapture(event.pointerId);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    const p = point(event);
    ctx.strokeStyle = "#000";
    ctx.lineWidth = 18;
    ctx.lineCap = "round";
    ctx.beginPath();
    ctx.moveTo(last.x, last.y);
    ctx.lineTo(p.x, p.y);
    ctx.stroke();
    last = p;
    inked = true;
    predictDrawing();
  });
  const stop = () => { if (drawing) { drawing = false; predictDrawing(); } };
  canvas.addEventListener("pointerup", stop);
  canvas.addEventListener("pointercancel", stop);
  $("clear-canvas").addEventListener("click", clear);
  clear();
}

$("model-select").addEventListener("change", (event) => selectModel(event.target.value));
setUpUpload();
setUpCanvas();
loadModels();
