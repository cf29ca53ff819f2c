// The app page: dynos (polled), scale controls, releases with rollback,
// config vars, live logs and this month's usage. Each section is a small
// function that owns its part of the page and reloads it after a change.
import * as api from "./api.js";
import { h, replace, when, safeURL, announce, errorText, hours } from "./dom.js";
import { usageChart } from "./chart.js";

// POLL_MS: dynos are polled every 2 s while the tab is visible, which
// spends 1,800 of the key's 4,500 requests an hour.
const POLL_MS = 2000;
const MAX_LOG_LINES = 500;

export async function appView(el, name) {
  const stop = new AbortController();
  let app;
  try {
    app = await api.get(api.app(name));
  } catch (e) {
    replace(el, h("h1", { tabindex: "-1" }, name), h("p", { class: "error" }, errorText(e)));
    return;
  }
  const url = safeURL(app.web_url);
  const sections = {
    dynos: h("section", { "aria-labelledby": "dynos-title" }),
    scale: h("section", { "aria-labelledby": "scale-title" }),
    logs: h("section", { "aria-labelledby": "logs-title" }),
    releases: h("section", { "aria-labelledby": "releases-title" }),
    config: h("section", { "aria-labelledby": "config-title" }),
    usage: h("section", { "aria-labelledby": "usage-title" }),
  };
  replace(el,
    h("h1", { tabindex: "-1" }, app.name),
    h("p", {}, url ? h("a", { href: url, rel: "noopener noreferrer" }, url) : null,
      app.owner ? h("span", { class: "muted" }, ` · owner ${app.owner.email}`) : null),
    sections.dynos, // full width: its table has six columns and long commands
    sections.scale,
    sections.logs,
    h("div", { class: "grid" }, sections.releases, sections.config),
    sections.usage);

  const ctx = { name: app.name, signal: stop.signal, reload: {} };
  ctx.reload.releases = () => releases(sections.releases, ctx);
  ctx.reload.scale = () => scale(sections.scale, ctx);
  const stopDynos = dynos(sections.dynos, ctx);
  const stopLogs = logs(sections.logs, ctx);
  ctx.reload.config = () => config(sections.config, ctx);
  ctx.reload.scale();
  ctx.reload.releases();
  ctx.reload.config();
  usage(sections.usage, ctx);
  return () => {
    stop.abort();
    stopDynos();
    stopLogs();
  };
}

// ONE_OFF_TYPES are the process types of one-off dynos: `dyno run`, the
// scheduler and the release phase.
const ONE_OFF_TYPES = new Set(["run", "scheduler", "release"]);

// endedOneOff tells a one-off whose process is over (kept a few minutes
// for its exit status, as `dyno ps --all` shows) from a live dyno.
function endedOneOff(d) {
  return ONE_OFF_TYPES.has(d.type) && (d.state === "crashed" || (d.state === "down" && d.exit_status != null));
}

// dynos shows the app's dynos and polls them until the returned function
// is called; the poll pauses while the tab is hidden. One-offs that ended
// are left out of the summary and, unless the toggle asks, the table.
function dynos(el, ctx) {
  const status = h("p", { class: "muted" }, "Loading…");
  const table = h("div", { class: "table-scroll" });
  const showEnded = h("input", { id: "dynos-show-ended", type: "checkbox" });
  const toggle = h("p", { hidden: true }, h("label", { for: showEnded.id, class: "check" }, showEnded, h("span", {}, "Show finished one-offs")));
  replace(el, h("h2", { id: "dynos-title" }, "Dynos"), status, toggle, table);
  let timer = null;
  let busy = false; // a request is out: one poll loop at a time
  let last = "";
  let list = [];
  const draw = () => {
    const live = list.filter((d) => !endedOneOff(d));
    const ended = list.length - live.length;
    const counts = {};
    for (const d of live) counts[d.state] = (counts[d.state] || 0) + 1;
    const summary = (live.length === 0 ? "No dynos running."
      : `${live.length} dyno${live.length === 1 ? "" : "s"}: ` + Object.entries(counts).map(([k, n]) => `${n} ${k}`).join(", ") + ".")
      + (ended === 0 ? "" : ` ${ended} finished one-off${ended === 1 ? "" : "s"}.`);
    status.textContent = summary;
    if (summary !== last) announce(summary);
    last = summary;
    toggle.hidden = ended === 0;
    const shown = showEnded.checked ? list : live;
    replace(table, shown.length === 0 ? null : h("table", { class: "dynos" },
      h("caption", { class: "visually-hidden" }, "Dynos and their states"),
      h("thead", {}, h("tr", {}, ["Dyno", "State", "Size", "Release", "Command", "Since"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, shown.map((d) => h("tr", { "data-dyno": d.name },
        h("th", { scope: "row" }, d.name),
        h("td", {}, h("span", { class: "state state-" + d.state }, d.state),
          d.pending_reason ? h("span", { class: "muted" }, " (" + d.pending_reason + ")") : null,
          d.exit_status != null ? h("span", { class: "muted" }, ` (exit ${d.exit_status})`) : null),
        h("td", {}, d.size),
        h("td", {}, d.release ? "v" + d.release.version : ""),
        h("td", {}, h("code", {}, d.command)),
        h("td", {}, when(d.updated_at)))))));
  };
  showEnded.addEventListener("change", draw);
  const tick = async () => {
    timer = null;
    busy = true;
    try {
      list = await api.get(api.app(ctx.name, "/dynos"), { signal: ctx.signal });
      list.sort((a, b) => a.type.localeCompare(b.type) || a.name.localeCompare(b.name, undefined, { numeric: true }));
      draw();
    } catch (e) {
      if (e.name === "AbortError") return;
      status.textContent = errorText(e);
    } finally {
      busy = false;
    }
    if (!ctx.signal.aborted && !document.hidden) timer = setTimeout(tick, POLL_MS);
  };
  const onVisible = () => {
    if (!document.hidden && timer === null && !busy && !ctx.signal.aborted) tick();
  };
  document.addEventListener("visibilitychange", onVisible);
  tick();
  return () => {
    clearTimeout(timer);
    document.removeEventListener("visibilitychange", onVisible);
  };
}

// scale shows one small form per process type: quantity and size.
async function scale(el, ctx) {
  const msg = h("p", { role: "status" });
  let formation, sizes;
  try {
    [formation, sizes] = await Promise.all([
      api.get(api.app(ctx.name, "/formation"), { signal: ctx.signal }),
      api.get("/dyno-sizes", { signal: ctx.signal }),
    ]);
  } catch (e) {
    if (e.name !== "AbortError") replace(el, h("h2", { id: "scale-title" }, "Scale"), h("p", { class: "error" }, errorText(e)));
    return;
  }
  formation.sort((a, b) => a.type.localeCompare(b.type));
  const form = (f) => {
    const id = "scale-" + f.type.replace(/[^a-zA-Z0-9_-]/g, "_");
    const qty = h("input", { id: id + "-qty", type: "number", min: 0, step: 1, value: f.quantity, required: true });
    const names = sizes.map((sz) => sz.name);
    if (!names.includes(f.size)) names.unshift(f.size); // never change a size by accident
    const size = h("select", { id: id + "-size" },
      names.map((n) => h("option", { value: n, selected: n === f.size }, n)));
    return h("form", {
      onsubmit: async (ev) => {
        ev.preventDefault();
        const button = ev.target.querySelector("button");
        button.disabled = true;
        msg.textContent = "";
        msg.className = "";
        try {
          const update = { type: f.type, quantity: Number(qty.value), size: size.value };
          await api.request("PATCH", api.app(ctx.name, "/formation"), { updates: [update] });
          msg.textContent = `Scaled ${f.type} to ${update.quantity} × ${update.size}.`;
          f.quantity = update.quantity;
          f.size = update.size;
        } catch (e) {
          msg.className = "error";
          msg.textContent = errorText(e);
        } finally {
          button.disabled = false;
        }
      },
    }, h("fieldset", { class: "row" },
      h("legend", {}, f.type, " ", h("code", { class: "muted" }, f.command)),
      h("label", { for: qty.id }, "Quantity", qty),
      h("label", { for: size.id }, "Size", size),
      h("button", { type: "submit", class: "primary" }, "Scale " + f.type)));
  };
  replace(el, h("h2", { id: "scale-title" }, "Scale"),
    formation.length === 0 ? h("p", {}, "Nothing to scale yet: deploy the app first.") : formation.map(form), msg);
}

// releases lists the latest releases, newest first, with rollback.
async function releases(el, ctx) {
  const msg = h("p", { role: "status" });
  let list;
  try {
    list = await api.get(api.app(ctx.name, "/releases"), { signal: ctx.signal, headers: { Range: "version ..; max=15, order=desc" } });
  } catch (e) {
    if (e.name !== "AbortError") replace(el, h("h2", { id: "releases-title" }, "Releases"), h("p", { class: "error" }, errorText(e)));
    return;
  }
  const rollback = (r) => async (ev) => {
    if (!confirm(`Roll back ${ctx.name} to v${r.version}? This makes a new release with v${r.version}'s code and config vars.`)) return;
    ev.target.disabled = true;
    try {
      const rel = await api.request("POST", api.app(ctx.name, "/releases"), { release: r.id });
      await ctx.reload.releases();
      ctx.reload.config(); // a rollback restores that release's config vars too
      const done = el.querySelector("[role=status]");
      done.textContent = `Rolled back to v${r.version}: now v${rel.version}.`;
      el.querySelector("h2").focus();
    } catch (e) {
      msg.className = "error";
      msg.textContent = errorText(e);
      ev.target.disabled = false;
    }
  };
  replace(el, h("h2", { id: "releases-title", tabindex: "-1" }, "Releases"), msg,
    list.length === 0 ? h("p", {}, "No releases yet.") : h("table", {},
      h("caption", { class: "visually-hidden" }, "Latest releases, newest first"),
      h("thead", {}, h("tr", {}, ["Version", "Description", "By", "When", h("span", { class: "visually-hidden" }, "Actions")]
        .map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, list.map((r) => h("tr", {},
        h("th", { scope: "row" }, "v" + r.version, r.current ? h("span", { class: "muted" }, " (current)") : null),
        h("td", {}, r.description, r.status && r.status !== "succeeded" ? h("span", { class: "muted" }, ` (${r.status})`) : null),
        h("td", {}, r.user ? r.user.email : ""),
        h("td", {}, when(r.created_at)),
        h("td", {}, !r.current && r.slug
          ? h("button", { type: "button", onclick: rollback(r), "aria-label": `Roll back to v${r.version}` }, "Roll back")
          : null))))));
}

// config shows the config vars, values hidden until revealed, with one
// form to add or change a var and a remove button on each.
async function config(el, ctx) {
  const msg = h("p", { role: "status" });
  const key = h("input", { id: "config-key", name: "key", required: true, autocomplete: "off", spellcheck: "false", pattern: "[A-Za-z_][A-Za-z0-9_]*" });
  const value = h("input", { id: "config-value", name: "value", autocomplete: "off", spellcheck: "false" });
  const list = h("div");
  let vars = {};
  let revealed = false;
  const reveal = h("button", { type: "button", "aria-pressed": "false" }, "Reveal values");
  reveal.addEventListener("click", () => {
    revealed = !revealed;
    reveal.setAttribute("aria-pressed", String(revealed));
    reveal.textContent = revealed ? "Hide values" : "Reveal values";
    draw();
  });
  const patch = async (body, done) => {
    msg.className = "";
    msg.textContent = "";
    try {
      vars = await api.request("PATCH", api.app(ctx.name, "/config-vars"), body);
      msg.textContent = done;
      draw();
      ctx.reload.releases(); // a config change is a release
    } catch (e) {
      msg.className = "error";
      msg.textContent = errorText(e);
    }
  };
  const draw = () => {
    const keys = Object.keys(vars).sort();
    replace(list, keys.length === 0 ? h("p", {}, "No config vars.") : h("table", {},
      h("caption", { class: "visually-hidden" }, "Config vars"),
      h("thead", {}, h("tr", {}, ["Key", "Value", h("span", { class: "visually-hidden" }, "Actions")].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, keys.map((k) => h("tr", {},
        h("th", { scope: "row" }, h("code", {}, k)),
        h("td", {}, revealed ? h("code", {}, vars[k]) : h("span", { class: "muted" }, "hidden")),
        h("td", {},
          h("button", {
            type: "button", "aria-label": `Edit ${k}`,
            onclick: () => { key.value = k; value.value = vars[k]; value.focus(); },
          }, "Edit"), " ",
          h("button", {
            type: "button", "aria-label": `Remove ${k}`,
            onclick: () => confirm(`Remove ${k} from ${ctx.name}? This restarts its dynos.`) && patch({ [k]: null }, `Removed ${k}.`),
          }, "Remove")))))));
  };
  replace(el, h("h2", { id: "config-title" }, "Config vars"), h("p", {}, reveal), list,
    h("form", {
      onsubmit: (ev) => {
        ev.preventDefault();
        const k = key.value.trim();
        patch({ [k]: value.value }, `Set ${k}.`).then(() => { if (msg.className !== "error") { key.value = ""; value.value = ""; } });
      },
    }, h("fieldset", { class: "row" }, h("legend", {}, "Add or change a var"),
      h("label", { for: key.id }, "Key", key),
      h("label", { for: value.id }, "Value", value),
      h("button", { type: "submit" }, "Save"))),
    msg);
  try {
    vars = await api.get(api.app(ctx.name, "/config-vars"), { signal: ctx.signal });
    draw();
  } catch (e) {
    if (e.name !== "AbortError") replace(list, h("p", { class: "error" }, errorText(e)));
  }
}

// logs tails the app's logs with a log session read by EventSource. The
// stream's URL is taken on this page's origin: the API may know itself by
// another name (PublicURL) and the page may only connect to its own.
function logs(el, ctx) {
  const out = h("ol", { class: "logs", id: "logs", tabindex: "0", "aria-label": "Log lines, newest last" });
  const state = h("span", { class: "muted", role: "status" });
  const toggle = h("button", { type: "button" }, "Pause");
  let source = null;
  const close = () => {
    if (source) source.close();
    source = null;
    toggle.textContent = "Resume";
  };
  const open = async () => {
    toggle.textContent = "Pause";
    state.textContent = "Connecting…";
    try {
      const sess = await api.request("POST", api.app(ctx.name, "/log-sessions"), { lines: 100, tail: true }, { signal: ctx.signal });
      if (ctx.signal.aborted) return;
      const u = new URL(sess.logplex_url, location.href);
      source = new EventSource(u.pathname + u.search);
      source.onopen = () => { state.textContent = "Live."; };
      source.onmessage = (ev) => {
        const stick = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
        out.append(h("li", {}, ev.data));
        while (out.childElementCount > MAX_LOG_LINES) out.firstElementChild.remove();
        if (stick) out.scrollTop = out.scrollHeight;
      };
      // EventSource would reconnect and replay the backlog: stop instead,
      // and let the user resume with a fresh session.
      source.onerror = () => {
        close();
        state.textContent = "The log stream ended.";
      };
    } catch (e) {
      if (e.name !== "AbortError") {
        state.textContent = errorText(e);
        toggle.textContent = "Resume";
      }
    }
  };
  toggle.addEventListener("click", () => {
    if (source) {
      close();
      state.textContent = "Paused.";
    } else {
      open();
    }
  });
  replace(el, h("h2", { id: "logs-title" }, "Logs"), h("p", {}, toggle, " ", state), out);
  open();
  return close;
}

// usage shows this month's dyno-hours: a chart and the same in a table.
// Running dynos report their usage every minute, stopped ones at once.
async function usage(el, ctx, focus = false) {
  const title = h("h2", { id: "usage-title" }, "Usage this month");
  const refresh = h("button", { type: "button", onclick: () => usage(el, ctx, true) }, "Refresh usage");
  let u;
  try {
    u = await api.get(api.app(ctx.name, "/usage"), { signal: ctx.signal });
  } catch (e) {
    if (e.name !== "AbortError") replace(el, title, h("p", { class: e.status === 404 ? "muted" : "error" }, errorText(e)));
    return;
  }
  const money = (n) => `${n.toFixed(2)} ${u.currency}`;
  const chart = usageChart(u);
  replace(el, title,
    h("p", {}, `${hours(u.hours)} dyno-hours in ${u.month}${u.frozen ? " (invoiced)" : " so far"}: `,
      `${hours(u.free_hours_used)} of ${u.free_hours_allowance} free hours used, `,
      `${hours(u.billable_hours)} billable, cost ${money(u.cost)}. `, refresh),
    chart ? h("figure", {}, chart, h("figcaption", { class: "muted" }, "Blue: dyno-hours; green: the part covered by free hours.")) : h("p", {}, "No dyno has reported usage this month yet."),
    u.processes.length === 0 ? null : h("table", {},
      h("caption", {}, "By process type and size"),
      h("thead", {}, h("tr", {}, ["Type", "Size", "Dynos", "Hours", "Free hours", "Billable hours", "Cost"]
        .map((t, i) => h("th", { scope: "col", class: i > 1 ? "num" : null }, t)))),
      h("tbody", {}, u.processes.map((p) => h("tr", {},
        h("th", { scope: "row" }, p.type), h("td", {}, p.size),
        h("td", { class: "num" }, p.dynos), h("td", { class: "num" }, hours(p.hours)),
        h("td", { class: "num" }, hours(p.free_hours)), h("td", { class: "num" }, hours(p.billable_hours)),
        h("td", { class: "num" }, money(p.cost)))))));
  if (focus) refresh.focus(); // the clicked button was replaced
}
