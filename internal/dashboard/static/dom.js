// DOM helpers. Every value from the API reaches the page as a text node or
// an attribute value, never as markup: nothing here parses HTML.

// h makes an element: h("td", {class: "num"}, "3"). Attributes named on*
// with a function become event listeners; true/false toggle boolean
// attributes; null, undefined and false children are skipped.
export function h(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

const SVG = "http://www.w3.org/2000/svg";

// s is h for SVG elements.
export function s(tag, attrs, ...children) {
  return fill(document.createElementNS(SVG, tag), attrs, children);
}

function fill(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, "");
    else if (v !== false && v != null) el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c == null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// replace swaps el's children for children.
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// when formats a timestamp from the API in the browser's locale; the
// machine-readable value goes in a <time> element.
export function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d)) return String(iso);
  return h("time", { datetime: d.toISOString() }, d.toLocaleString());
}

// hours formats dyno-hours with the precision small numbers need.
export function hours(n) {
  return n >= 10 ? n.toFixed(1) : n >= 0.01 || n === 0 ? n.toFixed(2) : n.toFixed(4);
}

// safeURL returns url if it is http(s), else null: an API value never
// becomes a javascript: link.
export function safeURL(url) {
  try {
    const u = new URL(url);
    return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
  } catch {
    return null;
  }
}

// announce tells screen readers about a change (the polite status region).
export function announce(text) {
  const el = document.getElementById("status");
  if (el) el.textContent = text;
}

// errorText is what an error says to the user.
export function errorText(err) {
  return err && err.message ? err.message : String(err);
}
