"use strict";
// The live ATT&CK matrix. Plain DOM, no framework: the data endpoints under /ui/api/ do the
// counting; this script draws the matrix once, then refreshes counts every few seconds.
(function () {
  const POLL_MS = 3000;
  const TOKEN_KEY = "attackmesh.token";
  // Cividis, light to dark: readable with every common colour-vision deficiency.
  const STEPS = ["#fee838", "#c4b56c", "#8a8779", "#575d6d", "#123570", "#00224e"];
  const DARK_FROM = 3;
  const $ = (id) => document.getElementById(id);
  const el = (tag, props, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === "text") node.textContent = v;
      else if (k === "class") node.className = v;
      else if (k.startsWith("data-") || k.startsWith("aria-") || k === "role" || k === "tabindex") node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const c of children) if (c != null) node.append(c);
    return node;
  };

  let token = null;
  let counts = { techniques: {}, events: 0 };
  let polling = null;
  let inFlight = false;
  let selected = null;
  const folded = new Map(); // parent id -> user's choice (true: open)

  function readToken() {
    const hash = new URLSearchParams(location.hash.replace(/^#/, ""));
    const fromHash = hash.get("token");
    if (fromHash) {
      sessionStorage.setItem(TOKEN_KEY, fromHash);
      // Keep the token out of the address bar, history and bookmarks.
      history.replaceState(null, "", location.pathname + location.search);
    }
    return sessionStorage.getItem(TOKEN_KEY);
  }

  class HttpError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(path, asBlob) {
    const response = await fetch(path, { headers: { Authorization: "Bearer " + token }, cache: "no-store" });
    if (!response.ok) {
      let message = response.statusText;
      try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
      throw new HttpError(response.status, message);
    }
    return asBlob ? response.blob() : response.json();
  }

  function showLogin(message) {
    stopPolling();
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    $("app").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    $("token-input").focus();
  }

  function failed(err) {
    if (err.status === 401) return showLogin("The token was not accepted: " + err.message);
    if (err.status === 403) return showLogin("This token may not read the matrix (an analyst token is needed).");
    $("status").textContent = "error: " + err.message;
  }

  function view() {
    const q = new URLSearchParams();
    q.set("since", $("f-since").value);
    for (const [name, id] of [["detector", "f-detector"], ["severity", "f-severity"], ["entity", "f-entity"], ["campaign", "f-campaign"]]) {
      const v = $(id).value.trim();
      if (v) q.set(name, v);
    }
    return q.toString();
  }

  function colour(tally, max) {
    if (!tally || !tally.count) return null;
    let x;
    if ($("f-colour").value === "confidence") x = tally.confidence;
    else x = max <= 1 ? 1 : Math.log(tally.count) / Math.log(max);
    const i = Math.min(STEPS.length - 1, Math.max(0, Math.round(x * (STEPS.length - 1))));
    return i;
  }

  function paintCell(cell, max) {
    const tally = counts.techniques[cell.dataset.technique];
    const n = tally ? tally.count : 0;
    cell.dataset.count = String(n);
    const i = colour(tally, max);
    cell.style.background = i == null ? "" : STEPS[i];
    cell.style.color = i != null && i >= DARK_FROM ? "#fff" : "";
    const label = cell.querySelector(".id");
    const conf = tally ? " · " + n + "× · " + Math.round(tally.confidence * 100) + "%" : "";
    label.textContent = cell.dataset.technique + conf;
    cell.setAttribute("aria-label", cell.dataset.name + " " + cell.dataset.technique +
      (n ? ", observed " + n + " times, mean confidence " + Math.round(tally.confidence * 100) + "%" : ", not observed"));
  }

  function paint() {
    const values = Object.values(counts.techniques).map((t) => t.count);
    const max = values.length ? Math.max(...values) : 0;
    document.querySelectorAll(".technique").forEach((cell) => paintCell(cell, max));
    document.querySelectorAll(".row[data-parent]").forEach((row) => {
      const subs = row.nextElementSibling;
      const seen = [...subs.querySelectorAll(".technique")].some((c) => c.dataset.count !== "0");
      row.querySelector(".technique").classList.toggle("has-seen-subs", seen);
      if (!folded.has(row.dataset.parent)) setFold(row, seen);
    });
    document.querySelectorAll(".tactic").forEach((col) => {
      const seen = new Set([...col.querySelectorAll(".technique")].filter((c) => c.dataset.count !== "0").map((c) => c.dataset.technique));
      col.querySelector(".n").textContent = col.dataset.total + " techniques · " + seen.size + " observed";
    });
    legend(max);
    $("summary").textContent = counts.events + " events in view · " + Object.keys(counts.techniques).length +
      " techniques observed" + (counts.from ? " since " + counts.from : "");
    document.body.dataset.ready = "true";
  }

  function legend(max) {
    const box = $("legend");
    box.replaceChildren(el("span", { text: "Colour:" }));
    box.append(el("span", { class: "swatch", text: "not observed" }));
    const byConfidence = $("f-colour").value === "confidence";
    // Which counts (or confidences) each step stands for in this view.
    const ranges = STEPS.map(() => null);
    if (byConfidence) {
      STEPS.forEach((_, i) => { ranges[i] = Math.round(((i - 0.5) / (STEPS.length - 1)) * 100) + "–" + Math.round(((i + 0.5) / (STEPS.length - 1)) * 100) + "%"; });
      ranges[0] = "0–10%";
      ranges[STEPS.length - 1] = "90–100%";
    } else {
      const top = Math.min(max, 100000);
      const lo = STEPS.map(() => null);
      const hi = STEPS.map(() => null);
      for (let c = 1; c <= top; c = c < 1000 ? c + 1 : Math.ceil(c * 1.01)) {
        const i = colour({ count: c, confidence: 0 }, max);
        if (lo[i] == null) lo[i] = c;
        hi[i] = c;
      }
      STEPS.forEach((_, i) => { if (lo[i] != null) ranges[i] = lo[i] === hi[i] ? lo[i] + "×" : lo[i] + "–" + hi[i] + "×"; });
    }
    STEPS.forEach((c, i) => {
      if (ranges[i] == null) return;
      const s = el("span", { class: "swatch", text: ranges[i] });
      s.style.background = c;
      s.style.color = i >= DARK_FROM ? "#fff" : "";
      box.append(s);
    });
  }

  function setFold(row, open) {
    const subs = row.nextElementSibling;
    subs.hidden = !open;
    const button = row.querySelector(".fold");
    button.setAttribute("aria-expanded", String(open));
    button.textContent = open ? "▾" : "▸";
  }

  function cell(t, tacticName) {
    const node = el("div", {
      class: "technique", tabindex: "0", role: "button",
      "data-technique": t.id, "data-count": "0", "data-name": t.name,
      title: t.name + " (" + t.id + ") — " + tacticName,
    }, el("span", { class: "name", text: t.name }), el("span", { class: "id", text: t.id }));
    return node;
  }

  function draw(layout) {
    $("release").textContent = "ATT&CK " + layout.attack_version + " · " + layout.domain;
    const matrix = $("matrix");
    matrix.replaceChildren();
    for (const tactic of layout.tactics) {
      const list = el("ul", { role: "list" });
      for (const t of tactic.techniques) {
        const item = el("li");
        const row = el("div", { class: "row" }, cell(t, tactic.name));
        item.append(row);
        if (t.subtechniques.length) {
          row.dataset.parent = t.id;
          const fold = el("button", {
            type: "button", class: "fold", "aria-expanded": "false",
            "aria-label": "Sub-techniques of " + t.name, text: "▸",
          });
          fold.addEventListener("click", () => {
            const open = row.nextElementSibling.hidden;
            folded.set(t.id, open);
            setFold(row, open);
          });
          row.append(fold);
          const subs = el("ul", { class: "subs", role: "list", hidden: true });
          for (const s of t.subtechniques) subs.append(el("li", {}, cell(s, tactic.name)));
          item.append(subs);
        }
        list.append(item);
      }
      const heading = el("h2", {}, el("a", { href: tactic.url, target: "_blank", rel: "noopener noreferrer", text: tactic.name }),
        el("span", { class: "n" }));
      matrix.append(el("section", { class: "tactic", "data-tactic": tactic.shortname, "data-total": String(tactic.techniques.length), "aria-label": tactic.name }, heading, list));
    }
  }

  async function refresh() {
    if (inFlight || !token) return;
    inFlight = true;
    try {
      counts = await api("/ui/api/counts?" + view());
      paint();
      $("status").textContent = "live · updated " + new Date().toLocaleTimeString();
    } catch (err) {
      failed(err);
    } finally {
      inFlight = false;
    }
  }

  function stopPolling() {
    if (polling) clearInterval(polling);
    polling = null;
  }

  async function facets() {
    const f = await api("/ui/api/facets?" + view());
    const fill = (select, items, all) => {
      const current = select.value;
      select.replaceChildren(el("option", { value: "", text: all }));
      for (const item of items) select.append(el("option", { value: item.name, text: item.name + " (" + item.events + ")" }));
      select.value = current;
    };
    fill($("f-detector"), f.detectors, "all detectors");
    fill($("f-campaign"), f.campaigns, "all campaigns");
    $("campaign-filter").hidden = f.campaigns.length === 0;
    $("show-campaign").hidden = f.campaigns.length === 0;
    $("show-campaign").disabled = !$("f-campaign").value;
    $("campaigns").hidden = f.campaigns.length === 0;
  }

  function section(title, ...content) {
    return [el("h3", { text: title }), ...content];
  }

  function endpoint(e) {
    if (!e) return "";
    return [e.user, e.hostname, e.ip && (e.ip + (e.port ? ":" + e.port : ""))].filter(Boolean).join(" ");
  }

  async function details(id, returnTo) {
    const panel = $("details");
    const body = $("details-body");
    if (selected) selected.classList.remove("selected");
    selected = returnTo;
    if (selected) selected.classList.add("selected");
    panel.hidden = false;
    body.replaceChildren(el("p", { class: "muted", text: "Loading " + id + "…" }));
    let d;
    try {
      d = await api("/ui/api/techniques/" + encodeURIComponent(id) + "?" + view());
    } catch (err) {
      body.replaceChildren(el("p", { class: "error", text: err.message }));
      return failed(err);
    }
    const parts = [
      el("h2", { id: "details-title", text: d.name }),
      el("p", {}, el("strong", { text: d.id }), " · ",
        el("a", { href: d.url, target: "_blank", rel: "noopener noreferrer", text: "ATT&CK page" }),
        d.parent ? " · sub-technique of " + d.parent.name + " (" + d.parent.id + ")" : ""),
      el("p", { text: d.description }),
      el("p", { text: "Observed " + d.count + "× in this view, mean confidence " + Math.round(d.confidence * 100) + "%." }),
    ];
    const rules = el("ul");
    for (const r of d.rules) rules.append(el("li", { text: (r.rule_id || "(no rule id)") + " — " + r.source + ", " + r.observations + "×" }));
    parts.push(...section("Rules that produced it", d.rules.length ? rules :
      el("p", { class: "muted", text: "No observation in this view." }),
      d.rules.length ? el("p", { class: "muted", text: "From the newest " + d.rules_from + " observations." }) : null));
    const table = el("table", {}, el("thead", {}, el("tr", {}, ...["Time", "Event", "Entities", "Confidence", "Evidence"].map((h) => el("th", { text: h })))));
    const rows = el("tbody");
    for (const e of d.events) {
      const ev = e.event || {};
      const evidence = el("ul", { class: "evidence" });
      for (const x of e.evidence || []) evidence.append(el("li", { text: (x.rule_id || x.source) + (x.detail ? ": " + x.detail : "") }));
      rows.append(el("tr", {},
        el("td", { text: e.timestamp.replace("T", " ").replace(/\.\d+Z$/, "Z") }),
        el("td", { text: [ev.detector, ev.event_type, ev.severity].filter(Boolean).join(" · ") + (ev.description ? " — " + ev.description : "") }),
        el("td", { text: [endpoint(ev.source), endpoint(ev.destination)].filter(Boolean).join(" → ") }),
        el("td", { text: Math.round(e.confidence * 100) + "%" }),
        el("td", {}, evidence)));
    }
    table.append(rows);
    parts.push(...section("Latest events", d.events.length ? table : el("p", { class: "muted", text: "None in this view." })));
    const groups = el("ul");
    for (const g of d.groups) groups.append(el("li", {}, el("a", { href: g.url, target: "_blank", rel: "noopener noreferrer", text: g.name }), " " + g.id + (g.aliases.length ? " (" + g.aliases.slice(0, 3).join(", ") + ")" : "")));
    parts.push(...section("Groups known to use it (" + d.groups.length + ")", d.groups.length ? groups : el("p", { class: "muted", text: "None recorded by ATT&CK." })));
    if (d.mitigations.length) {
      const m = el("ul");
      for (const x of d.mitigations) m.append(el("li", {}, el("a", { href: x.url, target: "_blank", rel: "noopener noreferrer", text: x.name }), " " + x.id));
      parts.push(...section("Mitigations", m));
    }
    body.replaceChildren(...parts);
    panel.focus();
  }

  // ---- Campaigns: the list, and one campaign's panel (kill chain, timeline, members, risk,
  // candidate groups, and its Attack Flow drawn as a graph).
  const SVG = "http://www.w3.org/2000/svg";
  const svg = (tag, attrs, ...children) => {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    for (const c of children) if (c != null) node.append(c);
    return node;
  };
  const when = (t) => (t ? t.replace("T", " ").replace(/\.\d+Z$/, "Z") : "—");
  const clip = (s, n) => (s.length > n ? s.slice(0, n - 1) + "…" : s);

  function openPanel(returnTo, loading) {
    if (selected) selected.classList.remove("selected");
    selected = returnTo;
    $("details").hidden = false;
    $("details-body").replaceChildren(el("p", { class: "muted", text: loading }));
  }

  async function campaignList(returnTo) {
    openPanel(returnTo, "Loading campaigns…");
    let d;
    try {
      d = await api("/ui/api/campaigns");
    } catch (err) {
      $("details-body").replaceChildren(el("p", { class: "error", text: err.message }));
      return failed(err);
    }
    const list = el("ul", { class: "campaign-list" });
    for (const c of d.campaigns) {
      const button = el("button", { type: "button", "data-campaign": c.id,
        text: "Campaign of " + (c.entity || "an unknown entity") });
      button.addEventListener("click", () => campaign(c.id, returnTo));
      list.append(el("li", {}, button, " " + c.status + " · risk " + Math.round(c.risk) + " · " +
        c.tactics.length + " tactics · last seen " + when(c.last_seen) + (c.merged_into ? " · merged into " + c.merged_into : "")));
    }
    $("details-body").replaceChildren(el("h2", { id: "details-title", text: "Campaigns (" + d.campaigns.length + ")" }),
      d.campaigns.length ? list : el("p", { class: "muted", text: "No campaign yet." }));
    $("details").focus();
  }

  // The flow, top to bottom in time order: one box per action, an arrow per effect. Each box
  // is focusable and says in words what it shows; arrow keys move along the flow.
  function flowGraph(flow) {
    const W = 520, H = 58, GAP = 30, X = 10;
    const y = (i) => 10 + i * (H + GAP);
    const index = new Map(flow.actions.map((a, i) => [a.id, i]));
    const height = flow.actions.length ? y(flow.actions.length) - GAP + 10 : 20;
    const root = svg("svg", { class: "flow", viewBox: "0 0 " + (W + 2 * X) + " " + height, width: String(W + 2 * X),
      height: String(height), role: "list", "aria-label": "Attack Flow: " + flow.actions.length + " actions in time order" });
    root.append(svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5",
      markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" }, svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#1b1b1f" }))));
    for (const e of flow.edges) {
      const from = index.get(e.from), to = index.get(e.to);
      if (from == null || to == null) continue;
      const x = X + W / 2;
      root.append(svg("line", { x1: String(x), y1: String(y(from) + H), x2: String(x), y2: String(y(to) - 2),
        stroke: "#1b1b1f", "stroke-width": "2", "marker-end": "url(#arrow)", "data-from": e.from, "data-to": e.to }));
    }
    flow.actions.forEach((a, i) => {
      const next = flow.edges.filter((e) => e.from === a.id).map((e) => index.get(e.to) + 1);
      const label = "Step " + (i + 1) + " of " + flow.actions.length + ": " + a.technique_id + " " + a.name +
        (a.tactic_id ? ", tactic " + a.tactic_id : "") + ", started " + when(a.start) +
        (a.assets.length ? ", on " + a.assets.join(", ") : "") + (next.length ? ", leads to step " + next.join(", ") : "");
      const g = svg("g", { class: "step", tabindex: "0", role: "listitem", "aria-label": label, "data-technique": a.technique_id });
      g.append(svg("title", {}, label));
      g.append(svg("rect", { x: String(X), y: String(y(i)), width: String(W), height: String(H), rx: "5",
        fill: i % 2 ? "#eef0f6" : "#fff6c2", stroke: "#00224e", "stroke-width": "1.5" }));
      const text = (dy, content, weight) => {
        const t = svg("text", { x: String(X + 10), y: String(y(i) + dy), "font-size": "13", fill: "#1b1b1f" });
        if (weight) t.setAttribute("font-weight", weight);
        t.textContent = content;
        return t;
      };
      g.append(text(18, (i + 1) + ". " + a.technique_id + (a.tactic_id ? " · " + a.tactic_id : ""), "bold"),
        text(35, clip(a.name, 64)), text(51, when(a.start) + (a.assets.length ? " · " + clip(a.assets.join(", "), 40) : "")));
      g.addEventListener("keydown", (event) => {
        const steps = [...root.querySelectorAll(".step")];
        const k = steps.indexOf(g);
        const target = event.key === "ArrowDown" || event.key === "ArrowRight" ? steps[k + 1]
          : event.key === "ArrowUp" || event.key === "ArrowLeft" ? steps[k - 1] : null;
        if (target) { event.preventDefault(); target.focus(); }
      });
      root.append(g);
    });
    return root;
  }

  function table(headings, rows) {
    return el("table", {}, el("thead", {}, el("tr", {}, ...headings.map((h) => el("th", { text: h })))),
      el("tbody", {}, ...rows.map((cells) => el("tr", {}, ...cells.map((c) => el("td", { text: String(c) }))))));
  }

  async function campaign(id, returnTo) {
    openPanel(returnTo, "Loading " + id + "…");
    let d;
    try {
      d = await api("/ui/api/campaigns/" + encodeURIComponent(id));
    } catch (err) {
      $("details-body").replaceChildren(el("p", { class: "error", text: err.message }));
      return failed(err);
    }
    const c = d.campaign;
    const killchain = el("ol", { class: "killchain", id: "campaign-killchain", "aria-label": "Tactics in kill-chain order" });
    for (const t of d.kill_chain) killchain.append(el("li", { "data-tactic": t.id, text: t.name }));
    const entities = el("ul");
    for (const e of d.entities) entities.append(el("li", { text: e.type + " " + e.value + " · " + e.events + " events · risk " + Math.round(e.risk) + " · first " + when(e.first_seen) }));
    const members = table(["Detector", "Kind", "Events", "Event ids"], d.members.map((m) =>
      [m.detector, m.kind, m.events, m.event_ids.slice(0, 12).join(", ") + (m.event_ids.length > 12 ? ", … " + (m.event_ids.length - 12) + " more" : "")]));
    const risk = el("ul");
    for (const o of d.risk.objects) risk.append(el("li", { text: o.type + " " + o.value + ": " + Math.round(o.risk) + " (" + o.events + " events)" }));
    for (const r of d.risk.rules) risk.append(el("li", { text: "rule " + r.rule + " fired for " + r.object + " at " + when(r.fired_at) + ": " + r.detail }));
    const groups = el("ul");
    for (const g of d.groups.candidates) groups.append(el("li", { text: g.name + " " + g.id + " · score " + g.score.toFixed(2) + (g.matched.length ? " · uses " + g.matched.join(", ") : "") }));
    const filter = el("button", { type: "button", text: "Show its techniques in the matrix" });
    filter.addEventListener("click", () => {
      const select = $("f-campaign");
      if (![...select.options].some((o) => o.value === c.id)) select.append(el("option", { value: c.id, text: c.id }));
      select.value = c.id;
      $("f-since").value = "all";
      refresh();
    });
    $("details-body").replaceChildren(
      el("h2", { id: "details-title", "data-campaign": c.id, text: "Campaign of " + (c.entity || "an unknown entity") }),
      el("p", {}, el("strong", { text: c.id }), " · " + c.status + " · revision " + c.revision + " · " + when(c.first_seen) + " → " + when(c.last_seen)),
      el("p", { text: d.summary }),
      filter,
      ...section("Kill chain", d.kill_chain.length ? killchain : el("p", { class: "muted", text: "No tactic." })),
      ...section("Timeline", table(["First seen", "Technique", "Tactics", "Events", "First event"],
        d.timeline.map((t) => [when(t.first_seen), t.id + " " + t.name, t.tactics.join(", "), t.events, t.first_event + (t.asset ? " on " + t.asset : "")]))),
      ...section("Entities", entities),
      ...section("Members", members),
      ...section("Risk " + Math.round(d.risk.score), el("p", { class: "muted", text: "Per event: " + d.risk.formula }), risk),
      ...section("Candidate groups", el("p", { class: "evidence-" + d.groups.evidence, text: "Evidence " + d.groups.wording + "." }),
        d.groups.candidates.length ? groups : el("p", { class: "muted", text: "No candidate." })),
      ...section("Attack Flow", flowGraph(d.flow)),
    );
    document.body.dataset.campaign = c.id;
    $("details").focus();
  }

  function closeDetails() {
    $("details").hidden = true;
    if (selected) {
      selected.classList.remove("selected");
      selected.focus();
    }
    selected = null;
  }

  function visibleCells(column) {
    return [...column.querySelectorAll(".technique")].filter((c) => c.offsetParent !== null);
  }

  function onKey(event) {
    const cell = event.target.closest(".technique");
    if (!cell) return;
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      details(cell.dataset.technique, cell);
      return;
    }
    const column = cell.closest(".tactic");
    const cells = visibleCells(column);
    const i = cells.indexOf(cell);
    let target = null;
    if (event.key === "ArrowDown") target = cells[i + 1];
    else if (event.key === "ArrowUp") target = cells[i - 1];
    else if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
      const next = event.key === "ArrowRight" ? column.nextElementSibling : column.previousElementSibling;
      if (next) { const other = visibleCells(next); target = other[Math.min(i, other.length - 1)]; }
    }
    if (target) { event.preventDefault(); target.focus(); }
  }

  async function download() {
    try {
      const blob = await api("/ui/api/layer?" + view(), true);
      const url = URL.createObjectURL(blob);
      const a = el("a", { href: url, download: "attackmesh-layer.json" });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (err) {
      failed(err);
    }
  }

  async function open() {
    $("login").hidden = true;
    $("app").hidden = false;
    $("logout").hidden = false;
    $("status").textContent = "loading…";
    try {
      draw(await api("/ui/api/matrix"));
      await facets();
    } catch (err) {
      return failed(err);
    }
    await refresh();
    const wanted = new URLSearchParams(location.search).get("campaign");
    if (wanted) campaign(wanted, null);
    stopPolling();
    polling = setInterval(refresh, POLL_MS);
  }

  function start() {
    $("login").addEventListener("submit", (event) => {
      event.preventDefault();
      token = $("token-input").value.trim();
      $("token-input").value = "";
      if (!token) return;
      sessionStorage.setItem(TOKEN_KEY, token);
      open();
    });
    $("logout").addEventListener("click", () => showLogin(""));
    $("filters").addEventListener("change", () => {
      refresh();
      if (selected && selected.dataset.technique && !$("details").hidden) details(selected.dataset.technique, selected);
      $("show-campaign").disabled = !$("f-campaign").value;
    });
    $("show-campaign").addEventListener("click", () => campaign($("f-campaign").value, $("show-campaign")));
    $("campaigns").addEventListener("click", () => campaignList($("campaigns")));
    $("filters").addEventListener("submit", (event) => { event.preventDefault(); refresh(); });
    $("f-colour").addEventListener("change", paint);
    $("download").addEventListener("click", download);
    $("expand").addEventListener("click", () => {
      const rows = document.querySelectorAll(".row[data-parent]");
      const open = [...rows].some((r) => r.nextElementSibling.hidden);
      rows.forEach((r) => { folded.set(r.dataset.parent, open); setFold(r, open); });
      $("expand").textContent = open ? "Fold all sub-techniques" : "Expand all sub-techniques";
    });
    $("matrix").addEventListener("click", (event) => {
      const cell = event.target.closest(".technique");
      if (cell) details(cell.dataset.technique, cell);
    });
    $("matrix").addEventListener("keydown", onKey);
    $("details-close").addEventListener("click", closeDetails);
    document.addEventListener("keydown", (event) => { if (event.key === "Escape" && !$("details").hidden) closeDetails(); });
    window.addEventListener("hashchange", () => { const t = readToken(); if (t && t !== token) { token = t; open(); } });
    token = readToken();
    if (token) open(); else showLogin("");
  }

  start();
})();
