// The run page: renders the status document and follows the run live through the API's Server-Sent Events
// (GET /runs/{id}/events: "status" events, then "end"). No polling loop, no reload.
"use strict";
(function () {
  const root = document.getElementById("run");
  const runId = root.dataset.run;
  const base = root.dataset.api;  // "" when the API is served at the site root
  let doc = JSON.parse(document.getElementById("initial-status").textContent);
  let source = null;

  const el = (tag, attrs, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "style") Object.assign(node.style, v);  // CSSOM: the page's CSP refuses style attributes
      else node.setAttribute(k, v === true ? "" : v);
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
    if (s < 1) return `${Math.round(s * 1000)} ms`;
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
  const fileName = (path) => path.split("/").pop();
  const url = (path) => `${base}${path}`;

  // A failed step may still have published an output (a failing IDS gate writes its report first): ask the API
  // once per attempt whether each output exists (one byte of it), and show the ones that do.
  const probed = {};
  const outputUrl = (id, name) =>
    url(`/runs/${encodeURIComponent(runId)}/outputs/${encodeURIComponent(id)}/${encodeURIComponent(name)}`);
  function written(id, name, step) {
    const key = `${id}/${name}/${step.attempt}`;
    if (!(key in probed)) {
      probed[key] = false;
      // not followed: with object storage the answer is a redirect to the store, which the page's CSP does not
      // let a script reach (connect-src 'self'); a redirect means the file exists, as a 2xx does
      fetch(outputUrl(id, name), {headers: {Range: "bytes=0-0"}, credentials: "same-origin", redirect: "manual"})
        .then((response) => {
          probed[key] = response.ok || response.type === "opaqueredirect";
          if (probed[key]) render();
        })
        .catch(() => {});
    }
    return probed[key];
  }

  // What a step's "Details" cell says: why it failed, was skipped or canceled; where a cached step's outputs
  // came from; its result's message; and any detail the status document gives (e.g. "no worker listening").
  const DONE = ["succeeded", "cached"];
  function details(id, step) {
    const parts = [];
    const result = step.result || {};
    if (step.status === "skipped") parts.push(el("div", {class: "why"}, `why skipped: ${step.error || "its condition was false"}`));
    else if (step.status === "failed" || step.status === "canceled") {
      parts.push(el("div", {class: "err"}, step.error || step.status));
      if (step.errors && step.errors.length > 1) {
        parts.push(el("div", {class: "sub"}, `earlier attempts: ${step.errors.slice(0, -1).join(" · ")}`));
      }
    } else if (step.error) parts.push(el("div", {class: "detail"}, step.error));
    const origin = result.cached_from;  // {run_id, step, job_id}
    if (step.status === "cached" && origin && origin.run_id) {
      parts.push(el("div", {class: "detail"}, "cached from ",
        el("a", {href: `${root.dataset.ui}/runs/${encodeURIComponent(origin.run_id)}#step-${encodeURIComponent(origin.step || "")}`,
                 class: "mono", "data-cached-from": origin.run_id}, origin.run_id),
        origin.step && origin.step !== id ? ` (step ${origin.step})` : ""));
    }
    if (result.message) parts.push(el("div", {class: "sub"}, result.message));
    if (step.status === "pending" && step.after && step.after.length) {
      parts.push(el("div", {class: "detail", "data-detail": "after"},
        `starts after ${step.after.join(", ")} (which makes the shared geometry)`));
    }
    for (const key of ["detail", "message"]) {
      if (typeof step[key] === "string" && step[key] && step[key] !== step.error) parts.push(el("div", {class: "detail", "data-detail": key}, step[key]));
    }
    return parts;
  }

  function row(id, step) {
    const progress = step.progress || {};
    const cells = [];
    cells.push(el("td", {}, el("a", {href: `#step-${id}`, class: "mono", "data-focus": id}, id)));
    cells.push(el("td", {}, step.service, el("div", {class: "sub nowrap"}, `queue ${step.queue}`)));
    cells.push(el("td", {}, badge(step.status)));
    cells.push(el("td", {class: "mono sub"}, step.worker || ""));
    cells.push(el("td", {class: "num"}, step.attempt ? `${step.attempt} / ${step.attempts}` : `– / ${step.attempts}`));
    cells.push(el("td", {class: "num"}, seconds(step.duration)));
    const done = DONE.includes(step.status);
    const pct = done ? 100 : (progress.percent || 0);
    cells.push(el("td", {class: "num"},
      step.status === "running" || done
        ? [`${Math.round(pct)} %`, el("div", {class: `bar ${step.status}`}, el("i", {style: {width: `${pct}%`}})),
           step.status === "running" && progress.message ? el("div", {class: "sub"}, progress.message) : null]
        : ""));
    cells.push(el("td", {}, details(id, step)));
    const outputs = Object.entries(step.outputs || {})
      .filter(([name]) => done ? !(step.result && step.result.outputs) || name in step.result.outputs
                               : step.status === "failed" && written(id, name, step))
      .map(([name, path]) => el("div", {class: "output"},
        el("a", {href: outputUrl(id, name), download: fileName(path), title: path, "data-output": `${id}/${name}`},
           `${name}: ${fileName(path)}`),
        el("span", {class: "nowrap"},
          el("a", {href: `${outputUrl(id, name)}/preview`, target: "_blank", rel: "noopener", class: "sub",
                   "data-preview": `${id}/${name}`}, " preview"),
          lineageLink((targets.outputs[id] || {})[name], `${id}/${name}`))));
    cells.push(el("td", {class: "outputs"}, outputs));
    return el("tr", {id: `step-${id}`, "data-step": id, "data-state": step.status}, cells);
  }

  // Lineage: each input and output links to its page (/ui/lineage/PATH); a plain click shows the graph here.
  const targets = JSON.parse(document.getElementById("lineage-targets").textContent);
  const lineageHref = (key) => `${root.dataset.ui}/lineage/${window.ifcflowLineage.encodePath(key)}`;
  const lineageLink = (key, label) => key
    ? el("a", {href: lineageHref(key), class: "sub lineage-link", "data-lineage": key, "data-lineage-of": label}, " lineage")
    : null;
  function showLineage(key) {
    const card = document.getElementById("lineage");
    card.hidden = false;
    document.getElementById("lineage-name").textContent = key.split("/").pop();
    document.getElementById("lineage-open").setAttribute("href", lineageHref(key));
    window.ifcflowLineage.show(document.getElementById("lineage-box"), key, {api: base, ui: root.dataset.ui, depth: 6});
    card.scrollIntoView({block: "nearest", behavior: "smooth"});
  }
  const inputs = Object.entries(targets.inputs || {});
  document.getElementById("inputs-card").hidden = inputs.length === 0;
  document.getElementById("inputs").replaceChildren(...inputs.map(([name, key]) =>
    el("span", {class: "input", "data-input": name}, `${name}: `, key ? el("span", {class: "mono"}, fileName(key)) : "(outside the data folder)",
       lineageLink(key, `inputs/${name}`))));
  document.getElementById("lineage-close").addEventListener("click", () => { document.getElementById("lineage").hidden = true; });

  function render() {
    document.title = `${label(doc.status)} · ${doc.pipeline} · ifcflow`;
    document.getElementById("run-state").replaceChildren(badge(doc.status, "big"));
    const c = doc.counts || {};
    const total = Object.keys(doc.steps).length;
    document.getElementById("run-counts").textContent =
      Object.entries(c).filter(([, n]) => n).map(([s, n]) => `${n} ${label(s)}`).join(" · ") || `${total} steps`;
    document.getElementById("run-created").textContent = ago(doc.created_at);
    document.getElementById("run-created").title = doc.created_at;
    document.getElementById("run-ended").textContent = doc.ended_at ? ` · ended ${ago(doc.ended_at)}` : "";
    const body = document.getElementById("steps");
    body.replaceChildren(...Object.entries(doc.steps).map(([id, step]) => row(id, step)));
    for (const [id, step] of Object.entries(doc.steps)) {
      const node = document.querySelector(`svg.dag g.node[data-step="${CSS.escape(id)}"]`);
      if (!node) continue;
      node.setAttribute("class", `node state-${step.status}`);
      node.querySelector(".state").textContent = step.status;
      node.querySelector("title").textContent = `${id} (${step.service}): ${step.status}`;
    }
    const failedish = Object.values(doc.steps).some((s) => ["failed", "skipped", "canceled"].includes(s.status));
    const terminal = !["queued", "running"].includes(doc.status);
    document.getElementById("cancel").disabled = terminal;
    document.getElementById("retry").disabled = !(terminal && failedish);
    document.getElementById("reports").hidden = false;
  }

  function live(on, text) {
    const mark = document.getElementById("live");
    mark.className = `live ${on ? "on" : "off"}`;
    mark.textContent = text;
  }

  function follow() {
    if (source) source.close();
    source = new EventSource(url(`/runs/${encodeURIComponent(runId)}/events`));
    live(true, "live");
    const update = (event) => { doc = JSON.parse(event.data); render(); };
    source.addEventListener("status", update);
    source.addEventListener("end", (event) => {
      update(event);
      source.close();
      source = null;
      live(false, "run ended");
      notice("");
    });
    source.onerror = () => {
      if (source && source.readyState === EventSource.CLOSED) live(false, "disconnected: reload to reconnect");
      else live(false, "reconnecting…");
    };
  }

  async function act(action, button) {
    button.disabled = true;
    notice("");
    try {
      const response = await fetch(url(`/runs/${encodeURIComponent(runId)}/${action}`), {
        method: "POST", headers: {"Content-Type": "application/json"}, body: "{}", credentials: "same-origin"});
      const answer = await response.json().catch(() => ({}));
      if (!response.ok) throw new Error(typeof answer.detail === "string" ? answer.detail : JSON.stringify(answer.detail || response.statusText));
      notice(action === "retry" ? "Retrying the failed, skipped and canceled steps…" : "Cancel requested…", "info");
      follow();
    } catch (error) {
      notice(`${action} failed: ${error.message}`, "error");
      render();
    }
  }

  function notice(text, kind) {
    const box = document.getElementById("notice");
    box.hidden = !text;
    box.className = `notice ${kind || "info"}`;
    box.textContent = text;
  }

  document.getElementById("cancel").addEventListener("click", (e) => act("cancel", e.currentTarget));
  document.getElementById("retry").addEventListener("click", (e) => act("retry", e.currentTarget));
  document.addEventListener("click", (event) => {
    const link = event.target.closest("a[data-lineage]");
    if (link && !(event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0)) {
      event.preventDefault();
      showLineage(link.dataset.lineage);
      return;
    }
    const target = event.target.closest("[data-focus], svg.dag g.node");
    if (!target) return;
    const id = target.dataset.focus || target.dataset.step;
    document.querySelectorAll("tr.focus").forEach((r) => r.classList.remove("focus"));
    const tr = document.getElementById(`step-${id}`);
    if (tr) { tr.classList.add("focus"); tr.scrollIntoView({block: "nearest", behavior: "smooth"}); }
  });

  document.addEventListener("keydown", (event) => {
    const node = event.target.closest && event.target.closest("svg.dag g.node");
    if (node && (event.key === "Enter" || event.key === " ")) { event.preventDefault(); node.dispatchEvent(new MouseEvent("click", {bubbles: true})); }
  });

  render();
  if (!["queued", "running"].includes(doc.status)) live(false, "run ended");
  else follow();
})();
