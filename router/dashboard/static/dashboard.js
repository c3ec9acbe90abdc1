// The dashboard: fetches /v1/stats and draws it. No build step; uPlot is vendored beside this file, and
// format.js (number formats) and describe.js (the charts in words) are loaded before this one.
"use strict";

const REFRESH_MS = 15000;
const COLORS = { cheap: "#2e9d6b", mixture: "#6e4fd8", strong: "#e08a1e", shadow: "#98a2b3",
  counterfactual: "#c8372d", saved: "#1f7a4d", cache: "#0e9fb3", all: "#1d2330" };
const WINDOW_LABELS = { hour: "last hour", day: "last 24 hours", week: "last 7 days", "30d": "last 30 days" };
const charts = {};
let current = null; // the last stats shown
let lastGood = null;
let announced = ""; // the last message for screen readers

// ---- fetching ----
function windowName() {
  const m = /window=([a-z0-9]+)/.exec(location.hash);
  return m && WINDOW_LABELS[m[1]] ? m[1] : "hour";
}
function adminKey() { return sessionStorage.getItem("moa-admin-key") || ""; }

// Screen readers hear the page's state when it changes (stats shown for a window, unavailable, a key
// needed), not the status line rewritten by every refresh.
function announce(text) {
  if (text === announced) return;
  announced = text;
  document.getElementById("announce").textContent = text;
}

async function load() {
  const wanted = windowName();
  const headers = {};
  if (adminKey()) headers.authorization = "Bearer " + adminKey();
  const status = document.getElementById("status");
  let response;
  try {
    response = await fetch("/v1/stats?window=" + wanted + "&top=10", { headers, cache: "no-store" });
  } catch (err) {
    return windowName() === wanted && showStale("the service did not answer");
  }
  // Another window was chosen meanwhile: its own load shows it (a late answer must not cover it).
  if (windowName() !== wanted) return;
  if (response.status === 401 || response.status === 403) {
    document.getElementById("keyform").hidden = false;
    document.getElementById("keyerror").textContent = adminKey() ? "that key was refused" : "";
    status.textContent = "admin key needed";
    announce(adminKey() ? "the admin key was refused" : "this service needs its admin key to show stats");
    return;
  }
  const body = await response.json().catch(() => null);
  if (windowName() !== wanted) return;
  if (!response.ok || body === null) {
    return showStale(body && body.error ? body.error.message : "HTTP " + response.status);
  }
  document.getElementById("keyform").hidden = true;
  lastGood = new Date();
  render(body);
  status.classList.remove("stale");
  status.textContent = "updated " + lastGood.toLocaleTimeString() + " · classifier " + body.classifier_version +
    " · refreshes every " + REFRESH_MS / 1000 + " s";
  announce("showing the " + WINDOW_LABELS[body.window]);
}

function showStale(reason) {
  const status = document.getElementById("status");
  status.classList.add("stale");
  // What is on the page is kept only when it is the chosen window's: another window's numbers would pass
  // for this one's.
  const kept = current !== null && current.window === windowName();
  if (!kept) clearShown();
  status.textContent = "stats unavailable: " + reason + (kept ? " — showing " + lastGood.toLocaleTimeString() : "");
  announce("stats unavailable: " + reason + (kept ? "; showing those of " + lastGood.toLocaleTimeString() : ""));
}

function clearShown() {
  current = null;
  for (const el of document.querySelectorAll("[data-figure]")) {
    el.textContent = "—";
    el.dataset.value = "";
  }
  for (const id of ["spend-sub", "cache-sub", "errors-sub", "escalation-sub", "latency-sub", "mixture-sub", "budget-sub"]) {
    setText(id, "");
  }
  document.getElementById("budget-meter").style.width = "0";
  for (const id of ["empty", "charts", "tables"]) document.getElementById(id).hidden = true;
  delete document.body.dataset.window;
}

// ---- headline figures ----
function setFigure(key, value, format) {
  for (const el of document.querySelectorAll('[data-figure="' + key + '"]')) {
    el.textContent = format(value);
    el.dataset.value = value === null || value === undefined ? "" : String(value);
  }
}
function setText(id, text) { document.getElementById(id).textContent = text; }
function joinCounts(map, format) {
  const parts = Object.entries(map || {}).sort((a, b) => b[1] - a[1]).map(([k, v]) => k + " " + format(v));
  return parts.length ? parts.join(" · ") : "none";
}

function renderFigures(stats) {
  const t = stats.totals;
  setFigure("spend_usd", t.spend_usd, usd);
  setText("spend-sub", joinCounts(t.spend_by_route, usd));
  setFigure("saved_usd", t.saved_usd, usd);
  // A loss (shadow runs, or a mixture costlier than its estimate) must not look like a saving.
  document.querySelector('[data-figure="saved_usd"]').classList.toggle("warn", t.saved_usd < 0);
  setFigure("saved_rate", t.saved_rate, pct);
  setFigure("counterfactual_usd", t.counterfactual_usd, usd);
  setFigure("cache_saved_usd", t.cache.saved_usd, usd);
  setFigure("cache_hit_rate", t.cache.hit_rate, pct);
  setText("cache-sub", count(t.cache.hit) + " hits, " + count(t.cache.miss) + " misses, " +
    count(t.cache.bypass) + " bypassed");
  setFigure("requests", t.requests, count);
  setFigure("error_rate", t.error_rate, pct);
  // A client that left before its answer (499) was not refused: it is counted apart.
  setText("errors-sub", count(t.errors) + " failed, " + count(t.refused) + " refused (4xx), " +
    count(t.client_left) + " left before their answer");
  setFigure("escalation_rate", t.escalation_rate, pct);
  // The rate's own denominator: requests that were routed (not those refused or failed before routing).
  const routed = Object.entries(t.routes).reduce((sum, [r, n]) => (r === "none" ? sum : sum + n), 0);
  setText("escalation-sub", count(t.routes.mixture || 0) + " of " + count(routed) + " routed requests" +
    (t.budget_degraded ? " · " + count(t.budget_degraded) + " held back by the budget" : ""));
  setFigure("latency_p50", t.latency_ms.all.p50, ms);
  setFigure("latency_p95", t.latency_ms.all.p95, ms);
  const byRoute = ["cheap", "mixture", "strong"].filter((r) => t.latency_ms[r])
    .map((r) => r + " p95 " + ms(t.latency_ms[r].p95));
  setText("latency-sub", byRoute.length ? byRoute.join(" · ") : "no answered requests");
  setFigure("proposer_failures", t.proposer_failures, count);
  document.querySelector('[data-figure="proposer_failures"]').classList.toggle("warn", t.quorum_failures > 0);
  setText("mixture-sub", "proposer failures · " + count(t.quorum_failures) + " quorum failures · " +
    count(t.aggregator_fallbacks) + " aggregator fallbacks");
  renderBudget(stats.budget);
}

// Tenants over their cap, of all tenants (older replicas list only the top ones and no count).
function overCap(period) {
  const count = period.tenants_over_cap;
  return count === undefined ? period.tenants.filter((x) => x.over_cap).length : count;
}

function renderBudget(budget) {
  const meter = document.getElementById("budget-meter");
  if (!budget) {
    setFigure("budget", null, () => "no cap");
    meter.style.width = "0";
    setText("budget-sub", "set budget.mixture_daily_usd or budget.mixture_monthly_usd to cap mixture spend");
    return;
  }
  const month = budget.month || null;  // absent from older replicas
  const allowed = budget.mixture_allowed && (!month || month.mixture_allowed);
  setFigure("budget", budget.mixture_spent_usd, usd);
  // The meter shows whichever overall cap is nearer: the day's or the month's.
  const rates = [budget.used_rate, month ? month.used_rate : null].filter((r) => r !== null && r !== undefined);
  const used = rates.length ? Math.min(1, Math.max(...rates)) : 0;
  meter.style.width = (used * 100).toFixed(1) + "%";
  meter.classList.toggle("over", !allowed);
  const parts = [];
  if (budget.mixture_cap_usd !== null) parts.push(pct(budget.used_rate) + " of " + usd(budget.mixture_cap_usd));
  if (budget.per_tenant_cap_usd !== null) {
    const over = overCap(budget);
    parts.push(usd(budget.per_tenant_cap_usd) + " per tenant, " + over + " over");
  }
  if (month && (month.mixture_cap_usd !== null || month.per_tenant_cap_usd !== null)) {
    let text = "this month " + usd(month.mixture_spent_usd);
    if (month.mixture_cap_usd !== null) text += ", " + pct(month.used_rate) + " of " + usd(month.mixture_cap_usd);
    if (month.per_tenant_cap_usd !== null) {
      const over = overCap(month);
      text += ", " + usd(month.per_tenant_cap_usd) + " per tenant, " + over + " over";
    }
    parts.push(text);
  }
  parts.push(allowed ? "mixture allowed" : "capped: escalations go to " + budget.fallback);
  setText("budget-sub", parts.join(" · "));
}

// ---- charts ----
function chartWidth(el) { return Math.max(200, el.clientWidth); }

// Axis ticks: short, so that they fit beside the plot.
function axisUsd(v) { return v === 0 ? "$0" : "$" + String(+v.toPrecision(2)); }
function axisPct(v) { return +(v * 100).toFixed(1) + "%"; }
function axisMs(v) { return v >= 1000 ? +(v / 1000).toFixed(2) + " s" : +v.toPrecision(3) + " ms"; }

// One chart. Each series: {label, color, values, dash?, bars?, fill?, shown?}; `shown` is what the legend
// prints for a point (stacked bars draw cumulative values but show their own).
function draw(name, stats, series, format, axis, yRange) {
  const el = document.getElementById("chart-" + name);
  if (charts[name]) charts[name].destroy();
  const step = stats.bucket_s;
  const x = stats.series.map((p) => p.t);
  const bars = uPlot.paths.bars({ size: [0.75, 48] });
  const opts = {
    width: chartWidth(el), height: 230,
    // In UTC: the buckets are UTC minutes, hours and days (a day bucket drawn in local time sat on the
    // day before, west of Greenwich), as are the budget's day and month.
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
    // Half a bucket of room on each side, so the first and last bars are whole.
    scales: {
      x: { time: true, range: (u, min, max) => [min - step / 2, max + step / 2] },
      // From zero, so that heights compare; a little headroom above the highest point.
      y: { range: yRange || ((u, min, max) => [Math.min(0, min), max > 0 ? max * 1.1 : 1]) },
    },
    series: [{ label: "time" }, ...series.map((s) => ({
      label: s.label, stroke: s.color, width: s.bars ? 0 : 2, dash: s.dash, spanGaps: true,
      fill: s.bars ? s.color : s.fill ? s.color + "22" : undefined,
      paths: s.bars ? bars : undefined,
      points: { show: !s.bars && s.points !== false, size: 5, fill: s.color },
      value: (u, v, si, i) => {
        const raw = s.shown ? s.shown[i] : v;
        return raw === null || raw === undefined ? "—" : format(raw);
      },
    }))],
    axes: [{ grid: { stroke: "#eef0f3" } },
      { size: 64, grid: { stroke: "#eef0f3" }, values: (u, vals) => vals.map(axis) }],
    legend: { live: true },
    hooks: { draw: [(u) => { el.dataset.rendered = String(u.data[0].length); }] },
  };
  charts[name] = new uPlot(opts, [x, ...series.map((s) => s.values)], el);
}

const BUCKET_NAMES = { 60: "minute", 3600: "hour", 86400: "day" };

function renderCharts(stats) {
  const s = stats.series;
  setText("spend-per", "per " + (BUCKET_NAMES[stats.bucket_s] || stats.bucket_s + " s"));
  const busy = (p) => p.requests > 0 || p.spend_usd > 0;
  // Spend per route as stacked bars: each bar is drawn to the running total, the largest first.
  const routes = ["cheap", "mixture", "strong", "shadow"].filter((r) => s.some((p) => p.spend_by_route[r] > 0));
  let below = s.map(() => 0);
  const stacked = routes.map((r) => {
    const own = s.map((p) => p.spend_by_route[r]);
    below = below.map((b, i) => b + own[i]);
    return { label: r, color: COLORS[r], bars: true, values: below.slice(), shown: own };
  }).reverse();
  draw("spend", stats, [...stacked, { label: "mixture on everything", color: COLORS.counterfactual, dash: [6, 4],
    values: s.map((p) => (busy(p) ? p.counterfactual_usd : null)) }], usd, axisUsd);
  let saved = 0, cache = 0;
  draw("savings", stats, [
    { label: "saved vs mixture on everything", color: COLORS.saved, fill: true, points: false, values: s.map((p) => (saved += p.saved_usd)) },
    { label: "saved by the cache", color: COLORS.cache, fill: true, points: false, values: s.map((p) => (cache += p.cache_saved_usd)) },
  ], usd, axisUsd);
  draw("rates", stats, [
    { label: "escalation", color: COLORS.mixture, values: s.map((p) => p.escalation_rate) },
    { label: "cache hits", color: COLORS.cache, values: s.map((p) => p.cache_hit_rate) },
  ], pct, axisPct, [0, 1]);
  const latency = [{ label: "p50 all", color: COLORS.all, key: ["all", "p50"] },
    { label: "p95 all", color: COLORS.all, dash: [6, 4], key: ["all", "p95"] },
    ...["cheap", "mixture", "strong"].filter((r) => stats.totals.latency_ms[r])
      .map((r) => ({ label: "p95 " + r, color: COLORS[r], key: [r, "p95"] }))];
  draw("latency", stats, latency.map((l) => ({ ...l, values: s.map((p) => p.latency_ms[l.key[0]][l.key[1]]) })),
    ms, axisMs);
  describeCharts(stats);
}

// ---- tables ----
function cell(row, text, cls, title) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  if (title) td.title = title;
  return td;
}
function pill(row, route, reason) {
  const td = row.insertCell();
  const span = document.createElement("span");
  span.className = "pill " + route;
  span.textContent = route;
  td.append(span, reason ? " " + reason : "");
}
function ago(t) {
  const s = Math.max(0, Date.now() / 1000 - t);
  if (s < 60) return Math.round(s) + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  if (s < 86400) return (s / 3600).toFixed(1) + " h ago";
  return (s / 86400).toFixed(1) + " d ago";
}
// Three places: the calibrated thresholds sit close to 1 (0.982), and two would show 0.98 on both sides.
function score(v) { return v === null || v === undefined ? "—" : v.toFixed(3); }

function renderTables(stats) {
  const body = document.querySelector("#expensive tbody");
  body.replaceChildren();
  for (const r of stats.expensive) {
    const row = body.insertRow();
    cell(row, ago(r.t), "when", new Date(r.t * 1000).toLocaleString());
    cell(row, usd(r.cost_usd), "num");
    pill(row, r.route, r.reason);
    cell(row, r.models.map((m) => m.slice(m.indexOf("/") + 1)).join(", "), "models", r.models.join("\n"));
    cell(row, ms(r.latency_ms), "num");
    cell(row, r.tenant);
    cell(row, score(r.difficulty) + " · " + score(r.stakes), "num");
    cell(row, r.preview || "(not stored)", "prompt", r.preview || "");
    cell(row, r.request_id.replace(/^chatcmpl-/, "").slice(0, 12), "rid", r.request_id);
  }
  const models = document.querySelector("#models tbody");
  models.replaceChildren();
  const t = stats.totals;
  const entries = Object.entries(t.models).sort((a, b) => b[1].spend_usd - a[1].spend_usd);
  const modelRow = (section, name, figures, spend) => {
    const row = section.insertRow();
    cell(row, name);
    for (const n of figures) cell(row, n === null ? "—" : count(n), "num");
    cell(row, usd(spend), "num");
    return row;
  };
  for (const [name, m] of entries) {
    modelRow(models, name, [m.calls, m.errors, m.prompt_tokens, m.completion_tokens], m.spend_usd);
  }
  // Shadow evaluations are spend too, but their calls are not counted by model: a row of their own, so
  // that the rows add up to the total (the spend figure).
  if (t.shadow.runs || t.shadow.cost_usd) {
    const runs = "shadow evaluations (" + count(t.shadow.runs) + (t.shadow.runs === 1 ? " run)" : " runs)");
    modelRow(models, runs, [null, null, null, null], t.shadow.cost_usd).className = "shadow";
  }
  const footer = document.querySelector("#models tfoot");
  footer.replaceChildren();
  const sum = (key) => entries.reduce((total, [, m]) => total + m[key], 0);
  modelRow(footer, "Total", ["calls", "errors", "prompt_tokens", "completion_tokens"].map(sum), t.spend_usd);
  const facts = [
    ["Routes", joinCounts(t.routes, count)],
    ["Reasons", joinCounts(t.reasons, count)],
    ["Held back by the budget", count(t.budget_degraded)],
    ["Cache", count(t.cache.hit) + " hits · " + count(t.cache.miss) + " misses · " + count(t.cache.bypass) + " bypassed"],
    ["Failed (5xx) by code", joinCounts(t.failed_by_code, count)],
    ["Refused (4xx) by code", joinCounts(t.refused_by_code, count)],
    ["Proposer failures", count(t.proposer_failures) + " · quorum failures " + count(t.quorum_failures)],
    ["Shadow evaluations", t.shadow.runs ? count(t.shadow.runs) + " runs, " + count(t.shadow.judged) + " judged · cheap answer enough " +
      pct(t.shadow.cheap_enough_rate) + " · cost " + usd(t.shadow.cost_usd) : "none in this window"],
    ["Classifier versions", joinCounts(t.classifier_versions, count)],
    ["Escalation thresholds (active)", thresholdsText(stats.thresholds)],
  ];
  const table = document.querySelector("#facts tbody");
  table.replaceChildren();
  for (const [name, value] of facts) {
    const row = table.insertRow();
    cell(row, name);
    cell(row, value);
  }
}

function thresholdsText(th) {
  if (!th) return "—";
  return "difficulty ≥ " + score(th.difficulty) + ", or stakes ≥ " + score(th.stakes) +
    " with difficulty ≥ " + score(th.stakes_min_difficulty);
}

function render(stats) {
  current = stats;
  renderFigures(stats);
  const empty = stats.totals.requests === 0 && stats.totals.shadow.runs === 0;
  document.getElementById("empty").hidden = !empty;
  document.getElementById("charts").hidden = empty;
  document.getElementById("tables").hidden = empty;
  if (empty) {
    setText("empty-example", "curl " + location.origin + "/v1/chat/completions \\\n  -H 'content-type: application/json'" +
      " -H 'authorization: Bearer $KEY' \\\n  -d '{\"model\": \"moa-router\", \"messages\": [{\"role\": \"user\", " +
      "\"content\": \"Hello\"}]}'");
  } else {
    renderCharts(stats);
    renderTables(stats);
  }
  document.body.dataset.ready = "1";
  document.body.dataset.window = stats.window;
}

// ---- wiring ----
function selectWindow() {
  const name = windowName();
  for (const b of document.querySelectorAll("[data-window]")) {
    b.setAttribute("aria-pressed", String(b.dataset.window === name));
  }
  document.title = "moa-router · " + WINDOW_LABELS[name];
}

for (const b of document.querySelectorAll("[data-window]")) {
  b.addEventListener("click", () => { location.hash = "window=" + b.dataset.window; });
}
window.addEventListener("hashchange", () => { selectWindow(); load(); });
document.getElementById("keyform").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem("moa-admin-key", document.getElementById("adminkey").value.trim());
  load();
});
let resizeTimer = null;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => { if (current && !document.getElementById("charts").hidden) renderCharts(current); }, 150);
});
setInterval(() => { if (!document.hidden) load(); }, REFRESH_MS);
selectWindow();
load();
