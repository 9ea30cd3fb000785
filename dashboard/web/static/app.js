// The clawpatrol dashboard's page script. Everything the agent controls
// (summaries, hosts, reasons) is set with textContent, never as HTML.
"use strict";

const csrf = document.querySelector('meta[name="csrf"]').content;

// el builds an element: el("td", {class: "x"}, "text", child...).
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "dataset") Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids.flat()) {
    if (k === undefined || k === null) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

function fmtMS(ms) {
  if (!ms) return "—";
  if (ms < 1) return Math.round(ms * 1000) + "µs";
  if (ms < 1000) return (Math.round(ms * 10) / 10) + "ms";
  return (Math.round(ms / 100) / 10) + "s";
}

function fmtBytes(n) {
  if (n < 1024) return n + " B";
  if (n < 1 << 20) return (n / 1024).toFixed(1) + " KiB";
  return (n / (1 << 20)).toFixed(1) + " MiB";
}

function fmtTime(t) {
  const d = new Date(t);
  if (isNaN(d)) return t || "";
  const p = (n, w) => String(n).padStart(w || 2, "0");
  return p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds()) + "." + p(d.getMilliseconds(), 3);
}

function fmtAge(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return s + "s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + "m" + String(s % 60).padStart(2, "0") + "s";
  return Math.floor(m / 60) + "h" + String(m % 60).padStart(2, "0") + "m";
}

// decide posts Approve or Deny; the outcome arrives as a "decided" event,
// this only reports a refusal (already decided, not this surface's turn).
async function decide(id, verdict, reason, out) {
  out.textContent = verdict === "allow" ? "approving…" : "denying…";
  let body;
  try {
    const resp = await fetch("/api/approvals/" + encodeURIComponent(id), {
      method: "POST",
      headers: {"X-CSRF-Token": csrf, "Content-Type": "application/x-www-form-urlencoded"},
      body: new URLSearchParams({verdict, reason}),
      credentials: "same-origin",
    });
    body = await resp.json();
  } catch (err) {
    out.textContent = "failed: " + err;
    return;
  }
  out.textContent = body.ok ? (verdict === "allow" ? "approved" : "denied") : "refused: " + body.error;
  return body.ok;
}

function wireDecide(form, id, then) {
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const verdict = ev.submitter ? ev.submitter.value : "deny";
    for (const b of form.querySelectorAll("button")) b.disabled = true;
    const ok = await decide(id, verdict, form.elements.reason.value, form.querySelector(".outcome"));
    if (then) then(ok);
  });
}

// matches is the page's filter; the server's /api/actions applies the
// same one (http.go, matches).
function matches(r, f) {
  if (f.verdict === "approve" && r.verdict !== "approve" && !r.approver) return false;
  if (f.verdict && f.verdict !== "approve" && r.verdict !== f.verdict) return false;
  if (f.protocol && r.protocol !== f.protocol) return false;
  if (f.endpoint && r.endpoint !== f.endpoint) return false;
  if (f.session && r.session !== f.session) return false;
  return true;
}

function indexPage() {
  const maxRows = 5000;
  const rows = new Map();      // id -> {data, tr}
  const sessions = new Map();  // id -> session header
  const pending = new Map();   // id -> li
  let recent = [];
  let offset = 0;              // server clock minus ours
  const tbody = document.querySelector("#actions tbody");
  const form = document.getElementById("filters");
  const seen = {protocol: new Set(), endpoint: new Set(), session: new Set()};

  // Filters live in the address bar so a filtered view can be bookmarked.
  const params = new URLSearchParams(location.search);
  for (const name of ["verdict", "protocol", "endpoint", "session"]) {
    const v = params.get(name);
    if (v) {
      ensureOption(name, v);
      form.elements[name].value = v;
    }
  }
  form.addEventListener("change", () => {
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) q.set(k, v);
    history.replaceState(null, "", q.toString() ? "?" + q : location.pathname);
    refilter();
  });

  function filters() {
    const f = {};
    for (const [k, v] of new FormData(form)) f[k] = v;
    return f;
  }

  function ensureOption(name, value) {
    if (!value || (seen[name] && seen[name].has(value))) return;
    if (seen[name]) seen[name].add(value);
    const sel = form.elements[name];
    if ([...sel.options].some((o) => o.value === value)) return;
    const label = name === "session" ? value.slice(-8) : value;
    sel.append(el("option", {value}, label));
  }

  function refilter() {
    const f = filters();
    let shown = 0;
    for (const {data, tr} of rows.values()) {
      tr.hidden = !matches(data, f);
      if (!tr.hidden) shown++;
    }
    document.getElementById("shown").textContent = shown === rows.size ? String(shown) : shown + " of " + rows.size;
    document.getElementById("no-actions").hidden = rows.size > 0;
  }

  function rowCells(r) {
    const verdict = r.monitor ? r.verdict + " (monitor)" : r.verdict;
    return [
      el("td", {class: "time"}, fmtTime(r.time)),
      el("td", {class: "col-session mono"}, r.session.slice(-8)),
      el("td", {}, r.protocol),
      el("td", {}, r.endpoint || el("span", {class: "muted"}, "—")),
      el("td", {class: "summary"}, el("a", {href: "/action/" + encodeURIComponent(r.id), title: r.destination}, r.summary),
        el("span", {class: "dest"}, r.destination)),
      el("td", {}, el("span", {class: "badge v-" + r.verdict}, verdict)),
      el("td", {class: "rule", title: r.reason || ""}, r.rule),
      el("td", {}, r.approver || ""),
      el("td", {}, el("span", {class: "status s-" + r.status}, r.status),
        r.upstream_status ? el("span", {class: "muted"}, " " + r.upstream_status) : null),
      el("td", {class: "num"}, r.status === "open" || r.status === "waiting" ? "…" : fmtMS(r.duration_ms)),
    ];
  }

  function putRow(r) {
    let entry = rows.get(r.id);
    if (!entry && rows.size >= maxRows) {
      // The server keeps the newest per session; so does the page.
      const [oldest, e] = rows.entries().next().value;
      e.tr.remove();
      rows.delete(oldest);
    }
    if (!entry) {
      entry = {data: r, tr: el("tr", {dataset: {id: r.id}})};
      rows.set(r.id, entry);
      tbody.prepend(entry.tr);
      entry.tr.classList.add("fresh");
      setTimeout(() => entry.tr.classList.remove("fresh"), 1500);
    }
    entry.data = r;
    entry.tr.replaceChildren(...rowCells(r));
    entry.tr.dataset.verdict = r.verdict;
    entry.tr.dataset.status = r.status;
    ensureOption("protocol", r.protocol);
    ensureOption("endpoint", r.endpoint);
    entry.tr.hidden = !matches(r, filters());
  }

  function putSession(s) {
    sessions.set(s.id, s);
    ensureOption("session", s.id);
    renderSessions();
    renderEndpoints();
  }

  function renderSessions() {
    const box = document.getElementById("sessions");
    const list = [...sessions.values()].sort((a, b) => a.started.localeCompare(b.started));
    box.replaceChildren(...list.map((s) => {
      const c = s.counts || {};
      const state = s.running ? "running" : s.lost ? "gone" : "exited " + s.exit;
      return el("div", {class: "session" + (s.running ? "" : " ended"), dataset: {session: s.id}},
        el("div", {class: "cmd mono"}, "$ " + (s.command || []).join(" ")),
        el("div", {class: "meta"},
          el("span", {class: "state " + (s.running ? "running" : "ended")}, state), " · ",
          el("span", {class: "uptime", dataset: {started: s.started}}, "up " + fmtAge(Date.now() + offset - Date.parse(s.started))), " · session ",
          el("code", {title: s.id}, s.id.slice(-8)),
          s.policy_digest ? [" · policy ", el("code", {title: s.policy_digest}, s.policy_digest.slice(0, 19))] : " · built-in rule",
          s.monitor ? " · monitor mode" : "",
          s.dropped ? el("span", {class: "warn"}, " · " + s.dropped + " updates dropped (the audit log has every action)") : ""),
        el("div", {class: "counts"},
          el("span", {class: "badge v-allow"}, (c.allow || 0) + " allowed"),
          el("span", {class: "badge v-deny"}, (c.deny || 0) + " denied"),
          el("span", {class: "badge v-approve"}, (c.pending || 0) + " pending")));
    }).flat());
    document.querySelectorAll("th.col-session, td.col-session").forEach((e) => e.hidden = sessions.size < 2);
    document.getElementById("session-filter").hidden = sessions.size < 2;
    document.body.classList.toggle("many", sessions.size > 1);
  }

  function renderEndpoints() {
    const sum = new Map();
    for (const s of sessions.values()) {
      for (const e of s.endpoints || []) {
        const t = sum.get(e.endpoint) || {endpoint: e.endpoint, actions: 0, allow: 0, deny: 0, approvals: 0, bytes_up: 0, bytes_down: 0, last: ""};
        t.actions += e.actions; t.allow += e.allow; t.deny += e.deny; t.approvals += e.approvals;
        t.bytes_up += e.bytes_up; t.bytes_down += e.bytes_down;
        if (e.last > t.last) t.last = e.last;
        sum.set(e.endpoint, t);
      }
    }
    const list = [...sum.values()].sort((a, b) => b.actions - a.actions || a.endpoint.localeCompare(b.endpoint));
    document.querySelector("#endpoints tbody").replaceChildren(...list.map((e) => el("tr", {},
      el("td", {}, e.endpoint), el("td", {class: "num"}, e.actions), el("td", {class: "num"}, e.allow),
      el("td", {class: "num"}, e.deny), el("td", {class: "num"}, e.approvals),
      el("td", {class: "num"}, fmtBytes(e.bytes_up)), el("td", {class: "num"}, fmtBytes(e.bytes_down)),
      el("td", {class: "time"}, fmtTime(e.last)))));
  }

  function putPending(p) {
    let li = pending.get(p.id);
    const steps = (p.steps || []).map((s) => s.approver + ": " + s.outcome).join(", ");
    if (!li) {
      const f = el("form", {class: "decide"},
        el("input", {name: "reason", placeholder: "reason (optional)", maxlength: "500"}),
        el("button", {type: "submit", name: "verdict", value: "allow", class: "approve"}, "Approve"),
        el("button", {type: "submit", name: "verdict", value: "deny", class: "deny"}, "Deny"),
        el("span", {class: "outcome", role: "status"}));
      wireDecide(f, p.id);
      li = el("li", {class: "card", dataset: {id: p.id}},
        el("div", {class: "what"}, el("a", {href: "/action/" + encodeURIComponent(p.id)}, p.summary)),
        el("div", {class: "why"}, el("code", {}, p.rule), ": " + p.reason),
        el("div", {class: "who"}), f);
      pending.set(p.id, li);
      document.getElementById("pending").append(li);
    }
    li.dataset.deadline = p.deadline;
    li.querySelector(".who").replaceChildren("asking ", el("b", {}, p.approver || "…"),
      p.type ? " (" + p.type + ")" : "", steps ? " · so far " + steps : "", " · ",
      el("span", {class: "left"}, ""), sessions.size > 1 ? " · session " + p.session.slice(-8) : "");
    tickDeadlines();
    countPending();
  }

  function countPending() {
    document.getElementById("pending-count").textContent = pending.size;
    document.getElementById("no-pending").hidden = pending.size > 0;
  }

  function decided(p) {
    const li = pending.get(p.id);
    if (li) {
      li.remove();
      pending.delete(p.id);
      countPending();
    }
    recent = recent.filter((r) => r.id !== p.id).concat([p]).slice(-20);
    renderRecent();
  }

  function renderRecent() {
    document.getElementById("recent").replaceChildren(...recent.slice().reverse().map((p) => {
      const last = (p.steps || [])[p.steps.length - 1] || {};
      const who = [last.by, last.via ? "via " + last.via : ""].filter(Boolean).join(" ");
      const word = p.status === "allow" ? "approved" : last.via === "timeout" ? "timed out" : "denied";
      return el("li", {dataset: {id: p.id, status: p.status}},
        el("span", {class: "badge v-" + p.status}, word), " ",
        el("a", {href: "/action/" + encodeURIComponent(p.id)}, p.summary),
        " by " + (last.approver || "?") + (who ? " [" + who + "]" : "") + " after " + fmtMS(last.waited_ms) +
        (last.reason ? ": " + last.reason : ""));
    }));
  }

  function tickDeadlines() {
    const now = Date.now() + offset;
    for (const li of pending.values()) {
      const left = Date.parse(li.dataset.deadline) - now;
      const span = li.querySelector(".left");
      if (span) span.textContent = isNaN(left) ? "" : fmtAge(left) + " left";
    }
    for (const u of document.querySelectorAll(".uptime")) {
      u.textContent = "up " + fmtAge(now - Date.parse(u.dataset.started));
    }
  }
  setInterval(tickDeadlines, 1000);

  function snapshot(s) {
    offset = Date.parse(s.now) - Date.now();
    rows.clear();
    tbody.replaceChildren();
    sessions.clear();
    for (const li of pending.values()) li.remove();
    pending.clear();
    for (const x of s.sessions) sessions.set(x.id, x);
    renderSessions();
    renderEndpoints();
    for (const x of s.sessions) ensureOption("session", x.id);
    for (const r of s.rows) putRow(r);
    for (const p of s.pending) putPending(p);
    recent = s.recent.slice(-20);
    renderRecent();
    countPending();
    refilter();
  }

  const conn = document.getElementById("conn");
  const es = new EventSource("/api/events");
  es.onopen = () => { conn.textContent = "live"; conn.className = "conn live"; };
  es.onerror = () => { conn.textContent = "reconnecting…"; conn.className = "conn down"; };
  const on = (name, fn) => es.addEventListener(name, (e) => fn(JSON.parse(e.data)));
  on("snapshot", snapshot);
  on("row", (r) => { putRow(r); refilter(); });
  on("session", putSession);
  on("forget", (x) => { sessions.delete(x.session); renderSessions(); renderEndpoints(); });
  on("pending", putPending);
  on("decided", decided);
}

function actionPage() {
  // After a decision, show the page again with the outcome.
  for (const f of document.querySelectorAll("form.decide")) {
    wireDecide(f, f.dataset.id, () => setTimeout(() => location.reload(), 500));
  }
}

if (document.body.dataset.page === "index") indexPage();
else actionPage();
