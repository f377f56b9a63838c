// The admin API, with the bearer token kept in this tab's sessionStorage: the browser
// sends no credential by itself (no cookies), so there is nothing for another site to use.
"use strict";

import { rerender } from "./dom.js";

export const TOKEN = "webhookd.token";

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
  }
}

export async function api(method, path, body) {
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
    rerender();
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return { data, next: response.headers.get("X-Next-Cursor") };
}


// The vendor named by a portal token's payload (for display: the server decides access).
export function principal() {
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

