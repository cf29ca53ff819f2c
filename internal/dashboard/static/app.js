// The dashboard's entry point: a hash router (#/login, #/apps,
// #/apps/NAME, #/hosts) that shows one view at a time in <main>. A view is
// a function (main, params) that fills main and may return a cleanup
// function, called when the user leaves it (to stop polls and log streams).
import * as api from "./api.js";
import { h, replace, when, safeURL, errorText } from "./dom.js";
import { appView } from "./apppage.js";

const main = document.getElementById("main");
let cleanup = null;
let generation = 0; // which route() call is the latest

const routes = [
  [/^#\/login$/, loginView],
  [/^#\/apps$/, appsView],
  [/^#\/apps\/([^/]+)$/, (el, m) => appView(el, decodeURIComponent(m[1]))],
  [/^#\/hosts$/, hostsView],
];

async function route() {
  const gen = ++generation;
  if (cleanup) cleanup();
  cleanup = null;
  const hash = location.hash || "#/apps";
  if (!api.session() && hash !== "#/login") {
    location.hash = "#/login";
    return;
  }
  await shell();
  if (gen !== generation) return;
  for (const [re, view] of routes) {
    const m = hash.match(re);
    if (m) {
      replace(main);
      const done = (await view(main, m)) || null;
      if (gen !== generation) { // the user moved on while it loaded
        if (done) done();
        return;
      }
      cleanup = done;
      focusHeading();
      return;
    }
  }
  replace(main, h("h1", { tabindex: "-1" }, "Not found"), h("p", {}, h("a", { href: "#/apps" }, "Back to your apps")));
  focusHeading();
}

// focusHeading moves focus to the new view's heading, as a page load
// would, so keyboard and screen reader users start at the top.
function focusHeading() {
  const h1 = main.querySelector("h1");
  if (h1) h1.focus();
}

// shell shows who is logged in and, for the admin, the hosts link.
let shownFor = null;
async function shell() {
  const s = api.session();
  document.getElementById("nav").hidden = !s;
  document.getElementById("who").hidden = !s;
  if (!s || shownFor === s.key) return;
  shownFor = s.key;
  document.getElementById("who-email").textContent = s.email;
  // Only the admin may list hosts: ask once, show the link if allowed.
  try {
    await api.get("/hosts");
    document.getElementById("nav-hosts").hidden = false;
  } catch {
    document.getElementById("nav-hosts").hidden = true;
  }
}

document.getElementById("logout").addEventListener("click", async () => {
  await api.logout();
  shownFor = null;
  location.hash = "#/login";
});

function loginView(el) {
  if (api.session()) {
    location.hash = "#/apps";
    return;
  }
  const err = h("p", { class: "error", role: "alert" });
  const email = h("input", { id: "login-email", type: "email", name: "email", autocomplete: "username", required: true });
  const password = h("input", { id: "login-password", type: "password", name: "password", autocomplete: "current-password", required: true });
  const key = h("input", { id: "login-key", type: "password", name: "key", autocomplete: "off", required: true });
  const submit = (fn) => async (ev) => {
    ev.preventDefault();
    err.textContent = "";
    const button = ev.target.querySelector("button");
    button.disabled = true;
    try {
      await fn();
      location.hash = "#/apps";
    } catch (e) {
      err.textContent = e.status === 401 ? "Wrong email, password or API key." : errorText(e);
    } finally {
      button.disabled = false;
    }
  };
  replace(el, h("div", { class: "login stack" },
    h("h1", { tabindex: "-1" }, "Log in to Dyno"),
    err,
    h("form", { "aria-labelledby": "login-pw-title", onsubmit: submit(() => api.login(email.value.trim(), password.value)) },
      h("h2", { id: "login-pw-title" }, "With your email and password"),
      h("label", { for: "login-email" }, "Email", email),
      h("label", { for: "login-password" }, "Password", password),
      h("button", { type: "submit", class: "primary" }, "Log in")),
    h("form", { "aria-labelledby": "login-key-title", onsubmit: submit(() => api.loginWithKey(key.value.trim())) },
      h("h2", { id: "login-key-title" }, "Or with an API key"),
      h("p", { class: "muted" }, "`dyno auth:token` prints yours."),
      h("label", { for: "login-key" }, "API key", key),
      h("button", { type: "submit" }, "Log in with the key"))));
}

async function appsView(el) {
  replace(el, h("h1", { tabindex: "-1" }, "Apps"), h("p", {}, "Loading…"));
  let apps;
  try {
    apps = await api.get("/apps");
  } catch (e) {
    replace(el, h("h1", { tabindex: "-1" }, "Apps"), h("p", { class: "error" }, errorText(e)));
    return;
  }
  apps.sort((a, b) => a.name.localeCompare(b.name));
  replace(el, h("h1", { tabindex: "-1" }, "Apps"),
    apps.length === 0
      ? h("p", {}, "No apps yet: `dyno apps:create NAME` makes one.")
      : h("table", {},
        h("caption", { class: "visually-hidden" }, "Your apps"),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Name"), h("th", { scope: "col" }, "Owner"),
          h("th", { scope: "col" }, "Release"), h("th", { scope: "col" }, "Released"), h("th", { scope: "col" }, "Web URL"))),
        h("tbody", {}, apps.map((a) => {
          const url = safeURL(a.web_url);
          return h("tr", {},
            h("th", { scope: "row" }, h("a", { href: "#/apps/" + encodeURIComponent(a.name) }, a.name)),
            h("td", {}, a.owner ? a.owner.email : ""),
            h("td", {}, a.release_version ? "v" + a.release_version : "none"),
            h("td", {}, when(a.released_at)),
            h("td", {}, url ? h("a", { href: url, rel: "noopener noreferrer" }, url) : ""));
        }))));
}

async function hostsView(el) {
  const body = h("div");
  const load = async () => {
    try {
      const hosts = await api.get("/hosts");
      replace(body, h("table", {},
        h("caption", {}, `${hosts.length} host${hosts.length === 1 ? "" : "s"}`),
        h("thead", {}, h("tr", {}, ["Host", "Address", "State", "Dynos", "CPUs", "Memory reserved", "Memory free", "Heartbeat"]
          .map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, hosts.map((x) => h("tr", {},
          h("th", { scope: "row" }, h("span", { class: "mono" }, x.id)),
          h("td", {}, x.address),
          h("td", {}, x.state + (x.drain ? " (drain requested)" : "")),
          h("td", { class: "num" }, x.dynos),
          h("td", { class: "num" }, x.cpus),
          h("td", { class: "num" }, `${x.memory_reserved_mb} of ${x.memory_mb} MB`),
          h("td", { class: "num" }, `${x.memory_free_mb} MB`),
          h("td", {}, `${x.heartbeat_age.toFixed(1)} s ago`))))));
    } catch (e) {
      replace(body, h("p", { class: "error" }, errorText(e)));
    }
  };
  replace(el, h("h1", { tabindex: "-1" }, "Hosts"),
    h("p", {}, h("button", { type: "button", onclick: load }, "Refresh")), body);
  await load();
}

window.addEventListener("hashchange", route);
route();
