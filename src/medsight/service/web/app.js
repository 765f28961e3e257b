// MedSight dashboard: a token-authenticated client of the service's own API (no third-party code).
"use strict";
const $ = (sel) => document.querySelector(sel);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const token = () => sessionStorage.getItem("medsight-token");

async function api(path, opts = {}) {
  const r = await fetch(path, {...opts, headers: {...(opts.headers || {}), Authorization: `Bearer ${token()}`}});
  if (r.status === 401) { signOut(); throw new Error("signed out"); }
  if (!r.ok) throw new Error(`${r.status} ${(await r.text()).slice(0, 200)}`);
  return r;
}
const json = async (path) => (await api(path)).json();
async function imageInto(img, path) {
  const blob = await (await api(path)).blob();
  img.src = URL.createObjectURL(blob);
}

function signOut() {
  sessionStorage.removeItem("medsight-token");
  $("#nav").hidden = true; $("#view").innerHTML = ""; $("#signin").hidden = false;
}

$("#signin").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  sessionStorage.setItem("medsight-token", $("#token").value.trim());
  try {
    const me = await (await fetch("/api/v1/whoami", {headers: {Authorization: `Bearer ${token()}`}})).json();
    if (!me.role) throw new Error("invalid token");
    $("#signin-error").textContent = "";
    start(me);
  } catch (e) {
    sessionStorage.removeItem("medsight-token");
    $("#signin-error").textContent = "That token was not accepted.";
  }
});
$("#signout").addEventListener("click", signOut);

function start(me) {
  // back to the viewer page that sent us here to sign in (only a path of this service's viewer)
  const next = new URLSearchParams(location.search).get("next");
  if (next && /^\/viewer\/(?!\/)/.test(next)) { location.replace(next); return; }
  $("#signin").hidden = true; $("#nav").hidden = false;
  $("#who").textContent = `${me.name} (${me.role})`;
  if (!location.hash) location.hash = "#/worklist"; else route();
}

const badge = (p) => `<span class="badge ${esc(p)}">${esc(p)}</span>`;
// never show a non-zero probability as 0.0% or a value below 1 as 100.0%
const pct = (v) => (v == null ? "–" : v > 0 && v < 0.0005 ? "<0.1%" : v < 1 && v > 0.9995 ? ">99.9%"
  : (100 * v).toFixed(1) + "%");

async function worklist() {
  const rows = await json("/api/v1/worklist");
  $("#view").innerHTML = `<div class="card"><h2>Worklist</h2>
    <table id="worklist"><thead><tr><th>Priority</th><th>Patient</th><th>Study date</th><th>Modality</th>
    <th>Finding</th><th>Score</th><th>Status</th><th>Received</th><th></th></tr></thead><tbody>
    ${rows.map((s) => `<tr class="row" data-study="${esc(s.study_uid)}">
      <td>${badge(s.priority)}</td><td>${esc(s.patient_id)}</td><td>${esc(s.study_date)}</td>
      <td>${esc(s.modalities.join(", "))}</td><td>${esc(s.top_label ?? (s.outcomes[0] || ""))}
        ${(s.lesions || []).map((l) => `<div class="lesion">${lesionLine(l)}</div>`).join("")}</td>
      <td>${pct(s.top_score)}</td><td>${esc(s.status)}</td><td class="muted">${esc(s.last_received)}</td>
      <td>${viewerLink(s.viewer_url)}</td></tr>`).join("")}
    </tbody></table>${rows.length ? "" : '<p class="muted">No studies received yet.</p>'}</div>`;
  document.querySelectorAll("tr.row").forEach((tr) =>
    tr.addEventListener("click", (ev) => {
      if (!ev.target.closest("a.viewer")) location.hash = `#/study/${tr.dataset.study}`;
    }));
}

// "open in viewer": OHIF in this tab (the tab's token goes with it; a new tab would have none)
const viewerLink = (url) => url ? `<a class="viewer" href="${esc(url)}">Open in viewer</a>` : "";

// one finding of a lesion: "23.1 mm", "4.2 mL", a probability as a percentage, a category as it is
const findingText = (f) => f.text != null ? esc(f.text)
  : f.unit === "1" ? pct(f.value) : `${Number(f.value).toFixed(f.unit === "mm" ? 1 : 2)} ${esc(f.unit)}`;
const lesionName = (l) => `${esc((l.findings[0]?.name || "lesion").split("_")[0])} ${esc(l.lesion_id)}`;
const lesionLine = (l) => `<span class="muted">${lesionName(l)}:</span> ` +
  l.findings.map((f) => `<span title="${esc(f.title || f.name)}">${findingText(f)}</span>`).join(", ");
const lesionTable = (r) => `<table class="lesions"><thead><tr><th>Lesion</th>
  ${r.lesions[0].findings.map((f) => `<th>${esc(f.title || f.name)}</th>`).join("")}<th>Centre (mm, LPS)</th><th>Crop</th>
  </tr></thead><tbody>${r.lesions.map((l) => `<tr data-lesion="${esc(l.lesion_id)}"><td>${lesionName(l)}</td>
  ${l.findings.map((f) => `<td>${findingText(f)}</td>`).join("")}
  <td class="muted">${l.region ? l.region.center_mm.map((v) => Number(v).toFixed(1)).join(", ") : "–"}</td>
  <td>${l.crop_url ? `<img class="crop" alt="crop of ${lesionName(l)}">` : ""}</td></tr>`).join("")}</tbody></table>`;
const overlayCaption = (r) => r.outputs.volumes_ml ? maskCaption(r.outputs)
  : r.outputs.heatmap ? `Heatmap (${esc(r.outputs.heatmap)})` : "Findings circled on the slice through the top one";

const volumes = (v) => Object.entries(v).map(([name, ml]) => `${esc(name)} ${Number(ml).toFixed(2)} mL`).join(", ");

const maskCaption = (out) => {
  const slice = (out.mask || {}).overlay_slice;
  return `Mask${slice == null ? "" : ` on slice ${slice + 1}`}: ` + Object.keys(out.volumes_ml).map((name, i) =>
    `<span class="swatch" style="background:${LABEL_COLOURS[i % LABEL_COLOURS.length]}"></span>${esc(name)}`).join(" ");
};
// the colours of medsight.palette.LABEL_COLOURS, for labels 1, 2, ...
const LABEL_COLOURS = ["#e59e00", "#57b5e8", "#009e73", "#f0e342", "#0073b2", "#d65e00", "#cc78a6"];

// "Sent to PACS" lists only what the PACS confirmed; the rest says where it stands
const delivery = (r) => {
  const sent = (r.deliveries || []).filter((o) => o.status === "sent");
  const waiting = (r.deliveries || []).filter((o) => o.status !== "sent").map((o) =>
    `${esc(o.kind)} to ${esc(o.destination)}: ${esc(o.status)}` + (o.attempts
      ? ` (${o.attempts} attempt${o.attempts === 1 ? "" : "s"}${o.last_error ? ", last error " + esc(o.last_error) : ""})`
      : ""));
  return `Sent to PACS: ${sent.map((o) => esc(o.kind)).join(", ") || "not yet"}` +
    (waiting.length ? `; not yet confirmed: ${waiting.join("; ")}` : "");
};

// a result that counts what it found (a detector's nodule_count), rather than deciding for a class
const counts = (r) => (r.findings || []).some((f) => /_count$/.test(f.name));

const webhook = (a) => esc(a.webhook_status) + (a.webhook_status === "retrying" || a.webhook_status === "failed"
  ? ` (${a.webhook_attempts} attempt${a.webhook_attempts === 1 ? "" : "s"}${a.webhook_error ? ", " + esc(a.webhook_error) : ""})`
  : "");

async function study(uid) {
  const s = await json(`/api/v1/studies/${encodeURIComponent(uid)}`);
  const series = s.series.map((x) => `<li>${esc(x.modality)} ${esc(x.body_part || "")} ${esc(x.description || "")}:
     ${x.n_instances} instance(s), ${esc(x.status)}${x.outcome ? " – " + esc(x.outcome) : ""}</li>`).join("");
  const results = s.results.map((r) => `<div class="card result" data-result="${r.id}">
    <h3>${esc(r.model)} <span class="muted">v${esc(r.model_version)}</span>
      ${r.alerts.map((a) => badge(a.priority)).join(" ")} ${viewerLink(r.viewer_url)}</h3>
    ${r.status !== "ok" ? `<p class="error">${esc(r.error)}</p>`
      : r.outputs.volumes_ml ? `<p>Volumes: <strong>${volumes(r.outputs.volumes_ml)}</strong> (mask sent as DICOM SEG)</p>`
      : counts(r) ? `<p>Found: <strong>${esc(r.label)}</strong> (threshold ${pct(r.threshold)})</p>`
      : `<p>Decision: <strong>${esc(r.label)}</strong>; score ${pct(r.score)} (threshold ${pct(r.threshold)})</p>`}
    ${r.lesions && r.lesions.length ? lesionTable(r) : ""}
    <div class="images">
      ${r.image_url ? `<figure><img class="source" alt="source image"><figcaption>Image</figcaption></figure>` : ""}
      ${r.overlay_url ? `<figure><img class="heatmap" alt="${r.outputs.volumes_ml ? "mask" : r.outputs.heatmap ? "heatmap" : "findings"} overlay">
        <figcaption>${overlayCaption(r)}</figcaption></figure>` : ""}
    </div>
    ${r.suggestion ? `<p>Suggested: <strong>${esc(r.suggestion.suggestion)}</strong></p>
      <ul class="reasons">${r.suggestion.reasons.map((x) => `<li>${esc(x)}</li>`).join("")}</ul>` : ""}
    <p class="muted delivery">${delivery(r)};
      input sha256 ${esc((r.input_sha256 || "").slice(0, 12))}…; ${esc(JSON.stringify(r.timings))}</p></div>`).join("");
  $("#view").innerHTML = `<div class="card"><h2>Study ${viewerLink(s.viewer_url)}</h2>
    <p>Patient <a href="#/patient/${encodeURIComponent(s.patient_id || "")}">${esc(s.patient_id)}</a>;
      study date ${esc(s.study_date)}</p><p class="muted">${esc(s.study_uid)}</p><ul>${series}</ul></div>
    ${results || '<p class="muted">No results for this study.</p>'}`;
  for (const r of s.results) {
    const card = document.querySelector(`.result[data-result="${r.id}"]`);
    if (r.image_url) imageInto(card.querySelector("img.source"), r.image_url);
    if (r.overlay_url) imageInto(card.querySelector("img.heatmap"), r.overlay_url);
    for (const l of r.lesions || []) {
      if (l.crop_url) imageInto(card.querySelector(`tr[data-lesion="${CSS.escape(l.lesion_id)}"] img.crop`), l.crop_url);
    }
  }
}

async function alerts() {
  const rows = await json("/api/v1/alerts");
  $("#view").innerHTML = `<div class="card"><h2>Alerts</h2><table id="alerts"><thead><tr><th>Priority</th>
    <th>Rule</th><th>Message</th><th>Webhook</th><th>Raised</th><th></th></tr></thead><tbody>
    ${rows.map((a) => `<tr class="row" data-study="${esc(a.study_uid)}"><td>${badge(a.priority)}</td>
      <td>${esc(a.rule)}</td><td>${esc(a.message)}</td><td>${webhook(a)}</td>
      <td class="muted">${esc(a.created_at)}</td>
      <td>${a.acknowledged_by ? "ack: " + esc(a.acknowledged_by) : `<button data-ack="${a.id}">Acknowledge</button>`}</td>
      </tr>`).join("")}</tbody></table></div>`;
  document.querySelectorAll("button[data-ack]").forEach((b) => b.addEventListener("click", async (ev) => {
    ev.stopPropagation(); await api(`/api/v1/alerts/${b.dataset.ack}/ack`, {method: "POST"}); alerts(); }));
  document.querySelectorAll("tr.row").forEach((tr) =>
    tr.addEventListener("click", () => { location.hash = `#/study/${tr.dataset.study}`; }));
}

async function queue() {
  const [counts, failed] = await Promise.all([json("/api/v1/queue"), json("/api/v1/queue/failed")]);
  const statuses = ["pending", "running", "done", "failed"];
  $("#view").innerHTML = `<div class="card"><h2>Queue</h2><table id="queue"><thead><tr><th>Kind</th>
    ${statuses.map((st) => `<th>${st}</th>`).join("")}</tr></thead><tbody>
    ${Object.entries(counts).map(([kind, by]) => `<tr><td>${esc(kind)}</td>
      ${statuses.map((st) => `<td>${by[st] || 0}</td>`).join("")}</tr>`).join("")}</tbody></table></div>
    <div class="card"><h2>Failed jobs</h2><table id="failed"><thead><tr><th>Kind</th><th>Job</th><th>Attempts</th>
    <th>Reason</th><th>Failed</th></tr></thead><tbody>
    ${failed.map((j) => `<tr data-job="${j.id}"><td>${esc(j.kind)}</td><td class="muted">${esc(j.key)}</td>
      <td>${j.attempts}</td><td>${j.poison ? badge("poison") + " " : ""}${esc(j.error)}</td>
      <td class="muted">${esc(j.finished_at)}</td></tr>`).join("")}</tbody></table>
    ${failed.length ? "" : '<p class="muted">No failed jobs.</p>'}</div>`;
}

function sparkline(values, w = 240) {
  if (values.length < 2) return "";
  const h = 60, step = w / (values.length - 1);
  const pts = values.map((v, i) => `${(i * step).toFixed(1)},${(h - v * h).toFixed(1)}`).join(" ");
  return `<svg class="trend" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}"><line x1="0" x2="${w}" y1="${h / 2}" y2="${h / 2}" stroke="#34424f"/>
    <polyline fill="none" stroke="#4aa3ff" stroke-width="2" points="${pts}"/></svg>`;
}

// the drift monitor: per model and sender, its state, the last check's tests, and the trend of the
// input side (refer rate and fingerprint-distance PSI) over the kept snapshots
function driftTrend(history, stat, key, top) {
  const v = history.map((x) => (x.stats[stat] || {})[key]).filter((x) => x != null).map((x) => Math.min(x / top, 1));
  return v.length > 1 ? sparkline(v, 130) : '<span class="muted">not enough checks yet</span>';
}
async function drift() {
  const rows = await json("/api/v1/drift");
  const num = (x) => (x == null ? "–" : Number(x).toPrecision(2));
  $("#view").innerHTML = `<div class="card wide"><h2>Drift</h2>
    <p class="muted">Each model's recent results from each sender, tested against its validation data after every
    result. The alarm (one alert per episode) is raised by the input side: fingerprint distance and refer rate.</p>
    <table id="drift"><thead><tr><th>Model</th><th>Sender</th><th>Status</th><th>Tests (last check)</th>
    <th>Refer rate, 0–100%</th><th>Distance PSI, 0–2</th></tr></thead><tbody>
    ${rows.map((r) => `<tr data-model="${esc(r.model)}" data-source="${esc(r.source)}"><td>${esc(r.model)} v${esc(r.model_version)}</td>
      <td>${esc(r.source)}</td><td>${badge(r.status)}
        <div class="muted">since ${esc(r.since || "start")}</div>
        <div class="muted">${r.episodes} episode(s), ${r.checks} checks</div></td>
      <td>${Object.entries((r.last || {}).tests || {}).map(([k, t]) => `<div class="test${t.drift ? (t.alarms ? " error" : " warn") : ""}">${esc(k)}:
        ${t.rate != null ? `rate ${pct(t.rate)} (validation ${pct(t.reference)})` : `PSI ${num(t.psi)}`}, p ${num(t.p)}${t.alarms ? "" : " (shown only)"}</div>`).join("")}</td>
      <td>${driftTrend(r.history, "refer", "rate", 1)}</td><td>${driftTrend(r.history, "distance", "psi", 2)}</td>
      </tr>`).join("")}</tbody></table>
    ${rows.length ? "" : '<p class="muted">No model with a drift reference has a full window of results yet.</p>'}</div>`;
}

// the response assessment of the patient's serial studies: size over time with its thresholds, one row per study
const mm = (v) => (v == null ? "–" : `${Number(v).toFixed(1)} mm`);
function responseCard(r) {
  if (!r) return "";
  if (r.status !== "ok") return `<div class="card" id="response"><h2>Response</h2>
    <p class="error">${esc(r.error)}</p></div>`;
  return `<div class="card" id="response"><h2>Response (${esc(r.criteria)}, policy ${esc(r.policy)})</h2>
    <p>Latest: <strong class="category">${esc(r.category || "no category")}</strong>;
      suggested: <strong class="suggestion">${esc(r.suggestion || "none")}</strong></p>
    ${r.plot_url ? `<figure><img class="response-plot" alt="lesion size over time with the response thresholds">
      <figcaption>Size over time; dashed: progression (from nadir) and partial-response (from baseline) thresholds</figcaption></figure>` : ""}
    <table id="response-timepoints"><thead><tr><th>Study date</th><th>Volume</th><th>Longest</th><th>Perpendicular</th>
    <th>Category</th><th>Suggestion</th></tr></thead><tbody>${r.timepoints.map((p) => `<tr class="row" data-study="${esc(p.study_uid)}">
      <td>${esc(p.date)}</td><td>${p.volume_ml == null ? "–" : Number(p.volume_ml).toFixed(2) + " mL"}</td>
      <td>${mm(p.longest_diameter_mm)}</td><td>${mm(p.perpendicular_diameter_mm)}</td>
      <td>${esc(p.category || "baseline")}</td><td>${esc(p.suggestion || "")}</td></tr>`).join("")}</tbody></table>
    <details><summary>Reasons</summary><ul class="reasons">${r.reasons.map((x) => `<li>${esc(x)}</li>`).join("")}</ul></details>
    <p class="muted">Decision support for the treating team, not a treatment order; assessed ${esc(r.assessed_at)}.</p></div>`;
}

async function patient(pid) {
  const t = await json(`/api/v1/patients/${encodeURIComponent(pid)}/timeline`);
  const trends = Object.entries(t.trends).map(([m, x]) => `<p>${esc(m)}: ${esc(x.direction)} over ${x.n} result(s)
    ${sparkline(x.values || [])}</p>`).join("");
  const scored = t.entries.length > 0;  // model results: the monitoring policy's suggestion on their scores
  $("#view").innerHTML = `<div class="card"><h2>Patient ${esc(t.patient_id)}</h2>
    ${scored || !t.response ? `<p>Current suggestion: <strong>${esc(t.current_suggestion || "none")}</strong></p>
    <ul class="reasons">${t.current_reasons.map((x) => `<li>${esc(x)}</li>`).join("")}</ul>` : ""}${trends}
    ${(t.alerts || []).map((a) => `<p class="alert">${badge(a.priority)} ${esc(a.message)}</p>`).join("")}</div>
    ${responseCard(t.response)}
    <div class="card"${scored || !t.response ? "" : " hidden"}><table id="timeline"><thead><tr><th>When</th><th>Study date</th><th>Model</th><th>Decision</th>
    <th>Score</th><th>Suggestion</th></tr></thead><tbody>${t.entries.map((e) => `<tr class="row" data-study="${esc(e.study_uid)}">
    <td class="muted">${esc(e.created_at)}</td><td>${esc(e.study_date)}</td><td>${esc(e.model)} v${esc(e.model_version)}</td>
    <td>${esc(e.label)}</td><td>${pct(e.score)}</td><td>${esc(e.suggestion || "")}</td></tr>`).join("")}</tbody></table></div>`;
  document.querySelectorAll("tr.row").forEach((tr) =>
    tr.addEventListener("click", () => { location.hash = `#/study/${tr.dataset.study}`; }));
  if (t.response && t.response.plot_url) imageInto($("img.response-plot"), t.response.plot_url);
}

async function route() {
  if (!token()) { signOut(); return; }
  const [, view, arg] = location.hash.split("/");
  try {
    if (view === "study") await study(decodeURIComponent(arg));
    else if (view === "alerts") await alerts();
    else if (view === "queue") await queue();
    else if (view === "drift") await drift();
    else if (view === "patient") await patient(decodeURIComponent(arg));
    else await worklist();
  } catch (e) {
    if (token()) $("#view").innerHTML = `<p class="error">${esc(e.message)}</p>`;
  }
}
window.addEventListener("hashchange", route);
if (token()) json("/api/v1/whoami").then(start).catch(signOut); else signOut();
