/**
 * The dashboard's page: one HTML document, its script inline, no framework. It follows the server's
 * Server-Sent Events (`/events`), one state a round, and redraws: members and their views, the
 * coordinator, members per view and per-member throughput and retransmissions over time (small SVG
 * charts), the replicated map's entries and locks, and recent events.
 */
export const DASHBOARD_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>activeblaze dashboard</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1b1f24; background: #fafbfc; }
  h1 { font-size: 1.3em; margin: 0 0 .2em; } h2 { font-size: 1.05em; margin: 1.4em 0 .4em; }
  .muted { color: #667; } .warn { color: #a4410e; }
  table { border-collapse: collapse; background: #fff; } td, th { padding: .25em .7em; border-bottom: 1px solid #e3e6ea; text-align: left; white-space: nowrap; }
  th { font-weight: 600; background: #f1f3f5; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
  .charts { display: flex; gap: 1.5em; flex-wrap: wrap; } .chart { background: #fff; border: 1px solid #e3e6ea; padding: .5em; }
  .legend span { margin-right: .8em; } .dot { display: inline-block; width: .7em; height: .7em; border-radius: 50%; margin-right: .25em; }
  #events li { list-style: none; } #events { padding: 0; margin: 0; max-height: 18em; overflow: auto; }
  code { font-size: .95em; }
</style>
</head>
<body>
<h1>activeblaze: cluster <code id="cluster">…</code></h1>
<div class="muted" id="status">connecting…</div>
<div class="warn" id="warnings"></div>
<h2>Members</h2>
<table id="members"><thead><tr><th>member</th><th>id</th><th>address</th><th>groups (view, coordinator)</th><th>peers</th><th>sent/s</th><th>delivered/s</th><th>retrans/s</th><th>dropped</th><th>errors</th><th>queued</th><th>runtime</th><th>up</th></tr></thead><tbody></tbody></table>
<div class="warn" id="silent"></div>
<h2>Over time</h2>
<div class="charts">
  <div class="chart"><div>members in each view</div><svg id="views" width="360" height="120"></svg><div class="legend" id="views-legend"></div></div>
  <div class="chart"><div>messages delivered a second, by member</div><svg id="throughput" width="360" height="120"></svg><div class="legend" id="throughput-legend"></div></div>
  <div class="chart"><div>retransmissions a second, by member</div><svg id="retransmissions" width="360" height="120"></svg><div class="legend" id="retransmissions-legend"></div></div>
</div>
<h2>Replicated map <span class="muted" id="map-summary"></span></h2>
<table id="entries"><thead><tr><th>key</th><th>value</th><th>version</th><th>written by</th></tr></thead><tbody></tbody></table>
<h2>Locks</h2>
<table id="locks"><thead><tr><th>key</th><th>holder</th><th>fencing token</th><th>lease</th></tr></thead><tbody></tbody></table>
<h2>Recent events</h2>
<ul id="events"></ul>
<script>
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];
const $ = (id) => document.getElementById(id);
const text = (value) => document.createTextNode(String(value));
function cell(row, value, numeric) { const td = row.insertCell(); td.appendChild(text(value)); if (numeric) td.className = "n"; return td; }
function rows(table, items, fill) { const body = table.tBodies[0]; body.replaceChildren(); for (const item of items) fill(body.insertRow(), item); }
function duration(ms) { const s = Math.floor(ms / 1000); return s < 60 ? s + "s" : s < 3600 ? Math.floor(s / 60) + "m" : Math.floor(s / 3600) + "h" + Math.floor((s % 3600) / 60) + "m"; }
function chart(svg, legend, series, history) {
  const names = [...new Set(history.flatMap((point) => Object.keys(point[series] || {})))].sort();
  const width = +svg.getAttribute("width"), height = +svg.getAttribute("height");
  const max = Math.max(1, ...history.flatMap((point) => Object.values(point[series] || {})));
  const x = (i) => history.length < 2 ? 0 : (i / (history.length - 1)) * (width - 40) + 36;
  const y = (v) => height - 14 - (v / max) * (height - 24);
  let markup = '<text x="0" y="12" font-size="10" fill="#667">' + max.toLocaleString() + '</text><text x="0" y="' + (height - 12) + '" font-size="10" fill="#667">0</text>';
  names.forEach((name, n) => {
    const points = history.map((point, i) => x(i).toFixed(1) + "," + y((point[series] || {})[name] || 0).toFixed(1)).join(" ");
    markup += '<polyline fill="none" stroke-width="1.5" stroke="' + COLORS[n % COLORS.length] + '" points="' + points + '"/>';
  });
  svg.innerHTML = markup;
  legend.replaceChildren(...names.map((name, n) => { const span = document.createElement("span"); span.innerHTML = '<span class="dot" style="background:' + COLORS[n % COLORS.length] + '"></span>'; span.appendChild(text(name)); return span; }));
}
function render(state) {
  $("cluster").textContent = state.cluster;
  $("status").textContent = state.members.length + " member(s) answered, round " + state.round + " at " + new Date(state.at).toLocaleTimeString();
  $("warnings").textContent = state.warnings.join("; ");
  rows($("members"), state.members, (row, m) => {
    row.dataset.member = m.name;
    cell(row, m.name); cell(row, m.id.slice(0, 8)); cell(row, m.address);
    cell(row, m.groups.map((g) => g.group + " (" + (g.view === undefined ? "joining" : "v" + g.view + ", " + g.members.length + " members, " + g.coordinator + (g.coordinator === m.name ? " ★" : "")) + ")").join("; ") || "-");
    cell(row, m.peers, true); cell(row, Math.round(m.sentPerSecond).toLocaleString(), true); cell(row, Math.round(m.deliveredPerSecond).toLocaleString(), true);
    cell(row, Math.round(m.retransmittedPerSecond).toLocaleString(), true); cell(row, m.dropped.toLocaleString(), true); cell(row, m.errors.toLocaleString(), true);
    cell(row, m.queued.toLocaleString(), true); cell(row, m.software.replace(/, activeblaze .*$/, "") + ", " + m.reliability); cell(row, duration(m.uptimeMs));
  });
  $("silent").textContent = state.silent.length === 0 ? "" : "listed by others but not answering: " + state.silent.map((s) => s.name + " (listed by " + s.listedBy.join(", ") + ")").join("; ");
  chart($("views"), $("views-legend"), "viewSizes", state.history);
  chart($("throughput"), $("throughput-legend"), "delivered", state.history);
  chart($("retransmissions"), $("retransmissions-legend"), "retransmitted", state.history);
  const map = state.map;
  $("map-summary").textContent = map === undefined ? "(no member of this cluster holds one)" : "group " + map.group + ", master " + map.master + ", " + map.entryCount + " entries" + (map.entries.length < map.entryCount ? " (" + map.entries.length + " shown)" : "");
  rows($("entries"), map ? map.entries : [], (row, e) => { row.dataset.key = e.key; cell(row, e.key); cell(row, e.preview); cell(row, e.version, true); cell(row, e.owner); });
  rows($("locks"), map ? map.locks : [], (row, l) => { row.dataset.key = l.key; cell(row, l.key); cell(row, l.holder); cell(row, l.fencingToken, true); cell(row, l.leaseMs > 0 ? l.leaseMs + " ms" : "until released"); });
  $("events").replaceChildren(...state.events.map((e) => { const li = document.createElement("li"); li.dataset.kind = e.kind; li.appendChild(text(new Date(e.at).toLocaleTimeString() + "  " + e.by + ": " + e.message)); return li; }));
}
const source = new EventSource("events");
source.onmessage = (event) => render(JSON.parse(event.data));
source.onerror = () => { $("status").textContent = "disconnected from the dashboard; retrying…"; };
</script>
</body>
</html>
`;
