// The web page: search by an image, click a result to search from it, walk back along the trail.
// Words (names, folders, tags, camera) filter an image search; with no image they list matches, newest first.
// Plain JavaScript talking to the JSON API under ./api (relative, so the page works behind a prefix).
"use strict";

const TOKEN_KEY = "image-search-token";
const $ = (id) => document.getElementById(id);

const state = {
  trail: [], // steps: {kind: "upload", file, preview, label} | {kind: "image", id, label, thumb}
  pos: -1, // the step shown; steps after it are kept for the browser's Forward button
  k: 50, // as the desktop app (desktop/preferences.py DEFAULT_RESULTS)
  minScore: 0,
  dupThreshold: 0.95,
  variants: false, // also the query's mirror and rotations (API `variants`)
  dupVariants: false,
  text: "", // the words box: filters an image search, or is the search itself when there is no image
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  request: 0, // responses of superseded requests are dropped
  blobs: [], // object URLs of thumbnails fetched with the token, revoked on the next render
};

class ApiError extends Error {
  constructor(title, detail, status) {
    super(detail ? `${title}: ${detail}` : title);
    this.title = title;
    this.detail = detail;
    this.status = status;
  }
}

// -- talking to the API ------------------------------------------------------------------------
async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (state.token) headers.set("Authorization", `Bearer ${state.token}`);
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (err) {
    throw new ApiError("Cannot reach the server", "is it still running?", 0);
  }
  if (response.status === 401) {
    await askToken();
    return api(path, options);
  }
  const isJson = (response.headers.get("Content-Type") || "").includes("json");
  const body = isJson ? await response.json() : null;
  if (!response.ok) {
    throw new ApiError(body?.error || response.statusText, body?.detail || "", response.status);
  }
  return body;
}

function askToken() {
  const dialog = $("token-dialog");
  return new Promise((resolve) => {
    $("token-form").addEventListener("submit", () => {
      state.token = $("token-input").value.trim();
      sessionStorage.setItem(TOKEN_KEY, state.token);
      resolve();
    }, { once: true });
    if (!dialog.open) dialog.showModal();
  });
}

// Thumbnails are plain <img src> (browser-cached) unless a token is needed: <img> cannot send
// an Authorization header, so then they are fetched and shown from blob: URLs.
async function showImage(img, url) {
  if (!state.token) {
    img.src = url;
    return;
  }
  try {
    const response = await fetch(url, { headers: { Authorization: `Bearer ${state.token}` } });
    if (!response.ok) return;
    const blobUrl = URL.createObjectURL(await response.blob());
    state.blobs.push(blobUrl);
    img.src = blobUrl;
  } catch {
    /* a missing thumbnail leaves the placeholder */
  }
}

async function refreshStatus() {
  try {
    const health = await api("api/health");
    if (health.count === undefined) {
      // Health needs no token and then tells only whether the server is up: this server wants one.
      await askToken();
      return refreshStatus();
    }
    const images = `${health.count.toLocaleString()} image${health.count === 1 ? "" : "s"}`;
    $("status").textContent = `${images} · ${health.model_label} · ${health.backend}`;
    $("status").className = "status ok";
    if (health.count === 0 && state.pos < 0) {
      $("empty-title").textContent = "The index is empty";
      $("empty-text").textContent =
        "Add folders with \u201cimage-search index FOLDER\u201d or the desktop app, then search here.";
    }
  } catch (err) {
    $("status").textContent = err.title || "Offline";
    $("status").className = "status bad";
  }
}

// -- searching ---------------------------------------------------------------------------------
async function run() {
  const step = state.trail[state.pos];
  renderTrail();
  if (!step && !state.text) {
    renderResults(null);
    return;
  }
  const request = ++state.request;
  setBusy(true);
  hideMessage();
  try {
    const body = !step ? await searchWords() : step.kind === "upload" ? await searchUpload(step) : await searchSimilar(step);
    if (request === state.request) renderResults(body, step);
  } catch (err) {
    if (request === state.request) {
      showMessage(err.title || "Search failed", err.detail || err.message);
      renderResults({ results: [] }, step);
    }
  } finally {
    if (request === state.request) setBusy(false);
  }
}

function searchUpload(step) {
  const form = new FormData();
  form.append("image", step.file, step.file.name || "image");
  form.append("k", String(state.k));
  if (state.minScore > 0) form.append("min_score", String(state.minScore));
  if (state.text) form.append("text", state.text);
  if (state.variants) form.append("variants", "true");
  return api("api/search", { method: "POST", body: form });
}

function searchWords() {
  return api("api/search", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ text: state.text, k: state.k }),
  });
}

function searchSimilar(step) {
  const params = new URLSearchParams({ k: String(state.k) });
  if (state.minScore > 0) params.set("min_score", String(state.minScore));
  if (state.text) params.set("text", state.text);
  if (state.variants) params.set("variants", "true");
  return api(`api/images/${encodeURIComponent(step.id)}/similar?${params}`);
}

// -- duplicates: groups with the copy to keep and why; the page only shows them (acting on them is the
// CLI's and the desktop app's: the API deletes and moves nothing) ---------------------------------
async function findDuplicates() {
  const request = ++state.request;
  setBusy(true);
  hideMessage();
  try {
    const variants = state.dupVariants ? "&variants=true" : "";
    const body = await api(`api/duplicates?threshold=${state.dupThreshold}${variants}`);
    if (request === state.request) renderGroups(body);
  } catch (err) {
    if (request === state.request) showMessage(err.title || "Finding duplicates failed", err.detail || err.message);
  } finally {
    if (request === state.request) setBusy(false);
  }
}

function renderGroups(body) {
  for (const url of state.blobs) URL.revokeObjectURL(url);
  state.blobs = [];
  const grid = $("results");
  grid.replaceChildren();
  $("empty").hidden = true;
  const images = body.groups.reduce((n, group) => n + group.images.length, 0);
  const groups = `${body.groups.length} group${body.groups.length === 1 ? "" : "s"}`;
  $("summary").textContent = body.groups.length
    ? `${groups} of duplicates, ${images} images (similarity ≥ ${body.threshold}) · click one to search from it`
    : `No duplicates at similarity ≥ ${body.threshold}.`;
  const step = { kind: "duplicates" };
  for (const group of body.groups) {
    const head = el("li", "summary group-head", `${group.kind} · keep ${group.images[0].name} (${group.reason})`);
    head.style.gridColumn = "1 / -1"; // the CSSOM: the Content-Security-Policy allows no inline style attributes
    grid.append(head);
    const names = new Map(group.images.map((image) => [image.id, image.name]));
    for (const image of group.images) {
      const item = card(image, step);
      item.dataset.kind = image.kind;
      // An exact copy of another member names it; a mirrored or rotated copy names its transform.
      const notes = [image.copy_of && `copy of ${names.get(image.copy_of)}`, image.variant,
        image.reference && "reference"].filter(Boolean);
      const label = image.kind === "keeper" ? "Keep" : [image.kind, ...notes].join(" · ");
      item.querySelector(".thumb").append(el("span", "badge", label));
      grid.append(item);
    }
  }
}

// -- navigation: every step is a history entry, so Back/Forward walk the trail ------------------
function go(pos, push) {
  state.pos = pos;
  if (push) history.pushState({ pos }, "");
  run();
}

function startWith(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    showMessage("Not an image", `${file.name} is ${file.type}`);
    return;
  }
  for (const step of state.trail) if (step.preview) URL.revokeObjectURL(step.preview);
  const preview = URL.createObjectURL(file);
  state.trail = [{ kind: "upload", file, preview, label: file.name || "Pasted image" }];
  go(0, true);
}

function refine(result) {
  if (state.trail[state.pos]?.id === result.id) return;
  state.trail = state.trail.slice(0, state.pos + 1);
  state.trail.push({ kind: "image", id: result.id, label: result.name, thumb: result.thumbnail_url });
  go(state.trail.length - 1, true);
}

function back() {
  if (state.pos > 0) history.back();
}

window.addEventListener("popstate", (event) => {
  const pos = event.state?.pos ?? -1;
  state.pos = Math.min(pos, state.trail.length - 1);
  run();
});

// -- rendering ---------------------------------------------------------------------------------
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function renderTrail() {
  const trail = $("trail");
  trail.replaceChildren();
  state.trail.forEach((step, i) => {
    const item = el("li", "crumb" + (i === state.pos ? " current" : "") + (i > state.pos ? " ahead" : ""));
    const button = el("button", "crumb-button");
    button.type = "button";
    button.title = i === 0 ? "Your image" : `Similar to ${step.label}`;
    const img = el("img");
    img.alt = "";
    if (step.preview) img.src = step.preview;
    else showImage(img, step.thumb);
    button.append(img, el("span", "crumb-label", step.label));
    button.addEventListener("click", () => {
      if (i !== state.pos) history.go(i - state.pos);
    });
    item.append(button);
    trail.append(item);
  });
  $("back").disabled = state.pos <= 0;
  $("back").hidden = state.pos < 0;
  const first = state.trail[0];
  const preview = $("query-preview");
  preview.hidden = state.pos < 0 || !first?.preview;
  if (!preview.hidden) preview.src = first.preview;
  $("dropzone").classList.toggle("has-image", !preview.hidden);
}

function renderResults(body, step) {
  for (const url of state.blobs) URL.revokeObjectURL(url);
  state.blobs = [];
  const grid = $("results");
  grid.replaceChildren();
  const results = body?.results || [];
  $("empty").hidden = body !== null;
  $("summary").textContent = body ? summaryText(results, body.took_ms, step) : "";
  if (body && results.length === 0 && $("message").hidden) {
    $("summary").textContent = state.text
      ? `No results match “${state.text}”. Clear the words to see them all.`
      : state.minScore > 0
        ? "No images are that similar. Lower the minimum similarity."
        : "No results: the index is empty.";
  }
  for (const result of results) grid.append(card(result, step));
}

function summaryText(results, tookMs, step) {
  const count = `${results.length} result${results.length === 1 ? "" : "s"}`;
  if (!step) return `${count} matching “${state.text}”, newest first · ${Math.round(tookMs)} ms`;
  const source = step.kind === "upload" ? "your image" : step.label;
  const named = state.text ? ` · names with “${state.text}”` : "";
  return `${count} similar to ${source}${named} · ${Math.round(tookMs)} ms`;
}

function card(result, step) {
  const isQuery = step?.kind === "image" && result.id === step.id;
  const item = el("li", "card" + (isQuery ? " is-query" : ""));
  item.dataset.id = result.id;
  const button = el("button", "card-hit");
  button.type = "button";
  button.title = isQuery ? `${result.name} (the current query)` : `Find images similar to ${result.name}`;
  button.disabled = isQuery;
  const thumb = el("div", "thumb");
  const img = el("img");
  img.alt = result.name;
  img.loading = "lazy";
  img.decoding = "async";
  showImage(img, result.thumbnail_url);
  thumb.append(img);
  if (isQuery) thumb.append(el("span", "badge", "Query"));
  else if (result.variant && !result.kind) thumb.append(el("span", "badge", result.variant)); // the transform that matched
  const meta = el("div", "meta");
  // A words-only result has no score: its date taken stands there instead.
  const words = result.score === null;
  const scoreText = words ? (result.taken || "").slice(0, 10) : result.score.toFixed(3);
  meta.append(nameLabel(result.name), el("span", "score", scoreText));
  if (result.tags?.length) button.title += ` · tags: ${result.tags.join(", ")}`;
  const bar = el("div", "bar");
  const fill = el("span");
  // Set through the CSSOM: the page's Content-Security-Policy allows no inline style attributes.
  fill.style.width = words ? "0%" : `${Math.max(0, Math.min(1, result.score)) * 100}%`;
  bar.append(fill);
  const dims = el("div", "dims", `${result.width} × ${result.height}`);
  button.append(thumb, meta, bar, dims);
  button.addEventListener("click", () => refine(result));
  item.append(button);
  if (!state.token) {
    const open = el("a", "open-original");
    open.href = result.image_url;
    open.target = "_blank";
    open.rel = "noopener";
    open.title = "Open the original";
    open.setAttribute("aria-label", `Open ${result.name}`);
    open.innerHTML = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M14 4h6v6M20 4l-9 9M18 14v5a1 1 0 0 1-1 1H5a1 1 0 0 1-1-1V7a1 1 0 0 1 1-1h5"></path></svg>';
    item.append(open);
  }
  return item;
}

// A name that does not fit loses its middle, never its end: "orig_012…copy.jpg" (copies differ at the end).
const NAME_END = 10; // characters always shown: a suffix like "_copy2" and the extension
function nameLabel(name) {
  const label = el("span", "name");
  label.title = name;
  const cut = Math.max(0, name.length - NAME_END);
  // No empty start: an empty flex item would move the name's baseline off the score's.
  if (cut > 0) label.append(el("span", "name-start", name.slice(0, cut)));
  label.append(el("span", "name-end", name.slice(cut)));
  return label;
}

function setBusy(busy) {
  $("progress").hidden = !busy;
  $("results").classList.toggle("busy", busy);
}

function showMessage(title, detail) {
  $("message-title").textContent = title;
  $("message-detail").textContent = detail || "";
  $("message").hidden = false;
}

function hideMessage() {
  $("message").hidden = true;
}

// -- input: file chooser, drag and drop, paste, controls, keys ------------------------------------
function wireInputs() {
  $("file-input").addEventListener("change", (event) => {
    startWith(event.target.files[0]);
    event.target.value = ""; // choosing the same file again still searches
  });

  let depth = 0; // dragenter/dragleave fire for every child element
  window.addEventListener("dragenter", (event) => {
    if (!event.dataTransfer?.types.includes("Files")) return;
    depth += 1;
    $("drop-overlay").hidden = false;
  });
  window.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) $("drop-overlay").hidden = true;
  });
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => {
    event.preventDefault();
    depth = 0;
    $("drop-overlay").hidden = true;
    startWith(event.dataTransfer?.files[0]);
  });
  document.addEventListener("paste", (event) => {
    const file = [...(event.clipboardData?.files || [])].find((f) => f.type.startsWith("image/"));
    if (file) startWith(file);
  });

  $("k").addEventListener("change", (event) => {
    state.k = Number(event.target.value);
    run();
  });
  $("min-score").addEventListener("input", (event) => {
    $("min-score-value").textContent = Number(event.target.value).toFixed(2);
  });
  $("min-score").addEventListener("change", (event) => {
    state.minScore = Number(event.target.value);
    run();
  });
  $("dup-threshold").addEventListener("input", (event) => {
    $("dup-threshold-value").textContent = Number(event.target.value).toFixed(2);
  });
  $("dup-threshold").addEventListener("change", (event) => {
    state.dupThreshold = Number(event.target.value);
  });
  $("find-duplicates").addEventListener("click", findDuplicates);
  $("variants").addEventListener("change", (event) => {
    state.variants = event.target.checked;
    run();
  });
  $("dup-variants").addEventListener("change", (event) => {
    state.dupVariants = event.target.checked;
  });
  let typing = 0; // the words search once the user pauses, as in the desktop app
  $("words").addEventListener("input", (event) => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      state.text = event.target.value.trim();
      run();
    }, 250);
  });
  $("back").addEventListener("click", back);
  $("message-close").addEventListener("click", hideMessage);
  document.addEventListener("keydown", (event) => {
    if (event.altKey && event.key === "ArrowLeft") {
      event.preventDefault();
      back();
    }
  });
}

history.replaceState({ pos: -1 }, "");
state.k = Number($("k").value);
wireInputs();
run(); // nothing to search yet: draws the empty state
refreshStatus();
window.addEventListener("focus", refreshStatus);
