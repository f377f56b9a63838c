// The webhookd portal: a vendor's endpoints, deliveries, catalog and API keys, or the
// operator's overview. Every action is a call to the admin API with the bearer token kept
// in sessionStorage; everything shown is set as text (never parsed as HTML).
"use strict";

const TOKEN = "webhookd.token";
const SVG = "http://www.w3.org/2000/svg";
const view = () => document.getElementById("view");

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (value === true) el.setAttribute(name, "");
    else if (value !== false && value !== null && value !== undefined) el.setAttribute(name, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function s(tag, attrs) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs || {})) el.setAttribute(name, String(value));
  return el;
}

function flash(message, error) {
  const el = document.getElementById("flash");
  el.textContent = message;
  el.className = error ? "error" : "";
  el.hidden = false;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => { el.hidden = true; }, 4000);
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(TOKEN) || ""}` };
  const init = { method, headers, credentials: "omit", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN);
    route();
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return { data, next: response.headers.get("X-Next-Cursor") };
}

function act(label, run, cls) {
  return h("button", {
    type: "button", class: cls || "plain",
    onclick: async (ev) => {
      ev.target.disabled = true;
      try { await run(); } catch (err) { flash(err.message, true); }
      ev.target.disabled = false;
    },
  }, label);
}

function form(fields, submit, label) {
  const el = h("form", {}, fields, h("button", { type: "submit" }, label));
  el.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const values = Object.fromEntries(new FormData(el).entries());
    try { await submit(values, el); } catch (err) { flash(err.message, true); }
  });
  return el;
}

function field(label, name, attrs) {
  return h("label", {}, label, h("input", { name, ...attrs }));
}

function table(headings, rows) {
  return h("table", {}, h("thead", {}, h("tr", {}, headings.map((t) => h("th", {}, t)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: headings.length, class: "muted" }, "Nothing yet."))));
}

function section(title, ...children) {
  return h("section", { "data-page": title }, h("h2", {}, title), children);
}

function once(title, value) {
  return h("div", { class: "once" }, h("strong", {}, title), " (shown once; copy it now)",
    h("pre", { class: "secret" }, value));
}

function list(text) {
  return text.split(",").map((x) => x.trim()).filter(Boolean);
}

function when(value) {
  if (value === null || value === undefined || value === "") return "";
  const n = Number(value);
  return Number.isFinite(n) ? new Date(n * 1000).toISOString().replace(".000", "") : String(value);
}

// The vendor named by a portal token's payload (for display: the server decides access).
function principal() {
  const token = sessionStorage.getItem(TOKEN);
  if (!token) return null;
  if (!token.startsWith("wpt_")) return { operator: true };
  try {
    const part = token.slice(4, token.indexOf(".")).replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(part));
    return { operator: false, vendor: claims.v, expires: claims.exp };
  } catch (_) {
    return { operator: false, vendor: "?" };
  }
}

// ---- pages -------------------------------------------------------------------------

function login() {
  return section("Log in",
    h("p", {}, "Paste a portal token (", h("code", {}, "webhookd portal token VENDOR"),
      ") or, for operators, the admin token."),
    form([h("label", {}, "Token", h("input", { name: "token", id: "token", class: "wide", type: "password", autocomplete: "off", required: true }))],
      async ({ token }) => {
        sessionStorage.setItem(TOKEN, token.trim());
        try {
          await api("GET", "/v1/endpoints");
        } catch (err) {
          sessionStorage.removeItem(TOKEN);
          throw new Error(err.status === 401 ? "That token is not valid (or has expired)." : err.message);
        }
        location.hash = principal().operator ? "#/overview" : "#/endpoints";
        route();
      }, "Log in"));
}

async function endpointsPage() {
  const who = principal();
  const { data: endpoints } = await api("GET", "/v1/endpoints");
  const shown = h("div", { id: "shown-once" });
  const rows = endpoints.map((e) => h("tr", { "data-endpoint": e.id },
    h("td", {}, h("code", {}, e.id), h("br"), who.operator ? h("span", { class: "muted" }, e.vendor) : null),
    h("td", {}, e.url),
    h("td", {}, e.events.join(", ")),
    h("td", {}, (e.retry_schedule || []).join(", ") || h("span", { class: "muted" }, "default")),
    h("td", { class: e.enabled ? "ok" : "bad" }, e.enabled ? "enabled" : `disabled ${e.disabled_reason || ""}`),
    h("td", {},
      act(e.enabled ? "Disable" : "Enable", async () => {
        await api("PATCH", `/v1/endpoints/${encodeURIComponent(e.id)}`, { enabled: !e.enabled });
        route();
      }),
      act("Rotate secret", async () => {
        const { data } = await api("POST", `/v1/endpoints/${encodeURIComponent(e.id)}/rotate-secret`);
        shown.replaceChildren(once(`New secret of ${e.id}`, data.secret));
      }),
      act("Send test", async () => {
        const { data } = await api("POST", `/v1/endpoints/${encodeURIComponent(e.id)}/test`);
        shown.replaceChildren(h("div", { class: data.delivered ? "ok" : "bad", id: "test-result" },
          `Test event ${data.event_id} to ${e.id}: ${data.status ?? data.error} in ${data.duration_ms} ms`,
          data.response ? h("pre", {}, data.response) : null));
      }),
      act("Edit", async () => editor.replaceChildren(editForm(e))),
      act("Remove", async () => {
        if (!confirm(`Remove ${e.id}?`)) return;
        await api("DELETE", `/v1/endpoints/${encodeURIComponent(e.id)}`);
        route();
      }, "danger"))));
  const editor = h("div", {});
  const add = form([
    who.operator ? field("Vendor", "vendor", { required: true }) : null,
    field("URL", "url", { class: "wide", required: true, placeholder: "https://example.com/webhooks" }),
    field("Events (comma separated)", "events", { value: "*" }),
    field("Retry schedule, seconds", "retry_schedule", { placeholder: "1, 2, 4, 8, 16" }),
  ], async (values) => {
    const body = { url: values.url, events: list(values.events || "*") };
    if (values.vendor) body.vendor = values.vendor;
    if (values.retry_schedule) body.retry_schedule = list(values.retry_schedule).map(Number);
    const { data } = await api("POST", "/v1/endpoints", body);
    await route();
    document.getElementById("shown-once").replaceChildren(once(`Signing secret of ${data.id}`, data.secret));
  }, "Add endpoint");
  return [
    section("Endpoints", shown, table(["Id", "URL", "Events", "Retries", "State", ""], rows), editor),
    section("Add an endpoint", h("p", { class: "muted" }, "The URL is checked as at registration."), add),
  ];
}

function editForm(e) {
  return h("div", { "data-page": `Edit ${e.id}` }, h("h3", {}, `Edit ${e.id}`), form([
    field("Events", "events", { value: e.events.join(", ") }),
    field("Retry schedule", "retry_schedule", { value: (e.retry_schedule || []).join(", "), placeholder: "default" }),
    field("Timeout, seconds", "timeout", { value: e.timeout ?? "", placeholder: "default" }),
  ], async (values) => {
    await api("PATCH", `/v1/endpoints/${encodeURIComponent(e.id)}`, {
      events: list(values.events),
      retry_schedule: values.retry_schedule ? list(values.retry_schedule).map(Number) : null,
      timeout: values.timeout ? Number(values.timeout) : null,
    });
    flash(`Saved ${e.id}`);
    route();
  }, "Save"));
}

function deliveryRows(items) {
  return items.map((d) => h("tr", { "data-event": d.event_id },
    h("td", {}, h("code", {}, d.event_id), h("br"), h("span", { class: "muted" }, d.event_type || "")),
    h("td", {}, h("code", {}, d.endpoint_id)),
    h("td", { class: d.state === "delivered" ? "ok" : d.state === "dead" || d.state === "failed" ? "bad" : "" }, d.state),
    h("td", {}, d.attempt ?? d.attempts ?? ""),
    h("td", {}, d.status ?? d.last_status ?? ""),
    h("td", {}, d.duration_ms === undefined || d.duration_ms === null ? "" : `${d.duration_ms} ms`),
    h("td", {}, h("code", {}, String(d.response ?? d.error ?? d.last_error ?? "").slice(0, 160))),
    h("td", {}, when(d.at)),
    h("td", {}, d.event_type === "webhook.test" ? "" : act("Replay", async () => {
      const { data } = await api("POST", `/v1/events/${encodeURIComponent(d.event_id)}/replay`);
      flash(`Replayed ${data.event_id} to ${data.replayed.length} endpoint(s)`);
    }))));
}

// A "More" button while there is a next page; ``load`` appends it and returns the cursor after.
function more(cursor, load) {
  if (!cursor) return null;
  let next = cursor;
  const button = act("More", async () => {
    next = await load(next);
    if (!next) button.remove();
  });
  return button;
}

const DELIVERY_HEADINGS = ["Event", "Endpoint", "State", "Attempt", "Status", "Latency", "Response", "At", ""];

async function deliveriesPage() {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const query = new URLSearchParams();
  for (const name of ["endpoint_id", "outcome"]) if (params.get(name)) query.set(name, params.get(name));
  let recent;
  try {
    const { data, next } = await api("GET", `/v1/deliveries?${query}`);
    const body = table(DELIVERY_HEADINGS, deliveryRows(data));
    recent = h("div", { id: "recent" }, body, more(next, async (cursor) => {
      query.set("cursor", cursor);
      const page = await api("GET", `/v1/deliveries?${query}`);
      body.querySelector("tbody").append(...deliveryRows(page.data));
      return page.next;
    }));
  } catch (err) {
    recent = h("p", { class: "muted" }, `Recent deliveries are not available: ${err.message}`);
  }
  const filter = form([
    field("Endpoint id", "endpoint_id", { value: params.get("endpoint_id") || "" }),
    h("label", {}, "Outcome", h("select", { name: "outcome" },
      ["", "delivered", "failed", "dead", "gone", "held"].map((o) =>
        h("option", { value: o, selected: o === (params.get("outcome") || "") }, o || "any")))),
  ], async (values) => {
    const next = new URLSearchParams(Object.entries(values).filter(([, v]) => v));
    location.hash = `#/deliveries?${next}`;
  }, "Filter");
  const found = h("div", { id: "event-found" });
  const lookup = form([field("Event id", "event_id", { class: "wide", required: true, id: "event-id" })],
    async ({ event_id }) => {
      const { data } = await api("GET", `/v1/events/${encodeURIComponent(event_id.trim())}`);
      const items = data.deliveries.map((d) => {
        const last = (d.attempt_log || [])[d.attempt_log.length - 1] || {};
        return { ...d, event_id: data.event_id, attempt: d.attempts, status: d.last_status,
          duration_ms: last.duration_ms, response: last.response ?? d.last_error, at: last.at };
      });
      found.replaceChildren(table(DELIVERY_HEADINGS, deliveryRows(items)));
    }, "Show");
  const recover = form([
    field("Endpoint id", "endpoint_id", { required: true }),
    field("Since (RFC 3339, optional)", "since", { placeholder: "2026-12-01T00:00:00Z" }),
  ], async ({ endpoint_id, since }) => {
    const { data } = await api("POST", `/v1/endpoints/${encodeURIComponent(endpoint_id)}/recover`,
      since ? { since } : {});
    flash(`Recovered ${data.recovered} deliveries`);
  }, "Recover failed and held");
  return [
    section("Deliveries", filter, recent),
    section("Find an event", lookup, found),
    section("Recover", h("p", { class: "muted" },
      "Deliver again what failed or was held while the endpoint was disabled."), recover),
  ];
}

function snippets(secret) {
  const shown = secret || "whsec_…";
  return [
    h("h3", {}, "Python (webhookd.verify)"),
    h("pre", { id: "python-snippet" }, `from webhookd.verify import verify, InvalidSignature\n\n` +
      `payload = verify(request_body, request_headers, "${shown}")  # raises InvalidSignature`),
    h("h3", {}, "Node.js (crypto)"),
    h("pre", { id: "node-snippet" }, `const crypto = require("crypto");\n` +
      `const key = Buffer.from("${shown}".slice(6), "base64");\n` +
      `const signed = \`\${headers["webhook-id"]}.\${headers["webhook-timestamp"]}.\${rawBody}\`;\n` +
      `const expected = "v1," + crypto.createHmac("sha256", key).update(signed).digest("base64");\n` +
      `const ok = headers["webhook-signature"].split(" ").some((s) =>\n` +
      `  s.length === expected.length && crypto.timingSafeEqual(Buffer.from(s), Buffer.from(expected)));`),
    h("h3", {}, "Shell (openssl)"),
    h("pre", { id: "shell-snippet" }, `key_hex=$(printf %s '${shown}' | cut -c7- | base64 -d | od -An -v -tx1 | tr -d ' \\n')\n` +
      `printf '%s.%s' "$X_TIMESTAMP" "$(cat body.json)" |\n` +
      `  openssl dgst -sha256 -mac HMAC -macopt "hexkey:$key_hex" | sed 's/^.* /sha256=/'\n` +
      `# equals one of the X-Signature header's comma-separated values (two while rotating)`),
  ];
}

async function catalogPage() {
  const { data: types } = await api("GET", "/v1/catalog");
  const { data: endpoints } = await api("GET", "/v1/endpoints");
  const code = h("div", {}, snippets(null));
  const reveal = endpoints.length ? h("form", {},
    h("select", { id: "reveal-endpoint" }, endpoints.map((e) => h("option", { value: e.id }, `${e.id} ${e.url}`))),
    act("Reveal secret in the snippets", async () => {
      const id = document.getElementById("reveal-endpoint").value;
      const { data } = await api("POST", `/v1/endpoints/${encodeURIComponent(id)}/reveal-secret`);
      code.replaceChildren(...snippets(data.secret));
    })) : h("p", { class: "muted" }, "Add an endpoint to get a signing secret.");
  return [
    section("Verifying signatures", reveal, code),
    section("Event catalog", types.map((t) => h("details", {},
      h("summary", {}, h("code", {}, t.type), " ", t.description),
      h("pre", {}, JSON.stringify(t.example, null, 2))))),
  ];
}

function meter(used, amount) {
  const svg = s("svg", { class: "meter", viewBox: "0 0 100 6", preserveAspectRatio: "none" });
  svg.append(s("rect", { x: 0, y: 0, height: 6, width: amount ? Math.min(100, (100 * used) / amount) : 0 }));
  return svg;
}

function usageRow(label, u) {
  if (!u) return h("tr", {}, h("td", {}, label), h("td", { colspan: 3, class: "muted" }, "no limit"));
  return h("tr", {}, h("td", {}, label), h("td", {}, `${u.used} of ${u.amount} (${u.limit})`),
    h("td", {}, meter(u.used, u.amount)), h("td", {}, `resets ${when(u.reset)}`));
}

async function keysPage() {
  const vendor = principal().vendor;
  const base = `/v1/vendors/${encodeURIComponent(vendor)}`;
  const [{ data: usage }, { data: keys }] = await Promise.all([api("GET", base), api("GET", `${base}/keys`)]);
  const shown = h("div", { id: "key-once" });
  const rows = keys.map((k) => h("tr", { "data-key": k.id },
    h("td", {}, h("code", {}, k.id)), h("td", {}, k.plan || "vendor's"), h("td", {}, when(k.created)),
    h("td", { class: k.revoked ? "bad" : "ok" }, k.revoked ? `revoked ${when(k.revoked)}` : "active"),
    h("td", {}, k.revoked ? "" : act("Revoke", async () => {
      await api("DELETE", `${base}/keys/${encodeURIComponent(k.id)}`);
      route();
    }, "danger"))));
  return [
    section("Usage", h("p", {}, "Plan: ", h("strong", {}, usage.plan || "none"),
      usage.burst_headroom === null ? "" : `; burst headroom ${usage.burst_headroom} calls`),
      table(["", "Used", "", ""], [
        ...usage.api_calls.map((u) => usageRow(`API calls ${u.limit.endsWith("/day") ? "today" : "burst"}`, u)),
        usageRow("Webhooks today", usage.webhooks.daily_quota),
        usageRow("Webhook rate", usage.webhooks.rate),
      ])),
    section("API keys", shown, act("Create API key", async () => {
      const { data } = await api("POST", `${base}/keys`, {});
      await route();
      document.getElementById("key-once").replaceChildren(once(`API key ${data.id}`, data.key));
    }, ""), table(["Id", "Plan", "Created", "State", ""], rows)),
  ];
}

// ---- operator ------------------------------------------------------------------------

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

async function overviewPage() {
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

async function vendorsPage() {
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
      route();
    }))));
}

async function deadPage() {
  const { data, next } = await api("GET", "/v1/dead?limit=100");
  const body = table(["Id", "Event", "Endpoint", "Vendor", "Attempts", "Last status", "Reason", ""], deadRows(data));
  return section("Dead letters",
    act("Redrive all", async () => {
      const { data: done } = await api("POST", "/v1/dead/redrive");
      flash(`Redriven: ${done.redriven}, skipped: ${done.skipped}`);
      route();
    }, ""),
    body,
    more(next, async (cursor) => {
      const page = await api("GET", `/v1/dead?limit=100&cursor=${encodeURIComponent(cursor)}`);
      body.querySelector("tbody").append(...deadRows(page.data));
      return page.next;
    }));
}

const VENDOR_PAGES = { endpoints: ["Endpoints", endpointsPage], deliveries: ["Deliveries", deliveriesPage],
  catalog: ["Catalog", catalogPage], keys: ["API keys & usage", keysPage] };
const OPERATOR_PAGES = { overview: ["Overview", overviewPage], vendors: ["Vendors", vendorsPage],
  endpoints: ["Endpoints", endpointsPage], deliveries: ["Deliveries", deliveriesPage], dead: ["Dead letters", deadPage] };

async function route() {
  const who = principal();
  const nav = document.getElementById("nav");
  document.getElementById("logout").hidden = !who;
  const until = who && who.expires ? ` (until ${when(who.expires).slice(11, 16)} UTC)` : "";
  document.getElementById("who").textContent = who ? (who.operator ? "operator" : `vendor ${who.vendor}${until}`) : "";
  if (!who) {
    nav.replaceChildren();
    view().replaceChildren(login());
    return;
  }
  const pages = who.operator ? OPERATOR_PAGES : VENDOR_PAGES;
  const name = (location.hash.match(/^#\/(\w+)/) || [])[1];
  const [, render] = pages[name] || Object.values(pages)[0];
  nav.replaceChildren(...Object.entries(pages).map(([key, [title]]) =>
    h("a", { href: `#/${key}`, class: key === name ? "current" : null }, title)));
  try {
    const content = await render();
    view().replaceChildren(...[content].flat());
  } catch (err) {
    view().replaceChildren(section("Error", h("p", { class: "bad" }, err.message)));
  }
}

document.getElementById("logout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN);
  location.hash = "";
  route();
});
window.addEventListener("hashchange", route);
route();
