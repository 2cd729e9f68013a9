// The status page: what an operator opens during an incident. Plain JS, no build
// step, no external assets. Everything that comes from outside (reasons carry
// backend bodies, drains carry what an operator typed) goes through esc() before
// it reaches the page; the API's CSP forbids inline script besides.
"use strict";
const esc = s => String(s ?? "").replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const ago = t => {
  if (!t) return "";
  const s = Math.max(0, (Date.now() - Date.parse(t)) / 1000);
  return s < 90 ? Math.round(s) + "s ago" : s < 5400 ? Math.round(s / 60) + "m ago"
    : s < 172800 ? Math.round(s / 3600) + "h ago" : Math.round(s / 86400) + "d ago";
};
const when = t => t ? `<time title="${esc(t)}">${esc(ago(t))}</time>` : "";
const cls = st => st === "up" ? "ok" : st === "down" ? "bad" : "warn";
const $ = id => document.getElementById(id);

function headers() {
  // A read token, when the API asks for one, comes in the address's fragment
  // (/#token=...): never sent to the server in the URL, never in its logs.
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  return token ? {Authorization: "Bearer " + token} : {};
}

async function getJson(path) {
  const r = await fetch(path, {cache: "no-store", headers: headers()});
  if (r.status === 404) return null;
  if (!r.ok) throw new Error("HTTP " + r.status + " from " + path
    + (r.status === 401 ? " (open the page as /#token=YOUR_READ_TOKEN)" : ""));
  return r.json();
}

// Last probe results, oldest first: one bar each, coloured by result, taller when slower.
function strip(history) {
  if (!history || !history.length) return "";
  const bars = history.map(([ok, ms]) => {
    const level = !ok || ms == null ? 5 : ms < 5 ? 1 : ms < 25 ? 2 : ms < 100 ? 3 : ms < 500 ? 4 : 5;
    const label = (ok ? "ok" : "failed") + (ms == null ? "" : ", " + ms + " ms");
    return `<i class="${ok ? "s-ok" : "s-bad"} l${level}" title="${esc(label)}"></i>`;
  }).join("");
  return `<span class="strip">${bars}</span>`;
}

function readiness(doc, reasons) {
  if (doc.ready && !reasons) return '<span class="ok">ready</span>';
  const why = reasons ? reasons.split("\n").slice(1).filter(Boolean) : [];
  return `<span class="warn">not ready</span>${why.length ? `<ul class="why">${why.map(w => `<li>${esc(w)}</li>`).join("")}</ul>` : ""}`;
}

function pools(doc) {
  let html = '<h3>Where traffic goes</h3><table class="pools"><tr><th>pool</th><th>policy</th><th>answering from</th><th>since</th></tr>';
  for (const p of doc.pools) {
    const now = p.now;
    if (now && now.failing_open) {
      html += `<tr class="failing"><td>${esc(p.name)}</td><td>${esc(p.policy)}</td>
        <td><b>FAILING OPEN</b>: ${esc(now.summary)}</td><td>${when(now.fallback_since)}</td></tr>`;
    } else if (now) {
      html += `<tr><td>${esc(p.name)}</td><td>${esc(p.policy)}</td>
        <td>${esc(now.answering_from.join(", ") || "nowhere")} <small>${esc(now.members_up)}/${esc(now.members)} members up</small></td>
        <td>${when(now.since)}</td></tr>`;
    } else {
      html += `<tr><td>${esc(p.name)}</td><td>${esc(p.policy)}</td><td class="warn">waiting for first probes</td><td></td></tr>`;
    }
  }
  return html + "</table>";
}

function tiles(doc) {
  const byDc = {};
  for (const dc of doc.datacenters) byDc[dc] = [];
  for (const p of doc.pools) for (const m of p.members) (byDc[m.dc] ||= []).push([p, m]);
  let html = "";
  for (const [dc, rows] of Object.entries(byDc)) {
    const up = rows.filter(([, m]) => m.state === "up").length;
    const state = rows.length === 0 ? "" : up === rows.length ? "up" : up === 0 ? "down" : "partial";
    html += `<div class="tile ${state}"><h2>${esc(dc)} <small>${up}/${rows.length} up</small></h2><table>`;
    for (const [p, m] of rows) {
      const forced = m.forced_by ? `<div class="warn">forced ${esc(m.forced_by.state)} by ${esc(m.forced_by.target)}:
        ${esc(m.forced_by.reason || "no reason given")} (probes say ${esc(m.real_state)})</div>` : "";
      const votes = m.votes && (m.votes.down.length || m.votes.own !== m.state)
        ? `<div class="votes">votes: ${esc(m.votes.summary)}</div>` : "";
      const latency = m.last_latency_ms == null ? "" : `${esc(m.last_latency_ms)} ms`;
      const reason = m.reason ? `<div class="bad">${esc(m.reason)}</div>` : "";
      const since = m.forced_by ? new Date(m.forced_by.created * 1000).toISOString() : m.since;
      html += `<tr><td>${esc(p.name)}</td><td>${esc(m.address)}</td>
        <td class="state ${cls(m.state)}">${esc(m.state)}</td><td>${when(since)}</td>
        <td>${strip(m.history)}</td><td class="ms">${latency}</td></tr>`;
      if (reason || forced || votes) html += `<tr><td></td><td colspan="5" class="reason">${reason}${forced}${votes}</td></tr>`;
    }
    html += "</table></div>";
  }
  return html;
}

function drains(doc) {
  if (!doc.overrides.length) return "";
  return "<h3>Drains and overrides</h3><table>" + doc.overrides.map(o => `<tr>
    <td class="warn">${esc(o.target)}</td><td>forced ${esc(o.state)}</td><td>${esc(o.reason || "no reason given")}</td>
    <td>${o.by ? "by " + esc(o.by) : ""}</td><td>${when(o.created_at)}</td>
    <td>${o.expires_at ? "until " + esc(o.expires_at) : "until undrained"}</td></tr>`).join("") + "</table>";
}

function sync(doc) {
  const r = doc.route53;
  if (!r) return "";
  const state = r.failing ? `<span class="bad">FAILING for ${esc(r.failed_rounds)} rounds: ${esc(r.last_error)}</span>`
    : r.ok ? '<span class="ok">in sync</span>' : `<span class="warn">last round failed: ${esc(r.last_error)}</span>`;
  return `<h3>Route53 sync</h3><p>${state}; last success ${r.last_success ? when(r.last_success) : "never"};
    writer: ${esc(r.writer)}</p>`;
}

function timeline(doc) {
  const events = doc.events || [];
  if (!events.length) return "";
  return "<h3>Recent changes</h3><table class=\"timeline\">" + events.slice(0, 30).map(e => `<tr>
    <td>${when(e.time)}</td><td>${esc(e.subject)}${e.dc ? " (" + esc(e.dc) + ")" : ""}</td>
    <td><span class="${cls(e.old)}">${esc(e.old)}</span> &rarr; <span class="${cls(e.new)}">${esc(e.new)}</span>
    ${e.forced ? '<span class="warn">forced</span>' : ""}</td><td class="reason">${esc(e.reason)}</td></tr>`).join("") + "</table>";
}

// The cluster row: peers heard or not, isolated vantages, a partition, the governor.
function cluster(c) {
  if (!c) return "";
  const peers = c.peers.map(p => p.counted
    ? `<span class="ok">${esc(p.name)}</span>${p.same_config === false ? ' <span class="warn">(config differs)</span>' : ""}`
    : `<span class="bad">${esc(p.name)}: ${esc(p.problem || "not heard")}</span>`).join(", ");
  let html = `<h3>Cluster</h3><p>${esc(c.name)}${c.datacenter ? " (" + esc(c.datacenter) + ")" : ""}; peers: ${peers || "none"}</p>`;
  if (c.partitioned) html += '<p class="bad">minority partition: no peer heard; answering with the last agreed state</p>';
  if (c.isolated.length) html += `<p class="warn">isolated (votes not counted): ${c.isolated.map(esc).join(", ")}</p>`;
  if (c.governor) html += `<p class="bad">governor holding ${c.governor.holding.length} target(s) up:
    ${c.governor.holding.map(esc).join(", ")} (geodns release)</p>`;
  return html;
}

async function refresh() {
  try {
    const doc = await getJson("v1/status");
    const r = await fetch("readyz", {cache: "no-store"});
    const reasons = r.ok ? null : await r.text();
    $("error").textContent = "";
    $("ready").innerHTML = readiness(doc, reasons);
    $("version").textContent = "snapshot v" + doc.version;
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
    const failing = doc.pools.filter(p => p.now && p.now.failing_open);
    $("banner").innerHTML = failing.map(p => `<div class="banner">pool ${esc(p.name)} is FAILING OPEN:
      ${esc(p.now.summary)}, ${when(p.now.fallback_since)}</div>`).join("");
    $("pools").innerHTML = pools(doc);
    $("tiles").innerHTML = tiles(doc);
    $("overrides").innerHTML = drains(doc);
    $("sync").innerHTML = sync(doc);
    $("timeline").innerHTML = timeline(doc);
    $("cluster").innerHTML = cluster(await getJson("v1/cluster"));
    document.body.dataset.version = doc.version;  // for tests and scripts: the snapshot shown
  } catch (e) {
    $("error").textContent = "cannot reach geodns: " + e;
  }
}
refresh(); setInterval(refresh, 2000);
