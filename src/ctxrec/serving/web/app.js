// ctxrec demo page: vanilla JS, same-origin calls to the service's JSON API only.
// The API key lives in sessionStorage (this tab only) and goes out as the X-API-Key header.
"use strict";

const KEY_STORAGE = "ctxrec.apiKey";
const $ = (id) => document.getElementById(id);
const state = { fields: [], seq: 0, historySeq: 0, renders: 0, inflight: 0, titles: new Map() };
const MAX_BARS = 8;

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function describe(data, status) {
  const d = data && data.detail;
  if (typeof d === "string") return d;
  if (Array.isArray(d)) return d.map((e) => `${(e.loc || []).join(".")}: ${e.msg}`).join("; ");
  return `HTTP ${status}`;
}

// Requests in flight, on <body data-inflight> (lets a test or a user see when the page is settled).
function busy(delta) {
  state.inflight += delta;
  document.body.dataset.inflight = String(state.inflight);
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) headers["X-API-Key"] = key;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  busy(+1);
  let r, data = null;
  try {
    try {
      r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (err) {
      throw new ApiError(0, `The service did not answer ${method} ${path} (${err.message}); is it running?`);
    }
    try { data = await r.json(); } catch (_) { data = null; }
  } finally {
    busy(-1);
  }
  if (!r.ok) {
    let msg = describe(data, r.status);
    if (r.status === 401) msg = `${msg}. Paste an API key above ('read' scope to see recommendations, 'write' to add events).`;
    throw new ApiError(r.status, msg);
  }
  return data;
}

function setStatus(msg, kind) {
  const s = $("status");
  s.textContent = msg;
  s.className = kind || "";
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

// ------------------------------------------------------------------------------------ context
function renderContextFields(info) {
  state.fields = info.fields || [];
  const box = $("context-fields");
  box.querySelectorAll(".ctx").forEach((n) => n.remove());
  $("no-context").hidden = state.fields.length > 0;
  const add = (label, input) => {
    const l = el("label", "ctx", label);
    l.htmlFor = input.id;
    input.classList.add("ctx");
    box.append(l, input);
  };
  for (const f of state.fields) {
    let input;
    if (f.kind === "categorical" && f.values && f.values.length) {
      input = el("select");
      input.append(new Option("(not set)", ""));
      for (const v of f.values) input.append(new Option(v, v));
    } else {
      input = el("input");
      input.type = f.kind === "numeric" ? "number" : "text";
      if (f.kind === "numeric") input.step = "any";
      input.placeholder = f.mean != null ? `mean ${Number(f.mean).toPrecision(3)}` : "any value";
    }
    input.id = `ctx-${f.name}`;
    input.dataset.field = f.name;
    input.dataset.kind = f.kind;
    input.addEventListener("change", refresh);
    add(f.name, input);
  }
  const t = el("input");
  t.type = "datetime-local";
  t.id = "ctx-time";
  t.addEventListener("change", refresh);
  add(info.time_features ? "time (empty = now)" : "time (this model ignores it)", t);
}

function currentContext() {
  const ctx = {};
  document.querySelectorAll("#context-fields [data-field]").forEach((input) => {
    const v = input.value.trim();
    if (v === "") return;
    ctx[input.dataset.field] = input.dataset.kind === "numeric" ? Number(v) : v;
  });
  for (const part of $("extra-context").value.split(",")) {
    const i = part.indexOf("=");
    if (i <= 0) continue;
    const k = part.slice(0, i).trim();
    const v = part.slice(i + 1).trim();
    if (!k || !v) continue;
    ctx[k] = v !== "" && !Number.isNaN(Number(v)) ? Number(v) : v;
  }
  return ctx;
}

function currentTimestamp() {
  const t = $("ctx-time");
  if (!t || !t.value) return null;
  const ms = new Date(t.value).getTime();
  return Number.isFinite(ms) ? ms / 1000 : null;
}

function currentUser() {
  return $("user-id").value.trim();
}

// ------------------------------------------------------------------------------------ explanation bars
// Any dict of numbers in the explanation becomes a group of bars (view weights, view shares, and
// whatever attributions a model adds); lists of {label, number} objects are read the same way.
const VALUE_KEYS = ["attribution", "weight", "share", "score", "value"];

function asNumberDict(v) {
  if (Array.isArray(v)) {  // e.g. [{item_id, position, attribution}, ...]
    const out = {};
    for (const e of v) {
      if (!e || typeof e !== "object") return null;
      const id = e.item_id ?? e.field ?? e.name ?? e.label ?? e.key;
      const nums = Object.entries(e).filter(([, x]) => typeof x === "number" && Number.isFinite(x));
      const main = nums.find(([k]) => VALUE_KEYS.includes(k)) || (nums.length === 1 ? nums[0] : null);
      if (id === undefined || !main) return null;
      let label = e.item_id !== undefined && state.titles.has(String(id)) ? state.titles.get(String(id)) : String(id);
      if (typeof e.position === "number") label = `${label} (#${e.position})`;
      out[label] = main[1];
    }
    return Object.keys(out).length ? out : null;
  }
  if (!v || typeof v !== "object") return null;
  const entries = Object.entries(v);
  if (!entries.length || !entries.every(([, x]) => typeof x === "number" && Number.isFinite(x))) return null;
  return v;
}

function numberGroups(obj, prefix, depth) {
  const groups = [];
  if (!obj || typeof obj !== "object" || Array.isArray(obj)) return groups;
  for (const [k, v] of Object.entries(obj)) {
    if (k === "items" && depth === 0) continue;  // per-item entries are drawn beside each item
    const name = prefix ? `${prefix} · ${k}` : k;
    const d = asNumberDict(v);
    if (d) groups.push([name, d]);
    else if (depth < 1 && v && typeof v === "object" && !Array.isArray(v)) groups.push(...numberGroups(v, name, depth + 1));
  }
  return groups;
}

function renderBars(name, dict) {
  const box = el("div", "bars");
  box.dataset.group = name;
  box.append(el("div", "bars-name", name.replaceAll("_", " ")));
  const entries = Object.entries(dict);
  // Long groups (e.g. one bar per past event) show the largest magnitudes; short ones keep their order.
  const shownEntries = entries.length > MAX_BARS
    ? [...entries].sort((a, b) => Math.abs(b[1]) - Math.abs(a[1])).slice(0, MAX_BARS) : entries;
  const vals = shownEntries.map(([, x]) => x);
  const unit = vals.every((x) => x >= 0 && x <= 1);
  const scale = unit ? 1 : Math.max(...vals.map(Math.abs)) || 1;
  for (const [label, value] of shownEntries) {
    const row = el("div", "bar");
    row.dataset.label = label;
    row.dataset.value = String(value);
    const fill = el("div", value < 0 ? "bar-fill neg" : "bar-fill");
    fill.style.width = `${Math.min(100, (Math.abs(value) / scale) * 100).toFixed(1)}%`;
    const track = el("div", "bar-track");
    track.append(fill);
    const shown = Math.abs(value) >= 1000 || (Math.abs(value) < 0.001 && value !== 0) ? value.toExponential(2) : value.toFixed(3);
    row.append(el("span", "bar-label", label), track, el("span", "bar-value", shown));
    row.title = `${label}: ${value}`;
    box.append(row);
  }
  if (entries.length > MAX_BARS) box.append(el("div", "muted more", `+ ${entries.length - MAX_BARS} more`));
  return box;
}

// ------------------------------------------------------------------------------------ recommendations
async function recommend() {
  const body = { k: Math.max(1, Math.min(100, parseInt($("k").value, 10) || 10)), context: currentContext(),
                 explain: $("explain").checked };
  const user = currentUser();
  if (user) body.user_id = user;
  const ts = currentTimestamp();
  if (ts !== null) body.timestamp = ts;
  const my = ++state.seq;
  $("last-request").textContent = `POST /v1/recommend\n${JSON.stringify(body, null, 2)}`;
  const res = await api("POST", "/v1/recommend", body);
  if (my !== state.seq) return;  // a newer request was sent meanwhile
  renderRecs(res, body);
}

function renderRecs(res, body) {
  const list = $("recs");
  list.replaceChildren();
  const expl = res.explanation || null;
  const perItem = new Map(((expl && expl.items) || []).map((e) => [e.item_id, e]));
  const weights = $("view-weights");
  weights.replaceChildren(...numberGroups(expl, "", 0).map(([n, d]) => renderBars(n, d)));
  const user = body.user_id;
  for (const it of res.items) if (it.title) state.titles.set(it.item_id, it.title);
  for (const it of res.items) {
    const li = el("li", "rec");
    li.dataset.itemId = it.item_id;
    li.dataset.score = String(it.score);
    const title = el("div", "title", it.title || it.item_id);
    const meta = el("div");
    meta.append(el("span", "item-id", it.item_id), document.createTextNode(" · "),
                el("span", "score", `score ${it.score.toFixed(4)}`));
    const btn = el("button", "small use", "I used this");
    btn.type = "button";
    btn.disabled = !user;
    btn.title = user ? `store an event: ${user} used ${it.item_id}` : "pick or type a user first";
    btn.setAttribute("aria-label", `I used ${it.title || it.item_id}`);
    btn.addEventListener("click", () => addEvent(it.item_id));
    const head = el("div");
    head.append(title, meta);
    li.append(head, btn);
    const e = perItem.get(it.item_id);
    if (e) {
      const bars = el("div", "item-bars");
      for (const [n, d] of numberGroups(e, "", 1)) bars.append(renderBars(n, d));
      if (bars.childElementCount) li.append(bars);
    }
    list.append(li);
  }
  if (!res.items.length) list.append(el("li", "muted", "No items (everything was filtered or seen)."));
  state.renders += 1;
  list.dataset.renders = String(state.renders);
  const ctx = Object.entries(body.context).map(([k, v]) => `${k}=${v}`).join(", ");
  $("rec-meta").textContent = `${user ? `for ${user}` : "for a new visitor"}${ctx ? ` · ${ctx}` : ""} · ${res.model_version}`;
}

// ------------------------------------------------------------------------------------ history + events
async function loadHistory() {
  const user = currentUser();
  const list = $("history");
  const my = ++state.historySeq;
  if (!user) {
    list.replaceChildren();
    $("history-meta").textContent = "(no user)";
    return;
  }
  const h = await api("GET", `/v1/users/${encodeURIComponent(user)}/history?limit=30`);
  if (my !== state.historySeq) return;
  list.replaceChildren();
  for (const it of h.items) {
    if (it.title) state.titles.set(it.item_id, it.title);
    const li = el("li", it.source === "event" ? "event" : "model");
    li.dataset.itemId = it.item_id;
    li.textContent = it.title ? `${it.title} (${it.item_id})` : it.item_id;
    if (it.source === "event") {
      const when = it.timestamp ? new Date(it.timestamp * 1000).toLocaleString() : "";
      li.title = `${it.type} event ${when}`;
      li.append(el("span", "muted", ` · ${it.type}`));
    } else {  // a trained event: its type and context as the model reads them (times are not kept)
      const ctx = Object.entries(it.context || {}).map(([k, v]) => `${k}=${v}`).join(", ");
      li.title = `trained ${it.type || "event"}${ctx ? ` in ${ctx}` : ""}`;
    }
    list.append(li);
  }
  const events = h.items.filter((x) => x.source === "event").length;
  $("history-meta").textContent = `${h.total} item${h.total === 1 ? "" : "s"}${h.known_user ? "" : " · new user"}` +
    (events ? ` · ${events} from events` : "");
}

async function addEvent(itemId) {
  const user = currentUser();
  if (!user) { setStatus("Pick or type a user first.", "error"); return; }
  if (!itemId) { setStatus("Type an item id.", "error"); return; }
  const body = { user_id: user, item_id: itemId, type: $("event-type").value.trim() || "interaction",
                 context: currentContext() };
  const ts = currentTimestamp();
  if (ts !== null) body.timestamp = ts;
  try {
    await api("POST", "/v1/events", body);
  } catch (err) {
    setStatus(`Event not stored: ${err.message}`, "error");
    return;
  }
  setStatus(`Stored: ${user} ${body.type} ${itemId}. Updating...`, "ok");
  if (await refresh()) setStatus(`Stored: ${user} ${body.type} ${itemId}; the list now reflects it.`, "ok");
}

async function refresh(ev) {
  if (ev && ev.preventDefault) ev.preventDefault();
  try {
    await loadHistory();  // first: its titles label the past-event bars of the explanation
    await recommend();
    if (!$("status").classList.contains("ok")) setStatus("");
    return true;
  } catch (err) {
    setStatus(err.message, "error");
    return false;
  }
}

// ------------------------------------------------------------------------------------ start-up
async function loadAll() {
  try {
    const [model, fields, users] = await Promise.all([
      api("GET", "/v1/admin/model"), api("GET", "/v1/model/context-fields"), 
      // listing users needs an admin key (user ids are personal data): without one the picker stays empty
      api("GET", "/v1/users?limit=200").catch((err) => {
        if (err.status === 403) return { total: 0, users: [] };
        throw err;
      })]);
    $("model-info").textContent = `${model.kind} · ${model.version} · ${model.active_items} items`;
    renderContextFields(fields);
    const sel = $("user-select");
    sel.replaceChildren(new Option(`(pick one of ${users.total} known users)`, ""));
    for (const u of users.users) sel.append(new Option(`${u.user_id} (${u.history_length} events)`, u.user_id));
    sel.value = users.users.some((u) => u.user_id === currentUser()) ? currentUser() : "";
    document.body.dataset.ready = "1";
  } catch (err) {
    setStatus(err.message, "error");
    return;
  }
  await refresh();
}

function start() {
  $("api-key").value = sessionStorage.getItem(KEY_STORAGE) || "";
  $("key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const k = $("api-key").value.trim();
    if (k) sessionStorage.setItem(KEY_STORAGE, k); else sessionStorage.removeItem(KEY_STORAGE);
    setStatus("");
    loadAll();
  });
  $("user-select").addEventListener("change", () => {
    if ($("user-select").value) $("user-id").value = $("user-select").value;
    refresh();
  });
  $("user-id").addEventListener("change", refresh);
  $("extra-context").addEventListener("change", refresh);
  $("k").addEventListener("change", refresh);
  $("explain").addEventListener("change", refresh);
  $("query-form").addEventListener("submit", refresh);
  $("event-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    addEvent($("event-item").value.trim());
  });
  loadAll();
}

document.addEventListener("DOMContentLoaded", start);
