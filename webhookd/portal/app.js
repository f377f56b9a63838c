// The webhookd portal: a vendor's endpoints, deliveries, catalog and API keys, or the
// operator's overview. Every action is a call to the admin API with the bearer token kept
// in sessionStorage; everything shown is set as text (never parsed as HTML).
"use strict";

import { TOKEN, api, principal } from "./api.js";
import { form, h, onRender, section, when } from "./dom.js";
import { catalogPage, deliveriesPage, endpointsPage, keysPage } from "./vendor.js";
import { deadPage, overviewPage, vendorsPage } from "./operator.js";

const view = () => document.getElementById("view");

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
onRender(route);
route();
