// The dashboard's charts in words: each chart's aria-label, since a canvas says nothing to a screen reader.
// Uses the formats of format.js and the labels of dashboard.js.
"use strict";

function utcBucket(t, step) {
  const iso = new Date(t * 1000).toISOString();
  return step >= 86400 ? iso.slice(0, 10) : iso.slice(0, 16).replace("T", " ") + " UTC";
}
// The bucket with the highest value, as "<value> (<its time>)"; "" when there is none.
function highest(stats, values, format) {
  let best = -1;
  values.forEach((v, i) => { if (v !== null && v !== undefined && (best < 0 || v > values[best])) best = i; });
  return best < 0 ? "" : format(values[best]) + " (" + utcBucket(stats.series[best].t, stats.bucket_s) + ")";
}
function describeCharts(stats) {
  const t = stats.totals, s = stats.series;
  const label = (name, text) => document.getElementById("chart-" + name).setAttribute("aria-label", text);
  const per = BUCKET_NAMES[stats.bucket_s] || stats.bucket_s + " s";
  const over = " over the " + WINDOW_LABELS[stats.window];
  const peak = highest(stats, s.map((p) => p.spend_usd), usd);
  label("spend", "Spend by route per " + per + over + ": " + usd(t.spend_usd) + " in all (" +
    joinCounts(t.spend_by_route, usd) + ")" + (peak ? "; highest " + peak : "") + "; mixture on everything " +
    usd(t.counterfactual_usd) + ".");
  label("savings", "Savings, cumulative" + over + ": " + usd(t.saved_usd) + " saved vs mixture on everything, " +
    usd(t.cache.saved_usd) + " saved by the cache.");
  const escalation = highest(stats, s.map((p) => p.escalation_rate), pct) || "—";
  label("rates", "Escalation rate " + pct(t.escalation_rate) + " and cache hit rate " + pct(t.cache.hit_rate) +
    over + "; highest escalation rate in a " + per + " " + escalation + ".");
  const routes = ["cheap", "mixture", "strong"].filter((r) => t.latency_ms[r])
    .map((r) => r + " p95 " + ms(t.latency_ms[r].p95));
  const slowest = highest(stats, s.map((p) => p.latency_ms.all.p95), ms) || "—";
  label("latency", "Latency" + over + ": p50 " + ms(t.latency_ms.all.p50) + ", p95 " + ms(t.latency_ms.all.p95) +
    (routes.length ? " (" + routes.join(", ") + ")" : "") + "; highest p95 in a " + per + " " + slowest + ".");
}
