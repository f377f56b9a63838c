// The operator's pages: the last hour, backlog, vendors and dead letters.
"use strict";

import { api } from "./api.js";
import { act, flash, h, more, rerender, s, section, table, when } from "./dom.js";

function chart(points) {
  const svg = s("svg", { class: "chart", viewBox: "0 0 600 220", role: "img" });
  const top = Math.max(1, ...points.map((p) => (p.delivered || 0) + (p.failed || 0)));
  const slowest = Math.max(1, ...points.map((p) => p.latency_ms_avg || 0));
  const width = 560 / Math.max(points.length, 1);
  const line = [];
  points.forEach((p, i) => {
    const x = 30 + i * width;
    const ok = (170 * (p.delivered || 0)) / top;
    const bad = (170 * (p.failed || 0)) / top;
    svg.append(s("rect", { class: "delivered", x, y: 190 - ok, width: Math.max(width - 1, 1), height: ok }));
    svg.append(s("rect", { class: "failed", x, y: 190 - ok - bad, width: Math.max(width - 1, 1), height: bad }));
    if (p.latency_ms_avg === null || p.latency_ms_avg === undefined) return;
    line.push(`${x + width / 2},${190 - (170 * p.latency_ms_avg) / slowest}`);
  });
  if (line.length) svg.append(s("polyline", { class: "latency", points: line.join(" ") }));
  for (const point of line) {
    const [cx, cy] = point.split(",");
    svg.append(s("circle", { class: "latency", cx, cy, r: 2 }));
  }
  const label = (x, y, text) => { const t = s("text", { x, y }); t.textContent = text; svg.append(t); };
  label(2, 20, `${top}/min`);
  label(520, 20, `${Math.round(slowest)} ms`);
  label(30, 210, points.length ? when(points[0].at) : "no data");
  if (points.length > 1) label(250, 210, `to ${when(points[points.length - 1].at)}`);
  label(420, 210, "delivered (blue) failed (red) latency (line)");
  return svg;
}

async function optional(path, fallback) {
  try { return (await api("GET", path)).data; } catch (err) { return fallback(err); }
}

export async function overviewPage() {
  const stats = await optional("/v1/stats?minutes=60", () => null);
  const status = await optional("/v1/status", () => null);
  const disabled = status ? status.disabled_endpoints.endpoints : [];
  return [
    section("Last hour", stats ? chart(stats) : h("p", { class: "muted" }, "Delivery statistics are not available on this server.")),
    section("Backlog", status ? h("div", { class: "cards" },
      [["Lag", "lag"], ["Pending", "pending"], ["Retry backlog", "retry_backlog"], ["Held", "held"], ["Deferred", "deferred"]]
        .map(([title, name]) => h("div", { class: "card", "data-total": name }, title, h("b", {}, status[name] ?? 0))))
      : h("p", { class: "muted" }, "Status is not available on this server."),
      status ? h("h3", {}, "Disabled endpoints") : null,
      status ? table(["Endpoint", "Vendor", "Reason", "By", "Since", "Last error"], disabled.map((e) =>
        h("tr", {}, h("td", {}, h("code", {}, e.id)), h("td", {}, e.vendor), h("td", {}, e.reason || ""),
          h("td", {}, e.by || ""), h("td", {}, when(e.since)), h("td", {}, e.last_error || "")))) : null),
  ];
}

export async function vendorsPage() {
  const { data } = await api("GET", "/v1/vendors");
  return section("Vendors", table(["Vendor", "Plan", "Endpoints", "API keys"], data.map((v) =>
    h("tr", {}, h("td", {}, v.vendor), h("td", {}, v.plan || "default"), h("td", {}, v.endpoints), h("td", {}, v.api_keys)))));
}

function deadRows(letters) {
  return letters.map((d) => h("tr", { "data-dead": d.id },
    h("td", {}, h("code", {}, d.id)), h("td", {}, d.event_id || ""), h("td", {}, d.endpoint_id || ""),
    h("td", {}, d.vendor || ""), h("td", {}, d.attempts || ""), h("td", {}, d.last_status || ""),
    h("td", {}, d.reason || d.last_error || ""),
    h("td", {}, act("Redrive", async () => {
      const { data } = await api("POST", "/v1/dead/redrive", { ids: [d.id] });
      flash(data.redriven ? `Redriven ${d.id}` : `Not redriven: ${Object.values(data.reasons).join("; ")}`, !data.redriven);
      rerender();
    }))));
}

export async function deadPage() {
  const { data, next } = await api("GET", "/v1/dead?limit=100");
  const body = table(["Id", "Event", "Endpoint", "Vendor", "Attempts", "Last status", "Reason", ""], deadRows(data));
  return section("Dead letters",
    act("Redrive all", async () => {
      const { data: done } = await api("POST", "/v1/dead/redrive");
      flash(`Redriven: ${done.redriven}, skipped: ${done.skipped}`);
      rerender();
    }, ""),
    body,
    more(next, async (cursor) => {
      const page = await api("GET", `/v1/dead?limit=100&cursor=${encodeURIComponent(cursor)}`);
      body.querySelector("tbody").append(...deadRows(page.data));
      return page.next;
    }));
}

