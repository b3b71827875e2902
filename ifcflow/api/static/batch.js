// The batch page: a row per file, followed live through the API's Server-Sent Events (GET /batches/{id}/events:
// "status" events, then "end"), as the run page follows a run. No polling loop, no reload.
"use strict";
(function () {
  const root = document.getElementById("batch");
  const batchId = root.dataset.batch;
  const base = root.dataset.api;
  const ui = root.dataset.ui;
  let doc = JSON.parse(document.getElementById("initial-status").textContent);
  let source = null;

  const el = (tag, attrs, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v; else node.setAttribute(k, v === true ? "" : v);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === "") continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  };
  const label = (state) => state.replaceAll("_", " ");
  const badge = (state, extra) => el("span", {class: `badge s-${state}${extra ? " " + extra : ""}`}, label(state));
  const seconds = (s) => {
    if (s === null || s === undefined) return "";
    if (s < 60) return `${s.toFixed(1)} s`;
    const m = Math.floor(s / 60), r = Math.round(s % 60);
    return m < 60 ? `${m} min ${r} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
  };
  const ago = (iso) => {
    if (!iso) return "";
    const s = (Date.now() - Date.parse(iso)) / 1000;
    if (s < 45) return "just now";
    if (s < 3600) return `${Math.round(s / 60)} min ago`;
    if (s < 86400) return `${Math.round(s / 3600)} h ago`;
    return new Date(iso).toLocaleString();
  };
  // files are named relative to the uploads (or data) folder, as they were given: the server's layout is not news
  const folders = JSON.parse(root.dataset.folders || "[]");
  const shown = (text) => folders.reduce((t, f) => t.replaceAll(f, ""), text);
  const runUrl = (id) => `${ui}/runs/${encodeURIComponent(id)}`;

  function row(run) {
    const steps = Object.entries(run.steps || {}).map(([id, state]) =>
      el("span", {class: `dot s-${state}`, title: `${id}: ${label(state)}`, "data-step": id}, id));
    return el("tr", {"data-run": run.run_id, "data-state": run.status},
      el("td", {class: "mono"}, el("a", {href: runUrl(run.run_id), title: run.label}, shown(run.label))),
      el("td", {}, badge(run.status)),
      el("td", {class: "dots"}, steps),
      el("td", {class: "mono"}, run.failed_step || ""),
      el("td", {}, run.error ? el("div", {class: "err"}, shown(run.error)) : ""),
      el("td", {class: "num"}, seconds(run.duration)),
      el("td", {class: "mono sub"}, el("a", {href: runUrl(run.run_id)}, run.run_id)));
  }

  function render() {
    document.title = `${label(doc.status)} · ${doc.pipeline} · ifcflow`;
    document.getElementById("batch-state").replaceChildren(badge(doc.status, "big"));
    document.getElementById("batch-counts").textContent =
      Object.entries(doc.counts || {}).filter(([, n]) => n).map(([s, n]) => `${n} ${label(s)}`).join(" · ")
      + ` · ${doc.released} of ${doc.runs.length} released`;
    document.getElementById("batch-created").textContent = ago(doc.created_at);
    document.getElementById("batch-created").title = doc.created_at;
    document.getElementById("batch-ended").textContent = doc.ended_at ? ` · ended ${ago(doc.ended_at)}` : "";
    document.getElementById("files").replaceChildren(...doc.runs.map(row));
    const terminal = !["queued", "running"].includes(doc.status);
    const failedish = doc.runs.some((r) => ["failed", "canceled"].includes(r.status));
    document.getElementById("cancel").disabled = terminal;
    document.getElementById("retry").disabled = !(terminal && failedish);
  }

  function live(on, text) {
    const mark = document.getElementById("live");
    mark.className = `live ${on ? "on" : "off"}`;
    mark.textContent = text;
  }

  function follow() {
    if (source) source.close();
    source = new EventSource(`${base}/batches/${encodeURIComponent(batchId)}/events`);
    live(true, "live");
    const update = (event) => { doc = JSON.parse(event.data); render(); };
    source.addEventListener("status", update);
    source.addEventListener("end", (event) => {
      update(event);
      source.close();
      source = null;
      live(false, "batch ended");
      notice("");
    });
    source.onerror = () => {
      if (source && source.readyState === EventSource.CLOSED) live(false, "disconnected: reload to reconnect");
      else live(false, "reconnecting…");
    };
  }

  function notice(text, kind) {
    const box = document.getElementById("notice");
    box.hidden = !text;
    box.className = `notice ${kind || "info"}`;
    box.textContent = text;
  }

  async function act(action, button) {
    button.disabled = true;
    notice("");
    try {
      const response = await fetch(`${base}/batches/${encodeURIComponent(batchId)}/${action}`, {
        method: "POST", headers: {"Content-Type": "application/json"}, body: "{}", credentials: "same-origin"});
      const answer = await response.json().catch(() => ({}));
      if (!response.ok) throw new Error(typeof answer.detail === "string" ? answer.detail : JSON.stringify(answer.detail || response.statusText));
      notice(action === "retry" ? "Retrying the failed files' failed steps…" : "Cancel requested…", "info");
      follow();
    } catch (error) {
      notice(`${action} failed: ${error.message}`, "error");
      render();
    }
  }

  document.getElementById("cancel").addEventListener("click", (e) => act("cancel", e.currentTarget));
  document.getElementById("retry").addEventListener("click", (e) => act("retry", e.currentTarget));
  render();
  if (!["queued", "running"].includes(doc.status)) live(false, "batch ended");
  else follow();
})();
