const esc = s => String(s ?? "").replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]));
const ago = t => { if (!t) return ""; const s = Math.max(0, (Date.now() - Date.parse(t)) / 1000);
  return s < 90 ? Math.round(s) + "s ago" : s < 5400 ? Math.round(s / 60) + "m ago" : Math.round(s / 3600) + "h ago"; };
const cls = st => st === "up" ? "ok" : st === "down" ? "bad" : "warn";
async function refresh() {
  try {
    // A read token, when the API asks for one, comes in the address's fragment
    // (/#token=...): never sent to the server in the URL, never in its logs.
    const token = new URLSearchParams(location.hash.slice(1)).get("token");
    const r = await fetch("v1/status", {cache: "no-store", headers: token ? {Authorization: "Bearer " + token} : {}});
    if (!r.ok) throw new Error("HTTP " + r.status + (r.status === 401 ? " (open the page as /#token=YOUR_READ_TOKEN)" : ""));
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
        const votes = m.votes && (m.votes.down.length || m.votes.own !== m.state)
          ? `<div class="votes">votes: ${esc(m.votes.summary)}</div>` : "";
        html += `<tr><td>${esc(p.name)}</td><td>${esc(m.address)}</td>
          <td class="state ${cls(m.state)}">${esc(m.state)}</td>
          <td>${ago(m.forced_by ? new Date(m.forced_by.created * 1000).toISOString() : m.since)}</td></tr>
          <tr><td></td><td colspan="3" class="reason">${esc(m.reason)}${forced}${votes}</td></tr>`;
      }
      html += "</table></div>";
    }
    document.getElementById("tiles").innerHTML = html;
    document.getElementById("overrides").innerHTML = doc.overrides.length
      ? "<h3>Overrides</h3><ul>" + doc.overrides.map(o => `<li>${esc(o.target)} forced ${esc(o.state)}:
        ${esc(o.reason)}${o.expires_at ? " (until " + esc(o.expires_at) + ")" : ""}</li>`).join("") + "</ul>" : "";
    await refreshCluster(token);
  } catch (e) {
    document.getElementById("error").textContent = "cannot reach geodns: " + e;
  }
}
// The cluster row: peers heard or not, isolated vantages, a partition, the governor.
async function refreshCluster(token) {
  const el = document.getElementById("cluster");
  const r = await fetch("v1/cluster", {cache: "no-store", headers: token ? {Authorization: "Bearer " + token} : {}});
  if (r.status === 404) { el.innerHTML = ""; return; }
  if (!r.ok) throw new Error("HTTP " + r.status + " from v1/cluster");
  const c = await r.json();
  const peers = c.peers.map(p => p.counted
    ? `<span class="ok">${esc(p.name)}</span>${p.same_config === false ? ' <span class="warn">(config differs)</span>' : ""}`
    : `<span class="bad">${esc(p.name)}: ${esc(p.problem || "not heard")}</span>`).join(", ");
  let html = `<h3>Cluster</h3><p>${esc(c.name)}${c.datacenter ? " (" + esc(c.datacenter) + ")" : ""}; peers: ${peers || "none"}</p>`;
  if (c.partitioned) html += '<p class="bad">minority partition: no peer heard; answering with the last agreed state</p>';
  if (c.isolated.length) html += `<p class="warn">isolated (votes not counted): ${c.isolated.map(esc).join(", ")}</p>`;
  if (c.governor) html += `<p class="bad">governor holding ${c.governor.holding.length} target(s) up:
    ${c.governor.holding.map(esc).join(", ")} (geodns release)</p>`;
  el.innerHTML = html;
}
refresh(); setInterval(refresh, 2000);
