// How the dashboard formats numbers. `moa-router report` (router/commands/report.py) formats them by the
// same rules, and tests/test_dashboard_browser.py checks the page against them.
"use strict";

function withCommas(text) {
  const [whole, frac] = text.split(".");
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return frac === undefined ? grouped : grouped + "." + frac;
}
function usd(v) {
  if (v === null || v === undefined) return "—";
  const a = Math.abs(v);
  const digits = a === 0 || a >= 1 ? 2 : a >= 0.01 ? 4 : 6;
  return (v < 0 ? "−$" : "$") + withCommas(a.toFixed(digits));
}
function pct(r) { return r === null || r === undefined ? "—" : (r * 100).toFixed(1) + "%"; }
function count(n) { return n === null || n === undefined ? "—" : withCommas(String(Math.round(n))); }
function ms(v) {
  if (v === null || v === undefined) return "—";
  return v >= 1000 ? (v / 1000).toFixed(2) + " s" : Math.round(v) + " ms";
}
