// Polls /api/summary every two seconds and redraws: tiles, the revenue chart (Plotly), tables.
"use strict";

const money = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const count = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

function text(id, value) { document.getElementById(id).textContent = value; }

function fillTable(id, rows, columns) {
  const body = document.querySelector(`#${id} tbody`);
  body.replaceChildren(...rows.map((row) => {
    const tr = document.createElement("tr");
    for (const [key, format, cls] of columns) {
      const td = document.createElement("td");
      td.textContent = format ? format(row[key], row) : row[key];
      if (cls) td.className = typeof cls === "function" ? cls(row) : cls;
      tr.appendChild(td);
    }
    return tr;
  }));
}

// UTC wall time, as the minutes' window_start values are drawn
function isoMinutesAgo(minutes) {
  return new Date(Date.now() - minutes * 60_000).toISOString().slice(0, 19).replace("T", " ");
}

function seconds(value) { return value === null || value === undefined ? "–" : `${value.toFixed(1)} s`; }

function draw(summary) {
  const wh = summary.warehouse;
  const health = summary.health || {};
  const analytics = health.analytics || {};
  const cdc = health.cdc || {};
  text("status", `warehouse: ${wh.state}; updated ${new Date(summary.generated_at * 1000).toLocaleTimeString()}`);
  text("events-in", analytics.in_per_s === undefined ? "–" : count.format(analytics.in_per_s));
  text("events-processed", analytics.processed_per_s === undefined ? "–" : count.format(analytics.processed_per_s));
  text("watermark-lag", seconds(analytics.watermark_lag_s));
  text("cdc-lag", seconds(cdc.watermark_lag_s));
  const sessions = (wh.sessions || [])[0] || { sessions: 0, users: 0, open_sessions: 0, events: 0, conversion_pct: 0 };
  text("sessions-count", count.format(sessions.sessions));
  // open sessions are their EARLY rows so far: counted, and replaced when their gap closes
  text(
    "sessions-users",
    `${count.format(sessions.open_sessions)} open · ${count.format(sessions.users)} users · ${count.format(sessions.events)} events`,
  );
  text("conversion", `${sessions.conversion_pct.toFixed(1)} %`);

  const minutes = wh.revenue_per_minute || [];
  Plotly.react("revenue-chart", [{
    type: "bar", name: "gmv", x: minutes.map((m) => m.window_start), y: minutes.map((m) => m.gmv),
    marker: { color: "#2563eb" }, hovertemplate: "%{x}<br>%{y:,.2f}<extra></extra>",
  }], {
    margin: { l: 60, r: 10, t: 10, b: 40 }, yaxis: { title: { text: "gmv" }, rangemode: "tozero" },
    // no minute yet: the last hour up to now, not Plotly's default axis (the year 2000)
    xaxis: minutes.length ? { type: "date" } : { type: "date", range: [isoMinutesAgo(60), isoMinutesAgo(0)] },
    bargap: 0.1,
  }, { displayModeBar: false, responsive: true });

  fillTable("regions", wh.regions || [], [["region"], ["gmv", money.format, "num"], ["orders", count.format, "num"]]);
  fillTable("categories", wh.categories || [], [["category"], ["gmv", money.format, "num"], ["units", count.format, "num"]]);
  fillTable("dead-letters", wh.dead_letters || [], [["reason"], ["count", count.format, "num"]]);
  const total = ((wh.alert_count || [])[0] || { n: 0 }).n;
  text("alert-summary", `${count.format(total)} in all, ${count.format(summary.deliveries || 0)} delivered to the webhook`);
  fillTable("alerts", wh.alerts || [], [
    ["detected_at", (v) => new Date(v).toLocaleTimeString()], ["alert_type"], ["user_id"], ["order_id"],
    ["risk_score", (v) => v.toFixed(2), "num"],
    ["delivery", (v, row) => (row.delivered_at ? `${v} ${new Date(row.delivered_at).toLocaleTimeString()}` : v),
      (row) => row.delivery],
  ]);
}

async function refresh() {
  try {
    const response = await fetch("/api/summary", { cache: "no-store" });
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    draw(await response.json());
    document.body.dataset.loaded = "true";
  } catch (error) {
    text("status", `cannot read the summary: ${error.message}`);
  } finally {
    setTimeout(refresh, 2000);
  }
}

window.addEventListener("DOMContentLoaded", refresh);
