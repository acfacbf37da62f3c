"use strict";
// The console's pages: hash routes over the console's own JSON API (/api/v1/...).

const DAY = 86400e3;
const LEVELS = ["CRITICAL", "HIGH", "MEDIUM", "LOW"];
const STATUSES = ["new", "acknowledged", "resolved", "false_positive"];
const FIELDS = ["user", "profile", "model", "source", "status", "dimension", "risk", "id", "after", "before"];
const main = document.getElementById("main");
const statusEl = document.getElementById("status");

// ---- API ----------------------------------------------------------------------------------
class Problem extends Error {
  constructor(p) { super(p.detail || p.title); this.status = p.status; this.code = p.code; }
}

function authHeaders() {
  const token = sessionStorage.getItem("ueba-token");
  // Without tokens the services take the actor of reviews and cases from this name;
  // with tokens they ignore it and use the token's name.
  const actor = localStorage.getItem("ueba-actor");
  return { ...(token ? { Authorization: "Bearer " + token } : {}), ...(actor ? { "x-ueba-actor": actor } : {}) };
}

async function post(service, method, body) {
  const response = await fetch(`/api/v1/${service}/${method}`, {
    method: "POST", headers: { "Content-Type": "application/json", ...authHeaders() }, body: JSON.stringify(body || {}),
  });
  if (!response.ok) {
    const problem = await response.json().catch(() => ({ status: response.status, title: response.statusText }));
    if (response.status === 401) login();
    throw new Problem(problem);
  }
  return response;
}
const call = async (service, method, body) => (await post(service, method, body)).json();

// ---- small helpers ------------------------------------------------------------------------
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}
const num = (v) => Number(v || 0);
const fmt = (v) => num(v).toLocaleString("en-US");
const short = (name, prefix) => (name || "").replace(prefix, "");
const level = (name) => h("span", { class: "level " + short(name, "RISK_LEVEL_") }, short(name, "RISK_LEVEL_").toLowerCase() || "-");
const when = (ts) => ts ? ts.replace("T", " ").replace(/:\d\d(\.\d+)?Z$/, "Z") : "";
const iso = (ms) => new Date(ms).toISOString();
const dayOf = (ts) => ts.slice(0, 10);
const userLink = (user) => h("a", { href: "#/users/" + encodeURIComponent(user) }, user);
const entityType = (ref) => short(ref?.type, "ENTITY_TYPE_").toLowerCase() || "user";
const entityHref = (ref) => `#/entities/${entityType(ref)}/${encodeURIComponent(ref?.name || "")}`;
const entityLink = (ref) => h("a", { href: entityHref(ref) }, ref?.name || "-");
// A finding about a source names no account: it is shown by its source.
const subjectLink = (a) => a.user ? userLink(a.user) : entityLink(a.entity);
const anomalyLink = (a) => h("a", { href: "#/anomalies/" + a.id, class: "anomaly-link" }, a.description || a.id);
const incidentLink = (i) => h("a", { href: "#/incidents/" + i.id }, i.title || i.kind || i.id);
const statusWord = (s) => short(s, "ANOMALY_STATUS_").toLowerCase().replace("_", " ");
const plural = (n, word) => `${n} ${word}${num(n) === 1 ? "" : "s"}`;
// Whole UTC hours: the query service answers hour-aligned risk timelines from its hourly totals.
const lastDays = (days) => {
  const hour = 3600e3, next = Math.ceil(Date.now() / hour) * hour;
  return { start: iso(next - days * DAY), end: iso(next + hour) };
};

function busy(text) { statusEl.textContent = text; }
function showError(err, where) {
  busy("");
  (where || main).prepend(h("p", { class: "error", role: "alert" }, err.message));
}

function countsTable(title, counts, keyLabel, render) {
  const max = Math.max(1, ...counts.map((c) => num(c.count)));
  return h("div", { class: "card span4" }, h("h2", {}, title),
    h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, keyLabel), h("th", { class: "num" }, "Count"))),
      h("tbody", {}, counts.map((c) => h("tr", {},
        h("td", {}, render ? render(c.key) : c.key),
        h("td", { class: "num barcell" }, h("span", { class: "fill", style: `width:${(100 * num(c.count)) / max}%` }),
          h("span", { class: "text" }, fmt(c.count))))))));
}

function timeChart(container, xs, series) {
  const width = container.clientWidth || 600;
  const config = series.map(({ data, ...rest }) => rest);
  // Times in UTC, as everywhere else in the console (the heat map's hours, the tables).
  return new uPlot({ width, height: (container.clientHeight || 220) - 30, series: [{}, ...config], legend: { live: false },
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
    axes: [{}, { size: 50 }], scales: { x: { time: true } } }, [xs, ...series.map((s) => s.data)], container);
}

// ---- Summary ------------------------------------------------------------------------------
async function summaryPage() {
  main.replaceChildren(h("h1", {}, "Summary: the last 30 days"));
  const range = lastDays(30);
  const [summary, timeline, entities] = await Promise.all([
    call("query", "GetSummary", { range, top_users: 10 }),
    call("query", "GetRiskTimeline", { range, bucket_seconds: 3600 }),
    call("query", "ListEntities", { page_size: 8 }),
  ]);
  const kpi = (label, value, id) => h("div", { class: "card span3" }, h("div", { class: "muted" }, label), h("div", { class: "kpi", id }, value));
  const chart = h("div", { class: "chart", id: "risk-timeline", role: "img",
    "aria-label": "Risk points per hour; surges marked in red" });
  const surges = (timeline.buckets || []).filter((b) => b.surge).length;
  const grid = h("div", { class: "grid" },
    kpi("Anomalies", fmt(summary.total_anomalies), "kpi-anomalies"),
    kpi("New (not reviewed)", fmt(summary.new_anomalies), "kpi-new"),
    kpi("Users seen", fmt(summary.users_seen), "kpi-users"),
    kpi("Events", fmt(summary.events), "kpi-events"),
    h("div", { class: "card span8" }, h("h2", {}, `Risk timeline (${surges} surge hours above ${Math.round(timeline.surge_threshold || 0)} points)`), chart),
    h("div", { class: "card span4" }, h("h2", {}, "Users by current risk"),
      h("table", {}, h("tbody", {}, (summary.users_by_risk_level || []).map((c) =>
        h("tr", {}, h("td", {}, level("RISK_LEVEL_" + c.key.toUpperCase())), h("td", { class: "num" }, fmt(c.count))))))),
    riskiestUsers(summary.riskiest_users || []),
    countsTable("Anomalies by level", summary.by_risk_level || [], "Level", (k) => level("RISK_LEVEL_" + k.toUpperCase())),
    countsTable("Anomalies by profile or model", (summary.by_profile || []).slice(0, 12), "Profile / model",
      (k) => h("a", { href: "#/anomalies?q=" + encodeURIComponent(`profile:"${k}"`) }, k)),
    countsTable("Anomalies by dimension", summary.by_dimension || [], "Dimension"),
    riskiestEntities(entities.entities || []),
  );
  main.append(grid);
  drawRiskTimeline(chart, timeline);
}

function riskiestUsers(users) {
  return h("div", { class: "card span8" }, h("h2", {}, "Riskiest users"),
    h("table", { id: "riskiest" }, h("thead", {}, h("tr", {}, h("th", {}, "User"), h("th", {}, "Level"),
      h("th", { class: "num" }, "Risk"), h("th", { class: "num" }, "Points"), h("th", { class: "num" }, "Open anomalies"))),
      h("tbody", {}, users.map((u) => h("tr", {}, h("td", {}, userLink(u.user)), h("td", {}, level(u.risk_level)),
        h("td", { class: "num" }, u.risk || 0), h("td", { class: "num" }, fmt(u.total_points)),
        h("td", { class: "num" }, u.open_anomalies || 0))))));
}

function riskiestEntities(entities) {
  return h("div", { class: "card span4" }, h("h2", {}, "Riskiest entities"),
    h("table", { id: "riskiest-entities" }, h("thead", {}, h("tr", {}, h("th", {}, "Account, address or host"), h("th", {}, "Level"),
      h("th", { class: "num" }, "Risk"))),
      h("tbody", {}, entities.map((e) => h("tr", {}, h("td", {}, entityLink(e.entity), " ", h("span", { class: "muted" }, entityType(e.entity))),
        h("td", {}, level(e.risk_level)), h("td", { class: "num" }, e.risk || 0))))));
}

function drawRiskTimeline(container, timeline) {
  // From a day before the first anomaly: a young system's month is mostly empty.
  const all = timeline.buckets || [];
  const first = all.findIndex((b) => num(b.risk_points) > 0);
  const buckets = first < 0 ? all : all.slice(Math.max(0, first - 24));
  const xs = buckets.map((b) => Date.parse(b.start) / 1000);
  const points = buckets.map((b) => num(b.risk_points));
  const surge = buckets.map((b) => (b.surge ? num(b.risk_points) : null));
  timeChart(container, xs, [
    { label: "Risk points", stroke: "#1f5fbf", fill: "rgba(31,95,191,.12)", data: points, points: { show: false } },
    { label: "Surge", stroke: "#b3261e", width: 0, data: surge, points: { show: true, size: 8, fill: "#b3261e" } },
  ]);
}

// ---- Anomalies ----------------------------------------------------------------------------
const anomalyState = { filter: {}, tokens: [""], page: 0, rows: [], selected: new Set(), total: 0, capped: false };

function filterFromForm(form) {
  const f = { query: form.q.value.trim() };
  if (form.status.value) f.statuses = ["ANOMALY_STATUS_" + form.status.value.toUpperCase()];
  if (form.level.value) f.risk_levels = LEVELS.slice(0, LEVELS.indexOf(form.level.value) + 1).map((l) => "RISK_LEVEL_" + l);
  if (form.source.value) f.source = "ANOMALY_SOURCE_" + form.source.value.toUpperCase();
  return f;
}

async function anomaliesPage(params) {
  const form = h("form", { class: "filters", id: "anomaly-filters", role: "search" },
    queryBox(params.get("q") || ""),
    h("label", {}, "Status", h("select", { name: "status" }, h("option", { value: "" }, "any"),
      STATUSES.map((s) => h("option", { value: s, selected: s === (params.get("status") ?? "new") }, s.replace("_", " "))))),
    h("label", {}, "Level at least", h("select", { name: "level" }, h("option", { value: "" }, "any"),
      [...LEVELS].reverse().map((l) => h("option", { value: l }, l.toLowerCase())))),
    h("label", {}, "Source", h("select", { name: "source" }, h("option", { value: "" }, "rules and models"),
      h("option", { value: "rule" }, "rules"), h("option", { value: "model" }, "models"))),
    h("button", { type: "submit", class: "primary" }, "Search"));
  const actions = h("div", { class: "toolbar" },
    h("span", { id: "selection", class: "muted" }),
    ...[["ACKNOWLEDGE", "Acknowledge"], ["RESOLVE", "Resolve"], ["FALSE_POSITIVE", "False positive"]].map(([a, label]) =>
      h("button", { type: "button", "data-action": a, onclick: () => bulkReview(a, label) }, label)),
    h("button", { type: "button", id: "export-csv", onclick: exportCsv }, "Export CSV"));
  const table = h("div", { id: "anomaly-table" });
  main.replaceChildren(h("h1", {}, "Anomalies"), form, actions, table);
  form.addEventListener("submit", (e) => { e.preventDefault(); startListing(form); });
  await startListing(form);
}

async function startListing(form) {
  anomalyState.filter = filterFromForm(form);
  anomalyState.tokens = [""];
  anomalyState.page = 0;
  await loadAnomalyPage();
}

async function loadAnomalyPage() {
  busy("Loading…");
  const holder = document.getElementById("anomaly-table");
  try {
    const page = await call("query", "ListAnomalies", { filter: anomalyState.filter, page_size: 50,
      page_token: anomalyState.tokens[anomalyState.page], order_by: "time desc" });
    anomalyState.rows = page.anomalies || [];
    anomalyState.selected.clear();
    anomalyState.total = num(page.total_size);
    anomalyState.capped = !!page.total_size_capped;
    anomalyState.tokens[anomalyState.page + 1] = page.next_page_token || "";
    holder.replaceChildren(anomalyTable(anomalyState.rows), pager(page.next_page_token));
    updateSelection();
    busy("");
  } catch (err) { holder.replaceChildren(); showError(err, holder); }
}

function anomalyTable(rows, onAck) {
  const all = h("input", { type: "checkbox", "aria-label": "Select every anomaly on this page",
    onchange: (e) => { rows.forEach((r) => e.target.checked ? anomalyState.selected.add(r.id) : anomalyState.selected.delete(r.id));
      e.target.closest("table").querySelectorAll("tbody input").forEach((c) => { c.checked = e.target.checked; }); updateSelection(); } });
  return h("table", { class: "anomalies" },
    h("thead", {}, h("tr", {}, onAck ? null : h("th", {}, all), h("th", {}, "Time"), h("th", {}, "User"), h("th", {}, "Level"),
      h("th", { class: "num" }, "Score"), h("th", {}, "Profile / model"), h("th", {}, "Description"), h("th", {}, "Status"),
      onAck ? h("th", {}, "Review") : null)),
    h("tbody", {}, rows.map((a) => h("tr", { "data-id": a.id },
      onAck ? null : h("td", {}, h("input", { type: "checkbox", "aria-label": "Select " + a.id,
        onchange: (e) => { e.target.checked ? anomalyState.selected.add(a.id) : anomalyState.selected.delete(a.id); updateSelection(); } })),
      h("td", {}, when(a.time)), h("td", {}, subjectLink(a)), h("td", {}, level(a.risk_level)),
      h("td", { class: "num" }, a.risk_score), h("td", {}, a.profile_name), h("td", {}, anomalyLink(a)),
      h("td", {}, short(a.status, "ANOMALY_STATUS_").toLowerCase()),
      onAck ? h("td", {}, h("button", { type: "button", class: "ack", onclick: () => onAck(a) }, "Acknowledge")) : null))));
}

function pager(next) {
  return h("div", { class: "pager" },
    h("button", { type: "button", disabled: anomalyState.page === 0, onclick: () => { anomalyState.page--; loadAnomalyPage(); } }, "Previous"),
    h("span", { class: "muted" }, `Page ${anomalyState.page + 1} · ${fmt(anomalyState.total)}${anomalyState.capped ? "+" : ""} matching`),
    h("button", { type: "button", disabled: !next, onclick: () => { anomalyState.page++; loadAnomalyPage(); } }, "Next"));
}

function reviewTarget() {
  if (anomalyState.selected.size) return { ids: [...anomalyState.selected], count: String(anomalyState.selected.size) };
  return { filter: anomalyState.filter, count: (anomalyState.capped ? "at least " : "") + fmt(anomalyState.total) + " (every match)" };
}

function updateSelection() {
  const el = document.getElementById("selection");
  if (el) el.textContent = anomalyState.selected.size ? `${anomalyState.selected.size} selected` : `No selection: actions apply to all ${fmt(anomalyState.total)}${anomalyState.capped ? "+" : ""} matching`;
}

function confirmDialog(text) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  dialog.returnValue = "";
  dialog.showModal();
  document.getElementById("confirm-ok").focus();
  return new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true }));
}

async function bulkReview(action, label) {
  const target = reviewTarget();
  if (!(await confirmDialog(`${label}: ${target.count} anomalies?`))) return;
  try {
    const body = { action: "REVIEW_ACTION_" + action, ...(target.ids ? { ids: target.ids } : { filter: target.filter }) };
    const result = await call("query", "ReviewAnomalies", body);
    await loadAnomalyPage();
    busy(`${result.updated || 0} updated`);
  } catch (err) { showError(err); }
}

async function exportCsv() {
  busy("Exporting…");
  try {
    const response = await post("query", "ExportAnomalies", { filter: anomalyState.filter });
    const url = URL.createObjectURL(await response.blob());
    const a = h("a", { href: url, download: "anomalies.csv", id: "csv-link" });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60e3);
    busy("CSV exported");
  } catch (err) { showError(err); }
}

// ---- the query field and its suggestions ---------------------------------------------------
function queryBox(initial) {
  const input = h("input", { name: "q", id: "query", value: initial, autocomplete: "off", spellcheck: "false",
    placeholder: 'e.g. user:alice AND risk>=high', role: "combobox", "aria-autocomplete": "list",
    "aria-expanded": "false", "aria-controls": "query-suggestions" });
  const list = h("ul", { class: "suggest", id: "query-suggestions", role: "listbox", hidden: true });
  let items = [], active = -1;
  const close = () => { list.hidden = true; input.setAttribute("aria-expanded", "false"); active = -1; };
  const show = (values) => {
    items = values; active = values.length ? 0 : -1;
    list.replaceChildren(...values.map((v, i) => h("li", { role: "option", id: "sugg-" + i, "aria-selected": i === 0 ? "true" : "false",
      onmousedown: (e) => { e.preventDefault(); accept(i); } }, v)));
    list.hidden = !values.length; input.setAttribute("aria-expanded", String(!!values.length));
  };
  const accept = (i) => {
    const { start, end } = currentTerm(input);
    const value = items[i];
    const text = input.value.slice(0, start) + value + (value.endsWith(":") ? "" : " ") + input.value.slice(end);
    input.value = text; input.setSelectionRange(start + value.length + (value.endsWith(":") ? 0 : 1), start + value.length + (value.endsWith(":") ? 0 : 1));
    close(); if (value.endsWith(":")) suggestFor(input).then(show);
  };
  input.addEventListener("input", () => suggestFor(input).then(show));
  input.addEventListener("blur", close);
  input.addEventListener("keydown", (e) => {
    if (list.hidden) return;
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault(); active = (active + (e.key === "ArrowDown" ? 1 : items.length - 1)) % items.length;
      [...list.children].forEach((li, i) => li.setAttribute("aria-selected", String(i === active)));
      input.setAttribute("aria-activedescendant", "sugg-" + active);
    } else if ((e.key === "Enter" || e.key === "Tab") && active >= 0) { e.preventDefault(); accept(active); }
    else if (e.key === "Escape") close();
  });
  return h("label", { class: "querybox" }, "Query", input, list);
}

function currentTerm(input) {
  const at = input.selectionStart ?? input.value.length;
  const before = input.value.slice(0, at);
  const start = Math.max(before.lastIndexOf(" "), before.lastIndexOf("(")) + 1;
  return { start, end: at, text: before.slice(start) };
}

const vocabulary = {};
async function valuesOf(field, prefix) {
  if (field === "user") return (await call("query", "ListUsers", { user_prefix: prefix, page_size: 8 })).users?.map((u) => u.risk.user) || [];
  if (field === "status") return STATUSES;
  if (field === "source") return ["rule", "model"];
  if (field === "risk") return LEVELS.map((l) => l.toLowerCase());
  if (!vocabulary.profiles) {
    const [profiles, models] = await Promise.all([call("profiles", "ListProfiles", { page_size: 200 }), call("scorer", "ListModels", {})]);
    vocabulary.profiles = (profiles.profiles || []).map((p) => p.name);
    vocabulary.models = (models.models || []).map((m) => m.name);
    vocabulary.dimensions = [...new Set((profiles.profiles || []).map((p) => p.dimension).filter(Boolean))];
  }
  return { profile: [...vocabulary.profiles, ...vocabulary.models], model: vocabulary.models, dimension: vocabulary.dimensions }[field] || [];
}

async function suggestFor(input) {
  const { text } = currentTerm(input);
  const negated = text.startsWith("-") ? "-" : "";
  const term = text.slice(negated.length);
  const colon = term.indexOf(":");
  try {
    if (colon < 0) return term ? FIELDS.filter((f) => f.startsWith(term.toLowerCase())).map((f) => negated + f + ":") : [];
    const field = term.slice(0, colon).toLowerCase(), prefix = term.slice(colon + 1).replace(/^"/, "");
    const values = await valuesOf(field, prefix);
    return values.filter((v) => v.toLowerCase().startsWith(prefix.toLowerCase())).slice(0, 10)
      .map((v) => negated + field + ":" + (/\s/.test(v) ? `"${v}"` : v));
  } catch { return []; }
}

// ---- User ---------------------------------------------------------------------------------
async function userPage(user, params) {
  main.replaceChildren(h("h1", {}, "User ", h("span", { id: "user-name" }, user)));
  const [detail, scores] = await Promise.all([
    call("query", "GetUser", { user, recent_limit: 1 }),
    call("query", "ListUserScores", { users: [user], range: lastDays(60), page_size: 1000 }),
  ]);
  const days = (scores.scores || []).slice().sort((a, b) => a.day.localeCompare(b.day));
  const worst = days.reduce((m, d) => (!m || num(d.anomaly_score) > num(m.anomaly_score) ? d : m), null);
  const day = params.get("day") || (worst ? dayOf(worst.day) : "");
  const risk = detail.risk || {};
  const history = h("div", { class: "chart small", id: "user-history", role: "img", "aria-label": "Daily anomaly score" });
  const daySelect = h("select", { id: "day", "aria-label": "Day of the heat map",
    onchange: (e) => { location.hash = `#/users/${encodeURIComponent(user)}?day=${e.target.value}`; } },
    days.map((d) => h("option", { value: dayOf(d.day), selected: dayOf(d.day) === day }, `${dayOf(d.day)} (score ${num(d.anomaly_score).toFixed(1)})`)));
  main.append(h("div", { class: "grid" },
    h("div", { class: "card span3" }, h("div", { class: "muted" }, "Current risk"),
      h("div", { class: "kpi" }, h("span", { id: "user-risk" }, risk.risk || 0), " ", level(risk.risk_level)),
      h("div", { class: "muted", id: "user-points" }, `${fmt(risk.total_points)} points from ${risk.open_anomalies || 0} open anomalies`)),
    h("div", { class: "card span3" }, h("div", { class: "muted" }, "Department / peer group"),
      h("div", {}, detail.department || "-", " / ", detail.peer_group || "-"),
      h("div", { class: "muted" }, detail.learning ? `learning (${detail.baseline_days} baseline days)` : `${detail.baseline_days} baseline days`)),
    h("div", { class: "card span6" }, h("div", { class: "muted" }, "Seen"), h("div", {}, when(detail.first_seen), " … ", when(detail.last_seen)),
      h("div", { class: "muted" }, (detail.open_by_profile || []).map((c) => `${c.key}: ${c.count}`).join(" · "))),
    h("div", { class: "card span12" }, h("h2", {}, "Daily anomaly score (behaviour models)"), history),
    h("div", { class: "card span12" }, h("h2", {}, "Hour by model for ", daySelect),
      h("div", { id: "heatmap" }, h("p", { class: "loading" }, "Loading…")), h("div", { id: "cell-detail" })),
    h("div", { class: "card span12" }, h("h2", {}, "Open anomalies"), h("p", { id: "review-result", role: "status" }),
      h("div", { id: "user-anomalies" }))));
  timeChart(history, days.map((d) => Date.parse(d.day) / 1000), [
    { label: "Anomaly score", stroke: "#d2691e", data: days.map((d) => num(d.anomaly_score)), points: { show: true, size: 5 } }]);
  await Promise.all([day ? heatMap(user, day) : document.getElementById("heatmap").replaceChildren("No scored days yet."),
    userAnomalies(user)]);
}

const heatColour = (score) => `hsl(${Math.round(60 - 60 * Math.min(score, 100) / 100)}, 85%, ${Math.round(96 - 44 * Math.min(score, 100) / 100)}%)`;

async function heatMap(user, day) {
  const timeline = await call("query", "GetUserTimeline", { user, day: day + "T00:00:00Z" });
  const models = [...new Set((timeline.hours || []).flatMap((hr) => (hr.cards || []).map((c) => c.model)))].sort();
  const byCell = new Map();
  for (const hour of timeline.hours || []) for (const card of hour.cards || [])
    byCell.set(`${card.model}|${new Date(hour.hour).getUTCHours()}`, { card, hour });
  const grid = h("div", { class: "heat", role: "grid", "aria-label": `Model scores by hour on ${day} (UTC)` },
    h("div", {}), [...Array(24).keys()].map((i) => h("div", { class: "hour" }, String(i).padStart(2, "0"))));
  for (const model of models) {
    grid.append(h("div", { class: "rowname", title: model }, model));
    for (let hr = 0; hr < 24; hr++) {
      const entry = byCell.get(`${model}|${hr}`);
      if (!entry) { grid.append(h("div", {})); continue; }
      const score = num(entry.card.event_score);
      grid.append(h("button", { type: "button", class: "cell" + (entry.card.above_threshold ? " above" : ""),
        style: `background:${heatColour(score)}`, "data-model": model, "data-hour": hr, "aria-pressed": "false",
        "aria-label": `${model} at ${hr}:00, score ${score}`,
        onclick: (e) => { grid.querySelectorAll("[aria-pressed=true]").forEach((b) => b.setAttribute("aria-pressed", "false"));
          e.currentTarget.setAttribute("aria-pressed", "true"); cellDetail(entry); } }, score));
    }
  }
  document.getElementById("heatmap").replaceChildren(
    h("div", { class: "legend" }, `Anomaly score ${num(timeline.anomaly_score).toFixed(1)} · cells outlined at or above ${num(timeline.display_threshold).toFixed(0)}`,
      [0, 50, 100].map((s) => h("span", {}, h("span", { class: "swatch", style: `background:${heatColour(s)}` }), " ", s))),
    models.length ? grid : h("p", {}, "No model scores on this day."));
}

function cellDetail({ card, hour }) {
  const fmtValue = (v) => { const n = num(v); return Math.abs(n) >= 1e5 || (n && Math.abs(n) < 1e-3) ? n.toExponential(3) : n.toFixed(3).replace(/\.?0+$/, ""); };
  document.getElementById("cell-detail").replaceChildren(h("h2", {}, `${card.model} at ${when(hour.hour)}: score ${card.event_score || 0}${card.learning ? " (learning)" : ""}`),
    h("table", { id: "features" }, h("thead", {}, h("tr", {}, h("th", {}, "Feature"), h("th", { class: "num" }, "Expected"),
      h("th", { class: "num" }, "Observed"), h("th", { class: "num" }, "Share of score"))),
      h("tbody", {}, (card.features || []).map((f) => h("tr", { "data-feature": f.name, "data-expected": num(f.expected), "data-observed": num(f.observed) },
        h("td", {}, f.name), h("td", { class: "num" }, fmtValue(f.expected)), h("td", { class: "num" }, fmtValue(f.observed)),
        h("td", { class: "num" }, `${Math.round(100 * num(f.share))}%`))))));
  document.getElementById("cell-detail").scrollIntoView({ block: "nearest" });
}

async function userAnomalies(user) {
  const page = await call("query", "ListAnomalies", { filter: { users: [user], statuses: ["ANOMALY_STATUS_NEW"] }, page_size: 50, order_by: "risk desc" });
  const acknowledge = async (a) => {
    try {
      const result = await call("query", "ReviewAnomalies", { action: "REVIEW_ACTION_ACKNOWLEDGE", ids: [a.id] });
      const change = (result.risk_changes || []).find((c) => c.user === user);
      const detail = await call("query", "GetUser", { user, recent_limit: 1 });
      document.getElementById("user-risk").textContent = detail.risk?.risk || 0;
      document.getElementById("user-points").textContent = `${fmt(detail.risk?.total_points)} points from ${detail.risk?.open_anomalies || 0} open anomalies`;
      document.getElementById("review-result").textContent = change ? `Acknowledged; risk ${change.risk_before || 0} → ${change.risk_after || 0}` : "Acknowledged";
      await userAnomalies(user);
    } catch (err) { showError(err); }
  };
  document.getElementById("user-anomalies").replaceChildren(anomalyTable(page.anomalies || [], acknowledge));
}


// ---- One anomaly and the events behind it --------------------------------------------------
async function anomalyPage(id) {
  const [anomaly, first] = await Promise.all([call("query", "GetAnomaly", { id }),
    call("query", "ListAnomalyEvents", { anomaly_id: id, page_size: 100 })]);
  const evidence = Object.entries(anomaly.evidence || {}).filter(([k]) => k !== "event_ids");
  const body = h("tbody", {});
  const more = h("button", { type: "button", id: "more-events" }, "More events");
  const count = h("span", { class: "muted", id: "event-count" });
  const add = (page) => {
    body.append(...(page.events || []).map(eventRow));
    const n = body.children.length;
    count.textContent = `${plural(n, "event")}${page.next_page_token ? " so far" : ""}`;
    more.hidden = !page.next_page_token;
    more.onclick = async () => {
      more.disabled = true;
      try { add(await call("query", "ListAnomalyEvents", { anomaly_id: id, page_size: 100, page_token: page.next_page_token })); }
      catch (err) { showError(err); }
      more.disabled = false;
    };
  };
  main.replaceChildren(h("h1", {}, "Anomaly: ", h("span", { id: "anomaly-description" }, anomaly.description)),
    h("div", { class: "grid" },
      h("div", { class: "card span4" }, facts([["About", subjectLink(anomaly)], ["Level", level(anomaly.risk_level)],
        ["Score", anomaly.risk_score], ["Profile / model", anomaly.profile_name], ["Status", statusWord(anomaly.status)],
        ["Incident", anomaly.incident_id ? h("a", { href: "#/incidents/" + anomaly.incident_id }, "open the incident") : "-"]])),
      h("div", { class: "card span8" }, facts([["When", when(anomaly.time)],
        ["Window", `${when(anomaly.window_start)} … ${when(anomaly.window_end)}`],
        ...evidence.map(([k, v]) => [k, typeof v === "object" ? JSON.stringify(v) : String(v)])])),
      h("div", { class: "card span12" }, h("h2", {}, "Events behind it ", count),
        h("table", { id: "anomaly-events" }, h("thead", {}, h("tr", {}, ["Time", "User", "Type", "Outcome", "Source", "Host",
          "Application / object", "Action", "Country"].map((t) => h("th", {}, t)))), body), more)));
  add(first);
}

function eventRow(e) {
  return h("tr", { "data-event": e.event_id }, h("td", {}, when(e.time)), h("td", {}, e.user ? userLink(e.user) : "-"),
    h("td", {}, short(e.type, "EVENT_TYPE_").toLowerCase()), h("td", {}, short(e.outcome, "OUTCOME_").toLowerCase()),
    h("td", {}, e.source_ip || e.source_host || ""), h("td", {}, e.destination_host || e.destination_ip || ""),
    h("td", {}, e.application || e.object || ""), h("td", {}, e.action || ""), h("td", {}, e.geo?.country_code || ""));
}

function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "-")]));
}

// ---- Entities: accounts, source addresses, hosts ------------------------------------------
const ENTITY_TYPES = { user: "accounts", ip: "source addresses", host: "hosts" };

async function entitiesPage(params) {
  const type = params.get("type") || "";
  const list = await call("query", "ListEntities", { page_size: 100, page_token: params.get("page") || "",
    ...(type ? { type: "ENTITY_TYPE_" + type.toUpperCase() } : {}) });
  const filter = h("form", { class: "filters", id: "entity-filters" }, h("label", {}, "Type", h("select", { name: "type",
    onchange: (e) => { location.hash = "#/entities" + (e.target.value ? "?type=" + e.target.value : ""); } },
    h("option", { value: "" }, "every type"), Object.entries(ENTITY_TYPES).map(([k, label]) => h("option", { value: k, selected: k === type }, label)))));
  main.replaceChildren(h("h1", {}, "Entities by risk"), filter, h("div", { class: "card" },
    h("table", { id: "entities" }, h("thead", {}, h("tr", {}, h("th", {}, "Entity"), h("th", {}, "Type"), h("th", {}, "Level"),
      h("th", { class: "num" }, "Risk"), h("th", { class: "num" }, "Points"), h("th", { class: "num" }, "Open"))),
      h("tbody", {}, (list.entities || []).map((e) => h("tr", {}, h("td", {}, entityLink(e.entity)), h("td", {}, entityType(e.entity)),
        h("td", {}, level(e.risk_level)), h("td", { class: "num" }, e.risk || 0), h("td", { class: "num" }, fmt(e.total_points)),
        h("td", { class: "num" }, e.open_anomalies || 0))))), nextPage(params, list.next_page_token)));
}

// Cursor pages as links: the hash keeps the filter and the page token, so Back returns to the page before.
function nextPage(params, token) {
  const [path] = location.hash.split("?");
  const at = (page) => { const p = new URLSearchParams(params); if (page) p.set("page", page); else p.delete("page");
    return `${path}?${p}`; };
  return h("div", { class: "pager" }, params.get("page") ? h("a", { href: at("") }, "First page") : null,
    token ? h("a", { href: at(token), id: "next-page" }, "Next page") : null);
}

async function entityPage(type, name) {
  const entity = { type: "ENTITY_TYPE_" + type.toUpperCase(), name };
  const [detail, timeline] = await Promise.all([call("query", "GetEntity", { entity, recent_limit: 50 }),
    call("query", "GetEntityTimeline", { entity, range: lastDays(30), bucket_seconds: 86400 })]);
  const risk = detail.risk || {};
  const chart = h("div", { class: "chart small", id: "entity-timeline", role: "img", "aria-label": "Risk points per day" });
  main.replaceChildren(h("h1", {}, `${ENTITY_TYPES[type] ? type : "entity"} `, h("span", { id: "entity-name" }, name),
    type === "user" ? h("small", {}, " · ", h("a", { href: "#/users/" + encodeURIComponent(name) }, "user page")) : null),
  h("div", { class: "grid" },
    h("div", { class: "card span3" }, h("div", { class: "muted" }, "Current risk"),
      h("div", { class: "kpi" }, h("span", { id: "entity-risk" }, risk.risk || 0), " ", level(risk.risk_level)),
      h("div", { class: "muted" }, `${fmt(risk.total_points)} points from ${risk.open_anomalies || 0} open`)),
    h("div", { class: "card span4" }, h("div", { class: "muted" }, "Seen"), h("div", {}, when(detail.first_seen), " … ", when(detail.last_seen))),
    h("div", { class: "card span5" }, h("div", { class: "muted" }, type === "user" ? "Sources of its incidents" : "Accounts it touched"),
      h("div", { id: "entity-linked" }, (detail.linked || []).length ? (detail.linked || []).flatMap((n, i) =>
        [i ? ", " : "", type === "user" ? n : userLink(n)]) : "-")),
    h("div", { class: "card span12" }, h("h2", {}, "Risk points per day, last 30 days"), chart),
    h("div", { class: "card span12" }, h("h2", {}, "Open incidents"), incidentTable(detail.open_incidents || [], "entity-incidents")),
    h("div", { class: "card span12" }, h("h2", {}, "Recent anomalies"), anomalyTable(detail.recent_anomalies || [], null))));
  const buckets = timeline.buckets || [];
  timeChart(chart, buckets.map((b) => Date.parse(b.start) / 1000), [
    { label: "Risk points", stroke: "#1f5fbf", fill: "rgba(31,95,191,.12)", data: buckets.map((b) => num(b.risk_points)) }]);
}

// ---- Incidents ------------------------------------------------------------------------------
function incidentTable(incidents, id) {
  return h("table", { id }, h("thead", {}, h("tr", {}, h("th", {}, "Last seen"), h("th", {}, "Incident"), h("th", {}, "About"),
    h("th", {}, "Level"), h("th", { class: "num" }, "Score"), h("th", { class: "num" }, "Findings"), h("th", { class: "num" }, "Events"),
    h("th", {}, "Status"))),
  h("tbody", {}, incidents.map((i) => h("tr", { "data-id": i.id }, h("td", {}, when(i.last_seen)), h("td", {}, incidentLink(i)),
    h("td", {}, entityLink(i.entity)), h("td", {}, level(i.risk_level)), h("td", { class: "num" }, i.risk_score || 0),
    h("td", { class: "num" }, i.anomaly_count || 0), h("td", { class: "num" }, fmt(i.event_count)), h("td", {}, statusWord(i.status))))));
}

async function incidentsPage(params) {
  const status = params.get("status") ?? "new";
  const order = params.get("order") || "time desc";
  const list = await call("query", "ListIncidents", { page_size: 100, order_by: order, page_token: params.get("page") || "",
    ...(status ? { statuses: ["ANOMALY_STATUS_" + status.toUpperCase()] } : {}) });
  const go = (form) => { location.hash = `#/incidents?status=${form.status.value}&order=${encodeURIComponent(form.order.value)}`; };
  const form = h("form", { class: "filters", id: "incident-filters" },
    h("label", {}, "Status", h("select", { name: "status", onchange: (e) => go(e.target.form) }, h("option", { value: "" }, "any"),
      STATUSES.map((s) => h("option", { value: s, selected: s === status }, s.replace("_", " "))))),
    h("label", {}, "Order", h("select", { name: "order", onchange: (e) => go(e.target.form) },
      [["time desc", "last seen"], ["risk desc", "risk"]].map(([v, label]) => h("option", { value: v, selected: v === order }, label)))));
  main.replaceChildren(h("h1", {}, "Incidents"), form, h("div", { class: "card" }, incidentTable(list.incidents || [], "incidents"),
    nextPage(params, list.next_page_token)));
}

async function incidentPage(id) {
  const detail = await call("query", "GetIncident", { id });
  const incident = detail.incident || {};
  const evidence = incident.evidence || {};
  const review = async (action, label) => {
    if (!(await confirmDialog(`${label}: this incident and its ${incident.anomaly_count || 0} findings?`))) return;
    try {
      const result = await call("query", "ReviewIncidents", { action: "REVIEW_ACTION_" + action, ids: [id] });
      busy(`${result.anomalies_updated || 0} findings updated`);
      await incidentPage(id);
    } catch (err) { showError(err); }
  };
  const openCase = async () => {
    try {
      const opened = await call("cases", "OpenCase", { incident_ids: [id] });
      location.hash = "#/cases/" + encodeURIComponent(opened.id);
    } catch (err) { showError(err); }
  };
  main.replaceChildren(h("h1", {}, "Incident: ", h("span", { id: "incident-title" }, incident.title || incident.kind)),
    h("div", { class: "toolbar" }, [["ACKNOWLEDGE", "Acknowledge"], ["RESOLVE", "Resolve"], ["FALSE_POSITIVE", "False positive"]]
      .map(([a, label]) => h("button", { type: "button", "data-action": a, onclick: () => review(a, label) }, label)),
      h("button", { type: "button", id: "open-case", onclick: openCase }, "Open a case")),
    h("div", { class: "grid" },
      h("div", { class: "card span4" }, facts([["About", entityLink(incident.entity)], ["Level", level(incident.risk_level)],
        ["Score", incident.risk_score || 0], ["Status", h("span", { id: "incident-status" }, statusWord(incident.status))],
        ["Kind", incident.kind], ["Dimension", incident.dimension]])),
      h("div", { class: "card span8" }, facts([["First seen", when(incident.first_seen)], ["Last seen", when(incident.last_seen)],
        ["Events", fmt(incident.event_count)], ["Findings", incident.anomaly_count || 0],
        ["Accounts", (evidence.accounts || []).map((n, i) => [i ? ", " : "", userLink(n)])],
        ["Sources", (evidence.sources || []).join(", ") || "-"],
        ["Reviewed", incident.reviewed_by ? `${incident.reviewed_by} at ${when(incident.reviewed_at)}` : "-"]])),
      h("div", { class: "card span12" }, h("h2", {}, "Findings"), anomalyTable(detail.anomalies || [], null))));
}

// ---- Cases ----------------------------------------------------------------------------------
const CASE_STATUSES = ["new", "in_progress", "closed"];
const REASONS = [["FALSE_POSITIVE", "false positive"], ["TRUE_POSITIVE", "true positive"], ["BENIGN", "benign"]];
const caseStatus = (s) => short(s, "CASE_STATUS_").toLowerCase().replace("_", " ");
const caseLink = (c) => h("a", { href: "#/cases/" + encodeURIComponent(c.id) }, c.title || c.id);

async function casesPage(params) {
  const status = params.get("status") ?? "open";
  const owner = params.get("owner") || "";
  const statuses = status === "open" ? ["new", "in_progress"] : status ? [status] : [];
  const list = await call("cases", "ListCases", { page_size: 100, owner, page_token: params.get("page") || "",
    statuses: statuses.map((s) => "CASE_STATUS_" + s.toUpperCase()) });
  const go = (form) => {
    location.hash = `#/cases?status=${form.status.value}&owner=${encodeURIComponent(form.owner.value.trim())}`;
  };
  const form = h("form", { class: "filters", id: "case-filters", onsubmit: (e) => { e.preventDefault(); go(e.target); } },
    h("label", {}, "Status", h("select", { name: "status", onchange: (e) => go(e.target.form) },
      [["open", "open"], ["", "any"], ...CASE_STATUSES.map((s) => [s, s.replace("_", " ")])]
        .map(([v, label]) => h("option", { value: v, selected: v === status }, label)))),
    h("label", {}, "Owner", h("input", { name: "owner", value: owner, placeholder: "anyone" })),
    h("button", { type: "submit" }, "Filter"));
  const cases = list.cases || [];
  main.replaceChildren(h("h1", {}, "Cases"), form, h("div", { class: "card" },
    h("table", { id: "cases" }, h("thead", {}, h("tr", {}, h("th", {}, "Changed"), h("th", {}, "Case"), h("th", {}, "Severity"),
      h("th", {}, "Status"), h("th", {}, "Owner"), h("th", { class: "num" }, "Incidents"), h("th", { class: "num" }, "Comments"))),
    h("tbody", {}, cases.map((c) => h("tr", { "data-id": c.id }, h("td", {}, when(c.updated_at)), h("td", {}, caseLink(c)),
      h("td", {}, level(c.severity)), h("td", {}, caseStatus(c.status)), h("td", {}, c.owner || "-"),
      h("td", { class: "num" }, (c.incident_ids || []).length), h("td", { class: "num" }, c.comments || 0))))),
    cases.length ? null : h("p", { class: "muted" }, "No case matches. Open one from an incident's page."),
    nextPage(params, list.next_page_token)));
}

async function casePage(id) {
  const detail = await call("cases", "GetCase", { id });
  const kase = detail.case || {};
  const incidents = detail.incidents || [];
  const closed = kase.status === "CASE_STATUS_CLOSED";
  const findings = incidents.reduce((n, i) => n + num(i.anomaly_count), 0);
  const result = h("div", { id: "case-result", role: "status" });
  const act = async (method, body, done) => {
    try {
      const out = await call("cases", method, { id, ...body });
      await casePage(id);
      if (done) document.getElementById("case-result").replaceChildren(...done(out));
    } catch (err) { showError(err, result); }
  };
  const comment = h("textarea", { id: "case-comment", rows: 3, "aria-label": "Comment" });
  const owner = h("input", { id: "case-owner", value: kase.owner || "", "aria-label": "Owner" });
  const reason = h("select", { id: "close-reason", "aria-label": "Reason" },
    REASONS.map(([v, label]) => h("option", { value: v }, label)));
  const closeNote = h("input", { id: "close-comment", "aria-label": "Closing comment", placeholder: "why (optional)" });
  const close = async () => {
    const label = REASONS.find(([v]) => v === reason.value)[1];
    const marks = reason.value === "FALSE_POSITIVE"
      ? `it will mark ${plural(findings, "finding")} of ${plural(incidents.length, "incident")} as false positive`
      : "the findings keep their status";
    if (!(await confirmDialog(`Close as ${label}: ${marks}?`))) return;
    await act("CloseCase", { reason: "CLOSE_REASON_" + reason.value, comment: closeNote.value }, (out) => [
      h("p", {}, `Closed as ${label}; ${plural(out.anomalies_updated || 0, "finding")} marked false positive.`),
      (out.risk_changes || []).length ? h("ul", { id: "risk-changes" }, out.risk_changes.map((r) => h("li", { "data-user": r.user },
        userLink(r.user), `: risk ${r.risk_before || 0} → ${r.risk_after || 0}`))) : null]);
  };
  const reopen = () => act("UpdateCase", { update_mask: ["status"], status: "CASE_STATUS_IN_PROGRESS" });
  main.replaceChildren(h("h1", {}, "Case: ", h("span", { id: "case-title" }, kase.title || kase.id)),
    h("div", { class: "grid" },
      h("div", { class: "card span4" }, facts([["Status", h("span", { id: "case-status" }, caseStatus(kase.status))],
        ["Reason", short(kase.close_reason, "CLOSE_REASON_").toLowerCase().replace("_", " ") || "-"],
        ["Severity", level(kase.severity)], ["Owner", kase.owner || "-"], ["Opened by", kase.created_by],
        ["Opened", when(kase.created_at)], ["Closed", when(kase.closed_at) || "-"]])),
      h("div", { class: "card span8" }, h("h2", {}, "Work"), result,
        h("form", { class: "toolbar", id: "comment-form", onsubmit: (e) => {
          e.preventDefault();
          if (comment.value.trim()) act("CommentCase", { text: comment.value.trim() });
        } }, comment, h("button", { type: "submit" }, "Comment")),
        closed ? h("div", { class: "toolbar" }, h("button", { type: "button", id: "reopen", onclick: reopen }, "Reopen")) : [
          h("form", { class: "toolbar", id: "assign-form", onsubmit: (e) => {
            e.preventDefault();
            act("UpdateCase", { update_mask: ["owner"], owner: owner.value.trim() });
          } }, h("label", {}, "Owner ", owner), h("button", { type: "submit" }, "Assign")),
          h("form", { class: "toolbar", id: "close-form", onsubmit: (e) => { e.preventDefault(); close(); } },
            h("label", {}, "Close as ", reason), closeNote, h("button", { type: "submit", id: "close-case" }, "Close case"),
            h("span", { class: "muted", id: "close-count" }, `${plural(findings, "finding")} in ${plural(incidents.length, "incident")}`))]),
      h("div", { class: "card span12" }, h("h2", {}, "Incidents"), incidentTable(incidents, "case-incidents")),
      h("div", { class: "card span12" }, h("h2", {}, "Timeline"), h("ol", { id: "case-timeline", class: "timeline" },
        (detail.timeline || []).map((e) => h("li", { "data-kind": e.kind, "data-actor": e.actor },
          h("time", {}, when(e.at)), " ", h("strong", { class: "actor" }, e.actor), " ", h("span", { class: "kind" }, e.kind.replace("_", " ")),
          e.text ? [": ", h("span", { class: "text" }, e.text)] : null))))));
}

// ---- Profiles -----------------------------------------------------------------------------
async function profilesPage() {
  const list = await call("profiles", "ListProfiles", { page_size: 200 });
  const editor = h("div", { id: "profile-editor" });
  main.replaceChildren(h("h1", {}, "Profiles"), h("div", { class: "grid" },
    h("div", { class: "card span12" }, h("table", { id: "profiles" },
      h("thead", {}, h("tr", {}, h("th", {}, "Enabled"), h("th", {}, "Name"), h("th", {}, "Kind"), h("th", {}, "Dimension"),
        h("th", { class: "num" }, "Risk score"), h("th", {}, ""))),
      h("tbody", {}, (list.profiles || []).map((p) => h("tr", { "data-id": p.id },
        h("td", {}, h("input", { type: "checkbox", checked: !!p.enabled, "aria-label": `${p.name} enabled`,
          onchange: (e) => setEnabled(p, e.target) })),
        h("td", {}, p.name), h("td", {}, short(p.kind, "PROFILE_KIND_").toLowerCase()), h("td", {}, p.dimension),
        h("td", { class: "num" }, p.risk_score), h("td", {}, h("button", { type: "button", onclick: () => tune(p, editor) }, "Tune"))))))),
    h("div", { class: "card span12" }, editor)));
  editor.append(h("p", { class: "muted" }, "Choose Tune on a profile to change its parameters and preview them over past events."));
}

async function setEnabled(profile, box) {
  try {
    await call("profiles", "SetProfileEnabled", { id: profile.id, enabled: box.checked });
    busy(`${profile.name} ${box.checked ? "enabled" : "disabled"}`);
  } catch (err) { box.checked = !box.checked; showError(err); }
}

function tune(profile, editor) {
  const params = profile.parameters || {};
  const inputs = Object.entries(params).map(([key, value]) => h("label", {}, key,
    h("input", { name: key, "data-kind": typeof value, value: typeof value === "object" ? JSON.stringify(value) : String(value) })));
  const risk = h("input", { type: "number", min: 1, max: 100, name: "risk_score", value: profile.risk_score });
  const result = h("div", { id: "preview-result" });
  const edited = () => {
    const parameters = {};
    for (const label of inputs) {
      const input = label.querySelector("input");
      const kind = input.dataset.kind;
      parameters[input.name] = kind === "number" ? Number(input.value) : kind === "boolean" ? input.value === "true"
        : kind === "object" ? JSON.parse(input.value) : input.value;
    }
    return { ...profile, risk_score: Number(risk.value), parameters };
  };
  const preview = async () => {
    result.replaceChildren(h("p", { class: "loading" }, "Running over the last 30 days…"));
    try {
      const out = await call("profiles", "PreviewProfile", { profile: edited(), range: lastDays(30), max_anomalies: 20 });
      result.replaceChildren(h("p", { id: "preview-count" }, `Would have raised ${fmt(out.total_anomalies)} anomalies from ${fmt(out.events_examined)} events.`),
        anomalyTable(out.anomalies || [], null));
    } catch (err) { result.replaceChildren(); showError(err, result); }
  };
  const save = async () => {
    try {
      await call("profiles", "UpdateProfile", { profile: edited(), update_mask: ["risk_score", "parameters"] });
      busy(`${profile.name} saved`);
      await profilesPage();
    } catch (err) { showError(err, result); }
  };
  editor.replaceChildren(h("h2", {}, `Tune ${profile.name}`), h("p", { class: "muted" }, profile.description || ""),
    h("div", { class: "params" }, h("label", {}, "risk score", risk), ...inputs),
    h("div", { class: "toolbar" }, h("button", { type: "button", id: "preview", onclick: preview }, "Preview over history"),
      h("button", { type: "button", class: "primary", id: "save-profile", onclick: save }, "Save")), result);
  editor.scrollIntoView({ block: "start" });
  risk.focus();
}

// ---- routing and sign-in ------------------------------------------------------------------
function login() {
  const dialog = document.getElementById("login");
  if (!dialog.open) dialog.showModal();
}

document.getElementById("login-form").addEventListener("submit", () => {
  sessionStorage.setItem("ueba-token", document.getElementById("login-token").value.trim());
  document.getElementById("logout").hidden = false;
  route();
});
document.getElementById("logout").addEventListener("click", () => { sessionStorage.removeItem("ueba-token"); location.reload(); });

// Without tokens nothing names the analyst: the pages ask for a name to act under.
function actorField() {
  const input = document.getElementById("actor");
  input.value = localStorage.getItem("ueba-actor") || "";
  input.addEventListener("change", () => {
    const name = input.value.trim();
    if (name) localStorage.setItem("ueba-actor", name); else localStorage.removeItem("ueba-actor");
  });
  document.getElementById("actor-field").hidden = false;
}

async function route() {
  const [path, query] = (location.hash.slice(1) || "/summary").split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  document.querySelectorAll("nav a").forEach((a) => a.toggleAttribute("aria-current", a.dataset.page === parts[0]));
  document.querySelectorAll("nav a[aria-current]").forEach((a) => a.setAttribute("aria-current", "page"));
  busy("Loading…");
  main.setAttribute("aria-busy", "true");
  try {
    if (parts[0] === "anomalies" && parts[1]) await anomalyPage(decodeURIComponent(parts[1]));
    else if (parts[0] === "anomalies") await anomaliesPage(params);
    else if (parts[0] === "entities" && parts[2]) await entityPage(parts[1], decodeURIComponent(parts[2]));
    else if (parts[0] === "entities") await entitiesPage(params);
    else if (parts[0] === "incidents" && parts[1]) await incidentPage(decodeURIComponent(parts[1]));
    else if (parts[0] === "incidents") await incidentsPage(params);
    else if (parts[0] === "cases" && parts[1]) await casePage(decodeURIComponent(parts[1]));
    else if (parts[0] === "cases") await casesPage(params);
    else if (parts[0] === "users" && parts[1]) await userPage(decodeURIComponent(parts[1]), params);
    else if (parts[0] === "profiles") await profilesPage();
    else await summaryPage();
    busy("");
  } catch (err) { showError(err); }
  main.removeAttribute("aria-busy");
  main.dataset.page = parts[0] || "summary";
  main.dataset.ready = String(Date.now());
}

(async () => {
  const config = await (await fetch("/api/v1/config")).json();
  document.getElementById("logout").hidden = !sessionStorage.getItem("ueba-token");
  window.addEventListener("hashchange", route);
  if (config.auth === "off") actorField();
  if (config.auth !== "off" && !sessionStorage.getItem("ueba-token")) login();
  else route();
})();
