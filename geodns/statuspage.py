# ruff: noqa: E501 - an embedded HTML document, wrapped as HTML reads best
"""The status page: one HTML document, no assets, readable at 3 a.m.

Datacenters are tiles coloured by how many of their members answer; each tile
lists its members with state, reason and since; forced states say who forced
them. It polls /v1/status every two seconds.
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>geodns status</title>
<style>
 body { font: 16px/1.4 system-ui, sans-serif; margin: 0; background: #111; color: #eee; }
 header { padding: 12px 20px; background: #222; display: flex; gap: 24px; align-items: baseline; }
 header h1 { font-size: 20px; margin: 0; }
 .ok { color: #5fd35f; } .bad { color: #ff5f5f; } .warn { color: #ffc04d; }
 #tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 16px; padding: 20px; }
 .tile { border-radius: 10px; padding: 14px 16px; background: #1c1c1c; border-left: 10px solid #666; }
 .tile.up { border-color: #2e9e2e; } .tile.partial { border-color: #d98f00; } .tile.down { border-color: #d02f2f; }
 .tile h2 { margin: 0 0 8px; font-size: 26px; display: flex; justify-content: space-between; }
 .tile h2 small { font-size: 15px; color: #aaa; font-weight: normal; }
 table { width: 100%; border-collapse: collapse; font-size: 14px; }
 td { padding: 3px 4px; vertical-align: top; border-top: 1px solid #2a2a2a; }
 .state { font-weight: bold; text-transform: uppercase; }
 .reason { color: #bbb; font-size: 13px; }
 #overrides { padding: 0 20px 20px; }
 #overrides li { color: #ffc04d; }
 #error { color: #ff5f5f; }
</style></head>
<body>
<header><h1>geodns</h1><span id="ready"></span><span id="version"></span><span id="updated"></span>
<span id="error"></span></header>
<div id="tiles"></div>
<div id="overrides"></div>
<script>
const esc = s => String(s ?? "").replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]));
const ago = t => { if (!t) return ""; const s = Math.max(0, (Date.now() - Date.parse(t)) / 1000);
  return s < 90 ? Math.round(s) + "s ago" : s < 5400 ? Math.round(s / 60) + "m ago" : Math.round(s / 3600) + "h ago"; };
const cls = st => st === "up" ? "ok" : st === "down" ? "bad" : "warn";
async function refresh() {
  try {
    const r = await fetch("v1/status", {cache: "no-store"});
    const doc = await r.json();
    document.getElementById("error").textContent = "";
    document.getElementById("ready").innerHTML = doc.ready
      ? '<span class="ok">ready</span>' : '<span class="warn">waiting for first probes</span>';
    document.getElementById("version").textContent = "snapshot v" + doc.version;
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    const byDc = {};
    for (const dc of doc.datacenters) byDc[dc] = [];
    for (const p of doc.pools) for (const m of p.members) (byDc[m.dc] ||= []).push([p, m]);
    let html = "";
    for (const [dc, rows] of Object.entries(byDc)) {
      const up = rows.filter(([, m]) => m.state === "up").length;
      const state = rows.length === 0 ? "" : up === rows.length ? "up" : up === 0 ? "down" : "partial";
      html += `<div class="tile ${state}"><h2>${esc(dc)} <small>${up}/${rows.length} up</small></h2><table>`;
      for (const [p, m] of rows) {
        const forced = m.forced_by ? `<div class="warn">forced by ${esc(m.forced_by.target)}: ${esc(m.forced_by.reason)}
          (probes say ${esc(m.real_state)})</div>` : "";
        html += `<tr><td>${esc(p.name)}</td><td>${esc(m.address)}</td>
          <td class="state ${cls(m.state)}">${esc(m.state)}</td>
          <td>${ago(m.forced_by ? new Date(m.forced_by.created * 1000).toISOString() : m.since)}</td></tr>
          <tr><td></td><td colspan="3" class="reason">${esc(m.reason)}${forced}</td></tr>`;
      }
      html += "</table></div>";
    }
    document.getElementById("tiles").innerHTML = html;
    document.getElementById("overrides").innerHTML = doc.overrides.length
      ? "<h3>Overrides</h3><ul>" + doc.overrides.map(o => `<li>${esc(o.target)} forced ${esc(o.state)}:
        ${esc(o.reason)}${o.expires_at ? " (until " + esc(o.expires_at) + ")" : ""}</li>`).join("") + "</ul>" : "";
  } catch (e) {
    document.getElementById("error").textContent = "cannot reach geodns: " + e;
  }
}
refresh(); setInterval(refresh, 2000);
</script></body></html>
"""
