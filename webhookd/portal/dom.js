// Building the page: elements from data (text only, never parsed as HTML), forms,
// buttons, tables, and the flash message.
"use strict";

const SVG = "http://www.w3.org/2000/svg";

export function h(tag, attrs, ...children) {
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

export function s(tag, attrs) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs || {})) el.setAttribute(name, String(value));
  return el;
}

export function flash(message, error) {
  const el = document.getElementById("flash");
  el.textContent = message;
  el.className = error ? "error" : "";
  el.hidden = false;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => { el.hidden = true; }, 4000);
}

export function act(label, run, cls) {
  return h("button", {
    type: "button", class: cls || "plain",
    onclick: async (ev) => {
      ev.target.disabled = true;
      try { await run(); } catch (err) { flash(err.message, true); }
      ev.target.disabled = false;
    },
  }, label);
}

export function form(fields, submit, label) {
  const el = h("form", {}, fields, h("button", { type: "submit" }, label));
  el.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const values = Object.fromEntries(new FormData(el).entries());
    try { await submit(values, el); } catch (err) { flash(err.message, true); }
  });
  return el;
}

export function field(label, name, attrs) {
  return h("label", {}, label, h("input", { name, ...attrs }));
}

export function table(headings, rows) {
  return h("table", {}, h("thead", {}, h("tr", {}, headings.map((t) => h("th", {}, t)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: headings.length, class: "muted" }, "Nothing yet."))));
}

export function section(title, ...children) {
  return h("section", { "data-page": title }, h("h2", {}, title), children);
}

export function once(title, value) {
  return h("div", { class: "once" }, h("strong", {}, title), " (shown once; copy it now)",
    h("pre", { class: "secret" }, value));
}

export function list(text) {
  return text.split(",").map((x) => x.trim()).filter(Boolean);
}

export function when(value) {
  if (value === null || value === undefined || value === "") return "";
  const n = Number(value);
  return Number.isFinite(n) ? new Date(n * 1000).toISOString().replace(".000", "") : String(value);
}


let renderer = () => Promise.resolve();

// Who draws the page (the router), and drawing it again after an action changed it.
export function onRender(render) {
  renderer = render;
}

export function rerender() {
  return renderer();
}

// A "More" button while there is a next page; ``load`` appends it and returns the cursor after.
export function more(cursor, load) {
  if (!cursor) return null;
  let next = cursor;
  const button = act("More", async () => {
    next = await load(next);
    if (!next) button.remove();
  });
  return button;
}

