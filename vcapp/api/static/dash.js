// vcapp dashboard: log in with an admin token (kept in sessionStorage), then poll the API
// every POLL_MS for machines/apps/warnings and new events, and every CHART_MS for the chart.
"use strict";

const POLL_MS = 2000;   // how soon a machine going down shows: within a poll of the controller seeing it
const CHART_MS = 10000; // history is sampled every 10 s: redrawing faster shows nothing new
const MAX_EVENTS = 200; // the feed keeps the newest ones; `vcapp events` has the rest
const TOKEN_KEY = "vcapp.token";

const $ = (id) => document.getElementById(id);
let lastEvent = null, pollTimer = null, chartTimer = null, subjects = [];

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return node;
}

async function api(path) {
  const res = await fetch(path, { headers: { Authorization: "Bearer " + sessionStorage.getItem(TOKEN_KEY) } });
  const body = await res.json().catch(() => ({}));
  if (res.status === 401) { logout(body.error || "token refused"); throw new Error("unauthorized"); }
  if (!res.ok) throw new Error(body.error || "HTTP " + res.status);
  return body;
}

// ---- login ------------------------------------------------------------------------------
async function login(event) {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  $("token").value = "";
  try { await api("/v1/dashboard"); } catch (e) { return; }
  start();
}

function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  clearInterval(pollTimer); clearInterval(chartTimer);
  $("main").hidden = true; $("logout").hidden = true; $("login").hidden = false;
  $("login-error").textContent = message || "";
}

function start() {
  $("login").hidden = true; $("main").hidden = false; $("logout").hidden = false;
  lastEvent = null; $("events").replaceChildren();
  poll(); pollTimer = setInterval(poll, POLL_MS);
  chartTimer = setInterval(drawCharts, CHART_MS);
}

// ---- polling ----------------------------------------------------------------------------
async function poll() {
  try {
    const snap = await api("/v1/dashboard");
    render(snap);
    await pollEvents();
    $("conn").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    $("conn").textContent = "cannot reach the API: " + e.message;
  }
}

async function pollEvents() {
  const answer = await api(lastEvent ? "/v1/events?after=" + lastEvent : "/v1/events?limit=30");
  for (const e of answer.events) addEvent(e);
  if (answer.last) lastEvent = answer.last;
}

function addEvent(e) {
  const t = new Date(e.time * 1000);
  const item = el("li", { "data-kind": e.kind }, el("time", {}, t.toLocaleTimeString()), e.message);
  const list = $("events");
  list.prepend(item);
  while (list.children.length > MAX_EVENTS) list.lastChild.remove();
}

// ---- rendering --------------------------------------------------------------------------
function render(snap) {
  $("cluster").textContent = snap.cluster.name ? "· " + snap.cluster.name : "";
  const up = snap.nodes.filter((n) => n.up).length;
  $("machines-count").textContent = `${up} of ${snap.nodes.length} online`;
  $("warnings").replaceChildren(...snap.warnings.map((w) =>
    el("div", { class: "warning " + (w.severity || "") , "data-warning": w.id }, w.message)));
  $("machines").replaceChildren(...snap.nodes.map(machineCard));
  $("apps").replaceChildren(...snap.apps.map(appCard));
  updateSubjects(snap);
}

function badge(text, cls) { return el("span", { class: "badge " + cls }, text); }

function bar(label, used, total, text) {
  if (!total) return el("div");
  const pct = Math.max(0, Math.min(100, (100 * used) / total));
  const fill = el("div", { class: "fill" + (pct > 90 ? " high" : ""), style: `width:${pct.toFixed(1)}%` });
  return el("div", { class: "bar", "data-bar": label }, label, el("div", { class: "track" }, fill),
    text || `${fmt(used)} / ${fmt(total)} MB`);
}

function fmt(v) { return v >= 10000 ? (v / 1024).toFixed(0) + "k" : Number(v).toFixed(v < 10 ? 1 : 0); }

function machineCard(n) {
  const state = n.up ? "online" : "offline";
  const card = el("div", { class: "card " + state, "data-node": n.name, "data-state": state },
    el("h3", {}, n.name, badge(state, state), ...(n.drained ? [badge(n.storage_drained ? "drained with storage" : "drained", "drained")] : [])),
    el("div", { class: "muted" }, `site ${n.site || "-"} · ${n.addr || ""}` +
      (n.up ? "" : n.last_seen ? ` · last seen ${ago(n.last_seen)}` : "")),
    el("div", { class: "muted", "data-version": n.version || "" },
      `vcapp ${n.version || "?"}` + (n.build ? ` build ${n.build.slice(0, 7)}` : "")));
  if (n.up) {
    card.append(bar("CPU", n.load1 || 0, n.cpus || 0, `load ${fmt(n.load1 || 0)}, ${n.cpus} cpus`),
      bar("memory", (n.memory_mb || 0) - (n.free_memory_mb || 0), n.memory_mb),
      bar("disk", (n.disk_mb || 0) - (n.free_disk_mb || 0), n.disk_mb));
  }
  const peers = Object.entries(n.mesh || {});
  if (peers.length) card.append(el("div", { class: "muted" }, "mesh: " + peers.map(([p, path]) => `${p} ${path}`).join(", ")));
  if (n.uptime_24h != null) card.append(el("div", { class: "muted" }, `up ${n.uptime_24h}% (24 h)`));
  card.append(el("ul", { class: "inst" }, ...n.instances.map((i) =>
    el("li", { "data-app": i.app }, `${i.app}/${i.instance}`, el("span", { class: "muted" }, `${i.state} ${i.health}`)))));
  return card;
}

function appCard(a) {
  const cls = a.health.replace(" ", "-");
  const card = el("div", { class: "card", "data-app": a.name, "data-health": a.health },
    el("h3", {}, a.name, badge(a.health, cls)),
    el("div", { class: "muted" }, `${a.release ? "v" + a.release : "not deployed"} · ${a.healthy}/${a.count} healthy · ${a.policy}`));
  if (a.url) card.append(el("div", {}, el("a", { href: a.url, target: "_blank", rel: "noopener" }, a.url)));
  const up = (w) => (a["uptime_" + w] == null ? "-" : a["uptime_" + w] + "%");
  card.append(el("div", { class: "muted" }, `uptime ${up("24h")} (24 h), ${up("7d")} (7 d) · failovers ` +
    `${a.failovers_24h ?? 0} (24 h), ${a.failovers_7d ?? 0} (7 d)`));
  card.append(el("ul", { class: "inst" }, ...a.instances.map((i) =>
    el("li", { "data-node": i.node }, `#${i.instance} on ${i.node}`, el("span", { class: "muted" }, `${i.state} ${i.health}`)))));
  return card;
}

function ago(t) {
  const s = Math.max(0, Date.now() / 1000 - t);
  return s < 90 ? `${s.toFixed(0)} s ago` : s < 5400 ? `${(s / 60).toFixed(0)} min ago` : `${(s / 3600).toFixed(1)} h ago`;
}

// ---- charts -----------------------------------------------------------------------------
function updateSubjects(snap) {
  const wanted = snap.nodes.map((n) => "node/" + n.name).concat(snap.apps.map((a) => "app/" + a.name));
  if (wanted.join() === subjects.join()) return;
  const sel = $("subject"), keep = sel.value;
  subjects = wanted;
  sel.replaceChildren(...wanted.map((s) => el("option", { value: s }, s.replace("/", ": "))));
  if (wanted.includes(keep)) sel.value = keep;
  drawCharts();
}

async function drawCharts() {
  const subject = $("subject").value;
  if (!subject) return;
  let h;
  try {
    h = await api(`/v1/history?subject=${encodeURIComponent(subject)}&range=${$("range").value}`);
  } catch (e) {
    $("charts").replaceChildren(el("div", { class: "muted" }, e.message));
    return;
  }
  const charts = Object.entries(h.cols).map(([metric, values]) => chart(metric, h.t, values, h.now - h.range, h.now));
  $("charts").replaceChildren(...charts);
}

const UNITS = { cpu: "%", mem: "%", disk: "%", up: "", mem_mb: "MB", healthy: "", restarts: "", req_s: "req/s", err_s: "5xx/s" };

function chart(metric, times, values, from, to) {
  const W = 300, H = 100;
  const present = values.filter((v) => v != null);
  const top = Math.max(metric === "up" ? 1 : 1e-9, ...present) * 1.1;
  const pts = times.map((t, i) => values[i] == null ? null :
    `${((W * (t - from)) / (to - from)).toFixed(1)},${(H - (H * values[i]) / top).toFixed(1)}`).filter(Boolean);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`); svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("class", "chart");
  for (const y of [0, H / 2, H]) {
    const g = document.createElementNS(ns, "line");
    Object.entries({ x1: 0, x2: W, y1: y, y2: y, class: "grid" }).forEach(([k, v]) => g.setAttribute(k, v));
    svg.append(g);
  }
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", pts.join(" "));
  svg.append(line);
  if (pts.length) {  // the newest point, visible even while a series has only a few
    const [x, y] = pts[pts.length - 1].split(",");
    const dot = document.createElementNS(ns, "circle");
    Object.entries({ cx: x, cy: y, r: 2.5 }).forEach(([k, v]) => dot.setAttribute(k, v));
    svg.append(dot);
  }
  const last = present.length ? present[present.length - 1] : null;
  return el("div", { class: "card", "data-chart": metric },
    el("h3", {}, metric, el("span", { class: "muted" }, last == null ? "no data" : `${last} ${UNITS[metric] ?? ""}`)),
    svg, el("div", { class: "muted" }, `${present.length} points, max ${fmt(top / 1.1)}`));
}

// ---- boot -------------------------------------------------------------------------------
$("login-form").addEventListener("submit", login);
$("logout").addEventListener("click", () => logout(""));
$("subject").addEventListener("change", drawCharts);
$("range").addEventListener("change", drawCharts);
if (sessionStorage.getItem(TOKEN_KEY)) start();
