// The usage chart: one horizontal bar of dyno-hours per process type and
// size this month, drawn as inline SVG. The same numbers are in a table
// next to it, which is what screen readers read.
import { s, hours } from "./dom.js";

const ROW = 28, LABEL = 170, VALUE = 90, WIDTH = 640;

// usageChart returns an <svg> for usage.processes, or null when nothing ran.
export function usageChart(usage) {
  const rows = (usage.processes || []).filter((p) => p.hours > 0);
  if (rows.length === 0) return null;
  const max = Math.max(...rows.map((p) => p.hours));
  const span = WIDTH - LABEL - VALUE;
  const height = rows.length * ROW + 10;
  const title = `Dyno-hours in ${usage.month} by process type and size`;
  return s("svg", {
    class: "chart", viewBox: `0 0 ${WIDTH} ${height}`, width: WIDTH, height,
    role: "img", "aria-label": title,
  },
  s("title", {}, title),
  s("line", { class: "axis", x1: LABEL, y1: 0, x2: LABEL, y2: height - 5 }),
  rows.map((p, i) => {
    const y = i * ROW + 5;
    const w = Math.max(1, (p.hours / max) * span);
    const free = Math.min(w, (p.free_hours / max) * span);
    return s("g", {},
      s("text", { x: LABEL - 8, y: y + 17, "text-anchor": "end" }, `${p.type} · ${p.size}`),
      s("rect", { class: "bar", x: LABEL, y, width: w.toFixed(1), height: ROW - 8 }),
      free > 0 ? s("rect", { class: "free", x: LABEL, y, width: free.toFixed(1), height: ROW - 8 }) : null,
      s("text", { x: LABEL + w + 6, y: y + 17 }, `${hours(p.hours)} h`));
  }));
}
