// The vendor's pages: endpoints, deliveries, the catalog with verification snippets,
// API keys and usage.
"use strict";

import { api, principal } from "./api.js";
import { act, field, flash, form, h, list, more, once, rerender, s, section, table, when } from "./dom.js";

export async function endpointsPage() {
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
        rerender();
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
        rerender();
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
    await rerender();
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
    rerender();
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

const DELIVERY_HEADINGS = ["Event", "Endpoint", "State", "Attempt", "Status", "Latency", "Response", "At", ""];

export async function deliveriesPage() {
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

export async function catalogPage() {
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

export async function keysPage() {
  const vendor = principal().vendor;
  const base = `/v1/vendors/${encodeURIComponent(vendor)}`;
  const [{ data: usage }, { data: keys }] = await Promise.all([api("GET", base), api("GET", `${base}/keys`)]);
  const shown = h("div", { id: "key-once" });
  const rows = keys.map((k) => h("tr", { "data-key": k.id },
    h("td", {}, h("code", {}, k.id)), h("td", {}, k.plan || "vendor's"), h("td", {}, when(k.created)),
    h("td", { class: k.revoked ? "bad" : "ok" }, k.revoked ? `revoked ${when(k.revoked)}` : "active"),
    h("td", {}, k.revoked ? "" : act("Revoke", async () => {
      await api("DELETE", `${base}/keys/${encodeURIComponent(k.id)}`);
      rerender();
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
      await rerender();
      document.getElementById("key-once").replaceChildren(once(`API key ${data.id}`, data.key));
    }, ""), table(["Id", "Plan", "Created", "State", ""], rows)),
  ];
}

