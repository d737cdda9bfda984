// The gateway's web console: plain JavaScript on the gateway's public HTTP API.
//
// The API key lives in sessionStorage (for this tab only) and goes in the Authorization
// header of every call. Run events are read with fetch() and a small Server-Sent Events
// parser instead of EventSource, which cannot send headers: the key never appears in a URL.
// Images are fetched the same way and shown from blob: URLs.
"use strict";

const API = location.pathname.replace(/\/ui(\/.*)?$/, "");
const KEY_STORAGE = "invokeai-gateway.api-key";
const TERMINAL = new Set(["run.succeeded", "run.failed", "run.canceled"]);
const STREAM_RETRIES = 5;

const $ = (selector) => document.querySelector(selector);
const state = { workflow: null, run: null, stream: null, cursors: [], models: null };

// ---------------------------------------------------------------- HTTP

class ApiError extends Error {
  constructor(status, body) {
    super(problemText(status, body));
    this.status = status;
    this.body = body;
  }
}

function problemText(status, body) {
  if (!body || typeof body !== "object") return `HTTP ${status}`;
  const lines = [`${body.title || "Error"} (HTTP ${status}): ${body.detail ?? ""}`];
  for (const e of body.errors || []) {
    const where = e.index != null ? `input ${e.index}${e.label ? ` (${e.label})` : ""}: ` : "";
    lines.push(`  - ${where}${e.reason || e.msg || JSON.stringify(e)}`);
  }
  return lines.join("\n");
}

function authHeaders(extra = {}) {
  const key = sessionStorage.getItem(KEY_STORAGE);
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

async function api(path, options = {}) {
  const response = await fetch(API + path, { ...options, headers: authHeaders(options.headers) });
  if (response.status === 401) {
    showKeyState("the gateway needs an API key");
  }
  if (!response.ok) {
    let body = null;
    try { body = await response.json(); } catch { /* not JSON */ }
    throw new ApiError(response.status, body);
  }
  return response;
}

const getJson = async (path) => (await api(path)).json();
const postJson = async (path, body) =>
  (await api(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  })).json();

// ---------------------------------------------------------------- Server-Sent Events

// Yields {id, event, data} for each message of the stream at `path` until it ends.
async function* sseMessages(path, lastId, signal) {
  const headers = { Accept: "text/event-stream" };
  if (lastId != null) headers["Last-Event-ID"] = String(lastId);
  const response = await api(path, { headers, signal });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    // A CR at the very end may be the first half of a CRLF: keep it for the next chunk.
    const held = buffer.endsWith("\r") ? "\r" : "";
    let text = (held ? buffer.slice(0, -1) : buffer).replace(/\r\n?/g, "\n");
    let end;
    while ((end = text.indexOf("\n\n")) >= 0) {
      const message = parseBlock(text.slice(0, end));
      text = text.slice(end + 2);
      if (message) yield message;
    }
    buffer = text + held;
  }
}

function parseBlock(block) {
  const message = { id: null, event: "message", data: [] };
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "data") message.data.push(value);
    else if (field === "event") message.event = value;
    else if (field === "id") message.id = value;
  }
  if (!message.data.length) return null;
  return { ...message, data: JSON.parse(message.data.join("\n")) };
}

// ---------------------------------------------------------------- small helpers

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value == null || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.filter((c) => c != null));
  return node;
}

function notify(text, kind = "error") {
  const box = $("#notice");
  box.textContent = text;
  box.className = kind === "info" ? "info" : "";
  box.hidden = !text;
}

function showKeyState(text) { $("#key-state").textContent = text; }

function failed(error) {
  notify(error instanceof Error ? error.message : String(error));
}

const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");

// An <img> whose bytes are fetched with the key (an <img src> cannot send headers).
function authedImage(url, alt, onload) {
  const image = el("img", { alt });
  api(url.startsWith("/") ? url : `/${url}`)
    .then((r) => r.blob())
    .then((blob) => {
      if (onload) image.addEventListener("load", onload, { once: true });
      image.src = URL.createObjectURL(blob);
    })
    .catch(failed);
  return image;
}

// ---------------------------------------------------------------- workflows

async function loadWorkflows(selectId) {
  const { data } = await getJson("/workflows");
  const list = $("#workflow-list");
  list.replaceChildren(
    ...data.map((w) =>
      el("li", {}, el("button", {
        type: "button",
        "data-workflow-id": w.id,
        class: state.workflow && state.workflow.id === w.id ? "active" : null,
        text: w.name,
        onclick: () => selectWorkflow(w.id).catch(failed),
      }))),
  );
  const filter = $("#filter-workflow");
  filter.replaceChildren(el("option", { value: "", text: "any" }),
    ...data.map((w) => el("option", { value: w.id, text: w.name })));
  if (selectId) await selectWorkflow(selectId);
}

async function registerFile(file) {
  const body = new FormData();
  body.append("file", file, file.name);
  const workflow = await (await api("/workflows", { method: "POST", body })).json();
  notify(`registered ${workflow.name} (${workflow.inputs.length} inputs)`, "info");
  await loadWorkflows(workflow.id);
}

async function selectWorkflow(id) {
  const workflow = await getJson(`/workflows/${id}`);
  state.workflow = workflow;
  for (const b of document.querySelectorAll("#workflow-list button")) {
    b.classList.toggle("active", b.dataset.workflowId === id);
  }
  $("#workflow-panel").hidden = false;
  $("#workflow-name").textContent = workflow.name;
  $("#workflow-meta").textContent =
    `version ${workflow.version} · ${workflow.inputs.length} inputs · ${workflow.id}`;
  const fields = await Promise.all(workflow.inputs.map(inputField));
  state.fields = fields;
  $("#inputs").replaceChildren(...fields.map((f) => f.row));
}

// ---------------------------------------------------------------- the form

const current = (input) => (input.value !== null && input.value !== undefined ? input.value : input.default);

function boundsHint(input) {
  const parts = [input.type];
  if (input.minimum != null) parts.push(`≥ ${input.minimum}`);
  if (input.maximum != null) parts.push(`≤ ${input.maximum}`);
  if (input.required) parts.push("required");
  return parts.join(" · ");
}

// One form row for one input: {row, index, read()} where read() is undefined while untouched,
// so the run keeps the value the registered file holds.
async function inputField(input) {
  const id = `input-${input.index}`;
  const row = el("div", { class: "field", "data-index": input.index });
  let touched = false;
  const touch = () => { touched = true; row.classList.remove("invalid"); };
  const { control, read } = await controlFor(input, id, touch);
  row.append(
    el("label", { for: id, text: `${input.index} · ${input.label}` }),
    control,
    el("div", { class: "hint", text: boundsHint(input) }),
    el("div", { class: "problem" }),
  );
  return {
    row,
    index: input.index,
    read: async () => (touched ? read() : undefined),
  };
}

async function controlFor(input, id, touch) {
  const value = current(input);
  const on = { oninput: touch, onchange: touch };
  if (input.choices && input.choices.length) {
    const select = el("select", { id, ...on },
      ...input.choices.map((c) => el("option", { value: c, text: c, selected: c === value })));
    return { control: select, read: () => select.value };
  }
  switch (input.type) {
    case "integer":
    case "float": {
      const box = el("input", {
        id, type: "number", ...on,
        step: input.type === "integer" ? "1" : "any",
        min: input.minimum, max: input.maximum, value: value ?? "",
      });
      return { control: box, read: () => (box.value === "" ? null : Number(box.value)) };
    }
    case "boolean": {
      const box = el("input", { id, type: "checkbox", checked: Boolean(value), ...on });
      return { control: box, read: () => box.checked };
    }
    case "image":
      return imageControl(input, id, touch);
    case "model":
      return modelControl(input, id, touch);
    case "color":
      return colorControl(value, id, touch);
    case "string":
    case "enum":
    case "scheduler":
    case "board": {
      const box = el("textarea", { id, rows: 2, ...on });
      box.value = value ?? "";
      return { control: box, read: () => box.value };
    }
    default: {
      const box = el("textarea", { id, rows: 2, ...on, placeholder: "JSON" });
      box.value = value == null ? "" : JSON.stringify(value);
      return { control: box, read: () => JSON.parse(box.value) };
    }
  }
}

function imageControl(input, id, touch) {
  const current_ = current(input);
  const name = current_ && current_.image_name ? current_.image_name : "";
  const file = el("input", { id, type: "file", accept: "image/*", onchange: touch });
  const named = el("input", { type: "text", placeholder: "or an image name", value: name, oninput: touch });
  const read = async () => {
    if (file.files.length) {
      const body = new FormData();
      body.append("file", file.files[0], file.files[0].name);
      const uploaded = await (await api("/images", { method: "POST", body })).json();
      return uploaded.image_name;
    }
    return named.value || null;
  };
  return { control: el("div", {}, file, named), read };
}

async function modelList() {
  if (!state.models) state.models = (await getJson("/models")).data;
  return state.models;
}

async function modelControl(input, id, touch) {
  const value = current(input) || {};
  let models = [];
  try { models = await modelList(); } catch (error) { failed(error); }
  // Models of the kind the workflow file holds (same type and base), else all of them.
  const matching = models.filter((m) => (!value.type || m.type === value.type) && (!value.base || m.base === value.base));
  const shown = matching.length ? matching : models;
  const select = el("select", { id, oninput: touch, onchange: touch },
    el("option", { value: "", text: value.name ? `${value.name} (from the file)` : "(as in the file)" }),
    ...shown.map((m) => el("option", { value: m.key, text: `${m.name} · ${m.base} ${m.type}`, selected: m.key === value.key })));
  return { control: select, read: () => select.value || undefined };
}

function colorControl(value, id, touch) {
  const c = value || { r: 0, g: 0, b: 0, a: 255 };
  const hex = (n) => Number(n).toString(16).padStart(2, "0");
  const picker = el("input", { id, type: "color", value: `#${hex(c.r)}${hex(c.g)}${hex(c.b)}`, oninput: touch });
  const alpha = el("input", { type: "number", min: 0, max: 255, value: c.a ?? 255, oninput: touch, title: "alpha" });
  const read = () => {
    const v = picker.value;
    return { r: parseInt(v.slice(1, 3), 16), g: parseInt(v.slice(3, 5), 16), b: parseInt(v.slice(5, 7), 16), a: Number(alpha.value) };
  };
  return { control: el("div", {}, picker, alpha), read };
}

function showInputProblems(error) {
  for (const row of document.querySelectorAll("#inputs .field")) {
    row.classList.remove("invalid");
    row.querySelector(".problem").textContent = "";
  }
  for (const e of (error.body && error.body.errors) || []) {
    const row = e.index != null && document.querySelector(`#inputs .field[data-index="${e.index}"]`);
    if (row) {
      row.classList.add("invalid");
      row.querySelector(".problem").textContent = e.reason;
    }
  }
}

async function submitRun(event) {
  event.preventDefault();
  const button = $("#run-button");
  button.disabled = true;
  try {
    const inputs = {};
    for (const field of state.fields) {
      const value = await field.read();
      if (value !== undefined) inputs[String(field.index)] = value;
    }
    const body = { inputs };
    const webhook = $("#webhook-url").value.trim();
    if (webhook) body.webhook_url = webhook;
    const run = await postJson(`/workflows/${state.workflow.id}/runs`, body);
    notify("");
    showInputProblems({});
    openRun(run.id, run.status);
  } catch (error) {
    if (error instanceof ApiError) showInputProblems(error);
    failed(error);
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- one run, live

function setStatus(status) {
  const badge = $("#run-status");
  badge.textContent = status;
  badge.className = `status ${status}`;
  $("#cancel-button").disabled = ["succeeded", "failed", "canceled"].includes(status);
}

function openRun(runId, status = "queued") {
  if (state.stream) state.stream.abort();
  state.run = runId;
  state.stream = new AbortController();
  $("#run-panel").hidden = false;
  $("#run-id").textContent = runId;
  $("#node-bars").replaceChildren();
  $("#previews").replaceChildren();
  $("#gallery").replaceChildren();
  $("#run-error").hidden = true;
  $("#deliveries tbody").replaceChildren();
  $("#delivery-count").textContent = "0";
  setStatus(status);
  follow(runId, state.stream.signal).catch((error) => {
    if (error.name !== "AbortError") failed(error);
  });
}

function nodeBar(data) {
  const id = data.node_id || "?";
  let bar = document.querySelector(`#node-bars .node[data-node-id="${CSS.escape(id)}"]`);
  if (!bar) {
    bar = el("div", { class: "node", "data-node-id": id },
      el("span", { class: "label", text: `${data.node_type || "node"} · ${id.slice(0, 12)}` }),
      el("progress", { max: 1 }),
      el("span", { class: "pct" }));
    $("#node-bars").append(bar);
  }
  return bar;
}

function setProgress(bar, fraction) {
  bar.querySelector("progress").value = fraction;
  bar.querySelector(".pct").textContent = `${Math.round(fraction * 100)}%`;
}

const previewsLoading = new Set();

function showPreview(data) {
  // Newest preview of a node replaces the last; one fetch at a time per node.
  const id = data.node_id || "?";
  if (!data.url || previewsLoading.has(id)) return;
  previewsLoading.add(id);
  let frame = document.querySelector(`#previews [data-node-id="${CSS.escape(id)}"]`);
  const image = authedImage(data.url, `preview of ${id}, step ${data.step}`, () => previewsLoading.delete(id));
  image.dataset.nodeId = id;
  image.width = data.width || 256;
  if (frame) {
    URL.revokeObjectURL(frame.src);
    frame.replaceWith(image);
  } else {
    $("#previews").append(image);
  }
  setTimeout(() => previewsLoading.delete(id), 2000);
}

function showEvent(message) {
  const data = (message.data && message.data.data) || {};
  switch (message.event) {
    case "run.queued": setStatus("queued"); break;
    case "run.started": setStatus("running"); break;
    case "node.started": nodeBar(data); break;
    case "node.progress":
      if (typeof data.percentage === "number") setProgress(nodeBar(data), data.percentage);
      break;
    case "node.preview": showPreview(data); break;
    case "node.completed": setProgress(nodeBar(data), 1); break;
    case "node.failed": nodeBar(data).classList.add("failed"); break;
    default: break; // event types this page does not know are ignored
  }
}

async function follow(runId, signal) {
  let lastId = null;
  for (let attempt = 0; attempt <= STREAM_RETRIES; attempt++) {
    try {
      for await (const message of sseMessages(`/runs/${runId}/events?previews=true`, lastId, signal)) {
        if (message.id) lastId = message.id;
        showEvent(message);
        if (TERMINAL.has(message.event)) return finishRun(runId);
      }
    } catch (error) {
      if (error.name === "AbortError" || (error instanceof ApiError && error.status < 500)) throw error;
    }
    const run = await getJson(`/runs/${runId}`);
    if (["succeeded", "failed", "canceled"].includes(run.status)) return finishRun(runId);
    await new Promise((resolve) => setTimeout(resolve, Math.min(250 * 2 ** attempt, 5000)));
  }
  throw new Error(`lost the event stream of run ${runId}`);
}

async function finishRun(runId) {
  const run = await getJson(`/runs/${runId}`);
  if (state.run !== runId) return;
  setStatus(run.status);
  if (run.error) {
    const e = run.error;
    $("#run-error").textContent = `${e.error_type}: ${e.error_message}\nin node ${e.node_id} (${e.node_type})`;
    $("#run-error").hidden = false;
  }
  const figures = [];
  for (const output of run.outputs || []) {
    for (const image of output.images || []) {
      figures.push(el("figure", {},
        authedImage(image.url, image.image_name),
        el("figcaption", { text: `${output.label || output.node_type || output.node_id} · ${image.image_name}` })));
    }
    if (output.values && output.values.length) {
      figures.push(el("figure", {}, el("figcaption", { text: `${output.label || output.node_id}: ${JSON.stringify(output.values)}` })));
    }
  }
  $("#gallery").replaceChildren(...figures);
  await loadDeliveries(runId);
}

// A run's deliveries; looked at again every second while one is still pending (up to a minute).
async function loadDeliveries(runId, round = 0) {
  const { data } = await getJson(`/runs/${runId}/deliveries`);
  if (state.run !== runId) return;
  if (data.some((d) => d.status === "pending") && round < 60) {
    setTimeout(() => loadDeliveries(runId, round + 1).catch(failed), 1000);
  }
  $("#delivery-count").textContent = String(data.length);
  $("#deliveries tbody").replaceChildren(...data.map((d) => el("tr", { "data-status": d.status },
    el("td", { text: d.event_type }),
    el("td", { text: d.url }),
    el("td", { text: d.status }),
    el("td", { text: String(d.attempt_count) }),
    el("td", { text: d.last_status_code != null ? String(d.last_status_code) : d.last_error || "" }))));
}

async function cancelRun() {
  if (!state.run) return;
  const run = await (await api(`/runs/${state.run}/cancel`, { method: "POST" })).json();
  setStatus(run.status);
}

// ---------------------------------------------------------------- history

function historyQuery(cursor) {
  const params = new URLSearchParams();
  const workflow = $("#filter-workflow").value;
  const status = $("#filter-status").value;
  const after = $("#filter-after").value;
  const before = $("#filter-before").value;
  if (workflow) params.set("workflow_id", workflow);
  if (status) params.set("status", status);
  if (after) params.set("created_after", new Date(after).toISOString());
  if (before) params.set("created_before", new Date(before).toISOString());
  params.set("limit", $("#filter-limit").value || "20");
  if (cursor) params.set("cursor", cursor);
  return params.toString();
}

async function loadHistory(cursor = null) {
  const page = await getJson(`/runs?${historyQuery(cursor)}`);
  const names = Object.fromEntries(
    [...$("#filter-workflow").options].map((o) => [o.value, o.textContent]));
  $("#history tbody").replaceChildren(...page.data.map((run) => el("tr", {
    "data-run-id": run.id,
    onclick: () => { showView("workflows-view"); openRun(run.id, run.status); },
  },
  el("td", {}, el("code", { text: run.id.slice(0, 12) })),
  el("td", { text: names[run.workflow_id] || run.workflow_id }),
  el("td", {}, el("span", { class: `status ${run.status}`, text: run.status })),
  el("td", { text: when(run.created_at) }),
  el("td", { text: when(run.finished_at) }))));
  state.page = { cursor, next: page.next_cursor };
  $("#older").disabled = !page.next_cursor;
  $("#newer").disabled = state.cursors.length === 0;
}

function showView(id) {
  for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== id;
  for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.view === id);
  if (id === "history-view") {
    state.cursors = [];
    loadHistory().catch(failed);
  }
}

// ---------------------------------------------------------------- start

function start() {
  $("#key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("#api-key").value.trim();
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
    $("#api-key").value = "";
    showKeyState(key ? "key kept for this tab" : "no key");
    notify("");
    loadWorkflows().catch(failed);
  });
  showKeyState(sessionStorage.getItem(KEY_STORAGE) ? "key kept for this tab" : "");
  $("#workflow-file").addEventListener("change", (event) => {
    const [file] = event.target.files;
    if (file) registerFile(file).catch(failed).finally(() => { event.target.value = ""; });
  });
  $("#run-form").addEventListener("submit", submitRun);
  $("#cancel-button").addEventListener("click", () => cancelRun().catch(failed));
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => showView(tab.dataset.view));
  $("#history-filters").addEventListener("submit", (event) => {
    event.preventDefault();
    state.cursors = [];
    loadHistory().catch(failed);
  });
  $("#older").addEventListener("click", () => {
    state.cursors.push(state.page.cursor);
    loadHistory(state.page.next).catch(failed);
  });
  $("#newer").addEventListener("click", () => loadHistory(state.cursors.pop()).catch(failed));
  loadWorkflows().catch(failed);
}

start();
