// A file's lineage as a small graph: files -> steps -> files, what produced it (upstream) and what was derived from
// it (downstream), from the history database (GET /lineage/{key-or-sha256}). Drawn as inline SVG by this script:
// no library, nothing fetched but the API's JSON. Every text is set with textContent (file names are user text).
// Used by the lineage page (/ui/lineage/...) and the run page's "lineage" actions (window.ifcflowLineage.show).
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const W = 212, H = 46, GAP_X = 46, GAP_Y = 16, PAD = 12;

  const el = (tag, attrs, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) node.setAttribute(k, v);
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  };
  const svg = (tag, attrs, text) => {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  };
  // A page address keeps the path readable; the API call encodes it whole ("/" as %2F), so the browser cannot resolve
  // a ".." in it before the API checks it.
  const encodePath = (path) => path.split("/").map(encodeURIComponent).join("/");
  const fit = (text, max) => text.length <= max ? text : text.slice(0, Math.ceil(max / 2) - 1) + "…" + text.slice(-(Math.floor(max / 2)));
  const size = (n) => n === null || n === undefined ? "" : n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KB` : `${(n / 1048576).toFixed(1)} MB`;

  // The document as a graph: nodes by id ("f:<sha256>", "s:<run>\u0000<step>"), edges (from, to).
  function graph(doc) {
    const nodes = new Map(), edges = [];
    for (const f of doc.files) nodes.set(`f:${f.sha256}`, {kind: "file", id: `f:${f.sha256}`, file: f});
    for (const s of doc.steps) nodes.set(`s:${s.run_id}\u0000${s.step}`, {kind: "step", id: `s:${s.run_id}\u0000${s.step}`, step: s});
    for (const e of doc.edges) {
      const file = `f:${e.sha256}`, step = `s:${e.run_id}\u0000${e.step}`;
      if (!nodes.has(file)) nodes.set(file, {kind: "file", id: file, file: {sha256: e.sha256, paths: [], size: null}});
      edges.push(e.role === "input" ? [file, step] : [step, file]);
    }
    return {nodes, edges};
  }

  // Columns by longest path from the sources (a cycle, a step writing what it read, stops after n rounds); rows
  // ordered by the mean row of each node's predecessors, so edges mostly run straight.
  function layout(g) {
    const col = new Map([...g.nodes.keys()].map((id) => [id, 0]));
    for (let round = 0; round < g.nodes.size; round++) {
      let moved = false;
      for (const [a, b] of g.edges) if (a !== b && col.get(b) < col.get(a) + 1) { col.set(b, col.get(a) + 1); moved = true; }
      if (!moved) break;
    }
    for (const id of col.keys()) {  // a source (an input nothing here produced) sits just before its first reader
      if (g.edges.some(([, b]) => b === id)) continue;
      const next = g.edges.filter(([a]) => a === id).map(([, b]) => col.get(b));
      if (next.length) col.set(id, Math.max(0, Math.min(...next) - 1));
    }
    const columns = [];
    for (const [id, c] of col) (columns[c] ||= []).push(id);
    const row = new Map();
    columns.forEach((ids) => {
      const mean = (id) => {
        const from = g.edges.filter(([, b]) => b === id).map(([a]) => row.get(a)).filter((r) => r !== undefined);
        return from.length ? from.reduce((x, y) => x + y, 0) / from.length : 0;
      };
      ids.sort((a, b) => mean(a) - mean(b) || a.localeCompare(b));
      ids.forEach((id, i) => row.set(id, i));
    });
    const tallest = Math.max(1, ...columns.map((ids) => (ids || []).length));
    const pos = new Map();
    columns.forEach((ids, c) => {
      const offset = (tallest - ids.length) * (H + GAP_Y) / 2;
      ids.forEach((id, r) => pos.set(id, {x: PAD + c * (W + GAP_X), y: PAD + offset + r * (H + GAP_Y)}));
    });
    return {pos, width: PAD * 2 + columns.length * W + (columns.length - 1) * GAP_X, height: PAD * 2 + tallest * (H + GAP_Y) - GAP_Y};
  }

  function fileNode(node, targets, ui) {
    const f = node.file;
    const path = f.paths[0] || "";
    const name = path ? path.split("/").pop() : "(path not recorded)";
    const isTarget = targets.includes(f.sha256);
    const group = isTarget ? svg("g") : svg("a", {href: `${ui}/lineage/${f.sha256}`});
    group.setAttribute("class", `lnode file${isTarget ? " target" : ""}`);
    group.setAttribute("data-sha256", f.sha256);
    group.setAttribute("data-kind", "file");
    group.setAttribute("data-name", name);
    group.append(svg("title", {}, `${f.paths.join("\n") || name}\nsha256 ${f.sha256}${f.size !== null ? `\n${size(f.size)}` : ""}`));
    group.append(svg("rect", {width: W, height: H, rx: 16}));
    group.append(svg("text", {x: 12, y: 19, class: "name"}, fit(name, 23)));
    group.append(svg("text", {x: 12, y: 36, class: "sub"}, `${f.sha256.slice(0, 12)}${f.size !== null ? " · " + size(f.size) : ""}${f.paths.length > 1 ? ` · ${f.paths.length} paths` : ""}`));
    return group;
  }

  function stepNode(node, ui) {
    const s = node.step;
    const kept = s.run_exists === true;
    const group = kept ? svg("a", {href: `${ui}/runs/${encodeURIComponent(s.run_id)}#step-${encodeURIComponent(s.step)}`}) : svg("g");
    group.setAttribute("class", `lnode step state-${s.state || "unknown"}${kept ? "" : " gone"}`);
    group.setAttribute("data-run", s.run_id);
    group.setAttribute("data-step", s.step);
    group.setAttribute("data-kind", "step");
    const when = s.ended_at ? new Date(s.ended_at * 1000).toLocaleString() : "";
    group.append(svg("title", {}, `run ${s.run_id}\nstep ${s.step} (${s.service || "?"}): ${s.state || "?"}` +
      `${s.actor ? `\nby ${s.actor}` : ""}${when ? `\nended ${when}` : ""}` +
      (kept ? "" : "\nthe run is no longer in Redis: known from the history only")));
    group.append(svg("rect", {width: W, height: H, rx: 4}));
    group.append(svg("text", {x: 12, y: 19, class: "name"}, fit(`${s.step} · ${s.service || "?"}`, 23)));
    group.append(svg("text", {x: 12, y: 36, class: "sub"}, fit(s.run_id, 28)));
    return group;
  }

  function draw(doc, ui) {
    const g = graph(doc);
    const {pos, width, height} = layout(g);
    const root = svg("svg", {class: "lineage", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
                             "aria-label": `lineage: ${doc.files.length} files, ${doc.steps.length} steps`});
    const defs = svg("defs");
    const marker = svg("marker", {id: "lin-arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse"});
    marker.append(svg("path", {d: "M 0 0 L 10 5 L 0 10 z", class: "arrowhead"}));
    defs.append(marker);
    root.append(defs);
    for (const [a, b] of g.edges) {
      const p = pos.get(a), q = pos.get(b);
      const x1 = p.x + W, y1 = p.y + H / 2, x2 = q.x, y2 = q.y + H / 2, bend = Math.max(30, (x2 - x1) / 2);
      const path = svg("path", {class: "ledge", d: `M ${x1} ${y1} C ${x1 + bend} ${y1}, ${x2 - bend} ${y2}, ${x2 - 2} ${y2}`, "marker-end": "url(#lin-arrow)"});
      path.setAttribute("data-from", a);
      path.setAttribute("data-to", b);
      root.append(path);
    }
    for (const node of g.nodes.values()) {
      const drawn = node.kind === "file" ? fileNode(node, doc.sha256, ui) : stepNode(node, ui);
      const at = pos.get(node.id);
      drawn.setAttribute("transform", `translate(${at.x} ${at.y})`);
      root.append(drawn);
    }
    return root;
  }

  // What the box shows for each answer: the graph, "nothing recorded yet", the database down, another error.
  async function show(box, target, options) {
    const opts = Object.assign({api: "", ui: "/ui", direction: "both", depth: 10}, options || {});
    box.dataset.state = "loading";
    box.replaceChildren(el("p", {class: "sub"}, "Reading the history…"));
    let response, answer;
    try {
      response = await fetch(`${opts.api}/lineage/${encodeURIComponent(target)}?direction=${opts.direction}&depth=${opts.depth}`,
                             {credentials: "same-origin", headers: {Accept: "application/json"}});
      answer = await response.json().catch(() => ({}));
    } catch (error) {
      return state(box, "error", "The server could not be reached: ", String(error.message || error));
    }
    const detail = typeof answer.detail === "string" ? answer.detail : JSON.stringify(answer.detail || response.statusText);
    if (response.status === 404 && detail.includes("not in the history")) {
      return state(box, "empty", "Nothing recorded yet. ", "No recorded run read or wrote this file (by its contents, " +
        "sha256). A run is recorded when it is submitted and as its steps end; one that has not run yet, or whose " +
        "records still wait in the outbox, shows up later.");
    }
    if (response.status === 503) {
      return state(box, "unavailable", "The history database is unavailable. ", `${detail.replace(/\.?$/, ".")} Runs still run: their ` +
        "records wait in Redis and are written when the database is back.");
    }
    if (!response.ok) return state(box, "error", "This lineage cannot be shown: ", detail);
    const files = answer.files.length, steps = answer.steps.length;
    const up = new Set(answer.edges.filter((e) => e.role === "output" && answer.sha256.includes(e.sha256)).map((e) => e.run_id + "/" + e.step));
    const down = new Set(answer.edges.filter((e) => e.role === "input" && answer.sha256.includes(e.sha256)).map((e) => e.run_id + "/" + e.step));
    box.dataset.state = "graph";
    box.replaceChildren(
      el("p", {class: "sub lsummary"}, `${files} file${files === 1 ? "" : "s"}, ${steps} step${steps === 1 ? "" : "s"}: ` +
         `made by ${up.size} step${up.size === 1 ? "" : "s"}, read by ${down.size}. Steps link to their run while ` +
         "Redis keeps it (dashed: known from the history only); files open their own lineage."),
      el("div", {class: "lineage-wrap"}));
    const drawn = draw(answer, opts.ui);
    const room = box.clientWidth || 1000;  // a graph up to 1.4 times the room is shrunk to fit; a larger one scrolls
    if (Number(drawn.getAttribute("width")) <= room * 1.4) drawn.classList.add("fits");
    box.querySelector(".lineage-wrap").append(drawn);
    return answer;
  }

  function state(box, name, head, text) {
    box.dataset.state = name;
    box.replaceChildren(el("div", {class: `notice ${name === "empty" ? "info" : "error"}`, role: "status"}, el("strong", {}, head), text));
    return null;
  }

  window.ifcflowLineage = {show, encodePath};

  const page = document.getElementById("lineage-page");
  if (page) {
    show(document.getElementById("lineage-graph"), page.dataset.target,
         {api: page.dataset.api, ui: page.dataset.ui, direction: page.dataset.direction, depth: page.dataset.depth});
  }
})();
