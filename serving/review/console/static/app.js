// riskgate review console: plain JavaScript over the JSON API (no build step, no CDN).
"use strict";

const S = {
  key: sessionStorage.getItem("riskgate.key") || "",
  me: null,
  cases: [],
  sel: 0,
  current: null,
  mine: false,
  fetchedAt: 0,
  timer: null,
  checked: new Set(),
  deciding: false,
};

const $ = (id) => document.getElementById(id);
const NS = "http://www.w3.org/2000/svg";

async function api(path, opts = {}) {
  const headers = { Authorization: `Bearer ${S.key}` };
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, {
    method: opts.method || "GET",
    headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  let data = null;
  try { data = await res.json(); } catch (_) { data = null; }
  if (!res.ok) {
    const msg = data && (typeof data.error === "string" ? data.error : JSON.stringify(data.detail || data));
    const err = new Error(msg || `HTTP ${res.status}`);
    err.status = res.status;
    throw err;
  }
  return data;
}

function money(amount, currency) {
  try {
    return new Intl.NumberFormat("en", { style: "currency", currency: currency || "EUR" }).format(amount);
  } catch (_) { return `${amount.toFixed(2)} ${currency || ""}`; }
}

function duration(seconds) {
  const s = Math.abs(Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const text = h ? `${h}h ${String(m).padStart(2, "0")}m` : `${m}m ${String(r).padStart(2, "0")}s`;
  return seconds < 0 ? `-${text}` : text;
}

function el(tag, attrs = {}, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function svg(tag, attrs = {}, text) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function show(section) {
  for (const id of ["signin", "queue", "case"]) $(id).hidden = id !== section;
}

// ---------- sign in ----------
async function signIn(key) {
  S.key = key;
  try {
    const me = await api("/whoami");
    if (me.role !== "reviewer") throw Object.assign(new Error(`this key has the ${me.role} role: use a reviewer key`), { status: 403 });
    S.me = me;
    sessionStorage.setItem("riskgate.key", key);
    $("who").textContent = `Signed in as ${me.name}`;
    $("signin-error").textContent = "";
    await loadQueue();
    show("queue");
    focusRow();
    if (!S.timer) S.timer = setInterval(tick, 1000);
  } catch (e) {
    S.key = "";
    sessionStorage.removeItem("riskgate.key");
    $("signin-error").textContent = e.status === 401 ? "Key refused: check it and try again." : e.message;
    show("signin");
    $("key").focus();
  }
}

// ---------- queue ----------
function filterQuery() {
  const q = new URLSearchParams({ status: "open", limit: "200" });
  if ($("f-min-amount").value) q.set("min_amount", $("f-min-amount").value);
  if ($("f-min-score").value) q.set("min_score", $("f-min-score").value);
  if ($("f-merchant").value.trim()) q.set("merchant_id", $("f-merchant").value.trim());
  if ($("f-overdue").checked) q.set("overdue", "true");
  return q.toString();
}

async function loadQueue() {
  const data = await api(`/cases?${filterQuery()}`);
  S.cases = data.items;
  S.fetchedAt = Date.now();
  S.sel = Math.min(S.sel, Math.max(S.cases.length - 1, 0));
  for (const id of [...S.checked]) if (!S.cases.some((c) => c.id === id)) S.checked.delete(id);
  renderStats(data.stats);
  renderQueue();
}

function renderStats(st) {
  $("stat-depth").textContent = st.depth;
  $("stat-oldest").textContent = st.depth ? duration(st.oldest_wait_seconds) : "–";
  $("stat-breaches").textContent = st.sla_breaches;
  $("stat-today").textContent = st.decided_today;
  $("stat-median").textContent = st.median_decision_seconds == null ? "–" : duration(st.median_decision_seconds);
}

function renderQueue() {
  const body = $("queue-rows");
  body.replaceChildren();
  const elapsed = (Date.now() - S.fetchedAt) / 1000;
  S.cases.forEach((c, i) => {
    const tr = el("tr", { "data-case": c.id, tabindex: "-1" });
    const left = c.sla_seconds_left - elapsed;
    if (left < 0) tr.classList.add("overdue");
    if (i === S.sel) tr.classList.add("selected");
    const box = el("input", { type: "checkbox", "aria-label": `Select case ${c.id} for bulk approve` });
    box.checked = S.checked.has(c.id);
    box.addEventListener("click", (ev) => {
      ev.stopPropagation();
      if (box.checked) S.checked.add(c.id); else S.checked.delete(c.id);
      updateBulk();
    });
    const td0 = el("td"); td0.append(box);
    tr.append(
      td0,
      el("td", { class: "num" }, money(c.amount, c.currency)),
      el("td", { class: "num" }, c.score == null ? "–" : String(c.score)),
      el("td", {}, c.top_reason || "–"),
      el("td", { class: "num age" }, duration(c.age_seconds + elapsed)),
      el("td", { class: "num sla" }, left < 0 ? `overdue ${duration(-left)}` : duration(left)),
      el("td", {}, c.claimed_by || ""),
    );
    tr.addEventListener("click", () => { S.sel = i; openCase(c.id); });
    body.append(tr);
  });
  $("queue-empty").hidden = S.cases.length > 0;
  updateBulk();
}

function updateBulk() {
  $("bulk-count").textContent = S.checked.size;
  $("bulk-approve").disabled = S.checked.size === 0;
}

function focusRow() {
  const rows = $("queue-rows").children;
  for (let i = 0; i < rows.length; i++) rows[i].classList.toggle("selected", i === S.sel);
  if (rows[S.sel]) rows[S.sel].focus();
}

function tick() {
  if (!$("queue").hidden) {
    const elapsed = (Date.now() - S.fetchedAt) / 1000;
    [...$("queue-rows").children].forEach((tr, i) => {
      const c = S.cases[i];
      if (!c) return;
      const left = c.sla_seconds_left - elapsed;
      tr.classList.toggle("overdue", left < 0);
      tr.querySelector(".sla").textContent = left < 0 ? `overdue ${duration(-left)}` : duration(left);
      tr.querySelector(".age").textContent = duration(c.age_seconds + elapsed);
    });
    if (elapsed > 10) loadQueue().catch(() => {});
  }
}

// ---------- one case ----------
async function openCase(id) {
  let lockNote = "";
  S.mine = false;
  try {
    const claim = await api(`/cases/${id}/claim`, { method: "POST" });
    S.mine = true;
    lockNote = `Held by you until ${new Date(claim.claim_expires).toLocaleTimeString()}`;
  } catch (e) {
    lockNote = e.status === 409 ? e.message.replace(/until (\S+ \S+)/, (_, t) => `until ${new Date(t.replace(" ", "T")).toLocaleTimeString()}`) : `Could not claim: ${e.message}`;
  }
  const c = await api(`/cases/${id}`);
  S.current = c;
  renderCase(c, lockNote);
  show("case");
  $("case-title").focus();
}

function renderCase(c, lockNote) {
  $("case-title").textContent = `Case ${c.id} · ${money(c.amount, c.currency)} · score ${c.score ?? "–"}`;
  $("case-title").setAttribute("tabindex", "-1");
  const lock = $("case-lock");
  lock.textContent = c.status !== "open" ? `Decided: ${c.decision} by ${c.decided_by}` : lockNote;
  lock.className = "lock " + (S.mine ? "mine" : "other");
  for (const b of document.querySelectorAll("#decide [data-decision]")) b.disabled = !S.mine || c.status !== "open";
  $("decide-result").textContent = "";
  $("note").value = "";

  const p = c.payment || {};
  const facts = [
    ["Transaction", c.transaction_id],
    ["Time", p.timestamp ? new Date(p.timestamp).toLocaleString() : "–"],
    ["Amount", money(c.amount, p.currency)],
    ["Card", p.card_id],
    ["Customer", p.customer_id],
    ["Merchant", `${p.merchant_id}${p.mcc ? ` (MCC ${p.mcc})` : ""}`],
    ["Channel", p.channel || "–"],
    ["Billing / IP / shipping", [p.billing_country, p.ip_country, p.shipping_country].map((x) => x || "–").join(" / ")],
    ["Device", p.device_id || "–"],
    ["3-D Secure", p.auth_result || "–"],
    ["Probability", c.probability == null ? "–" : c.probability.toFixed(4)],
    ["SLA due", c.sla_due ? new Date(c.sla_due).toLocaleTimeString() : "–"],
  ];
  const dl = $("case-payment");
  dl.replaceChildren();
  for (const [k, v] of facts) dl.append(el("dt", {}, k), el("dd", {}, v == null ? "–" : String(v)));
  drawShap(c.factors || []);
  drawTimeline(c.card_recent || []);
  drawWhere(p, c.features || {});
}

function drawShap(factors) {
  const chart = $("shap-chart");
  chart.replaceChildren();
  const top = factors.slice(0, 10);
  const rowH = 26, width = 560, mid = 360, half = 150;
  chart.setAttribute("viewBox", `0 0 ${width} ${Math.max(top.length, 1) * rowH + 10}`);
  chart.setAttribute("height", String(Math.max(top.length, 1) * rowH + 10));
  const maxAbs = Math.max(...top.map((f) => Math.abs(f.contribution)), 1e-6);
  chart.append(svg("line", { x1: mid, x2: mid, y1: 0, y2: top.length * rowH + 4, stroke: "#8c959f" }));
  top.forEach((f, i) => {
    const y = i * rowH + 4;
    const w = (Math.abs(f.contribution) / maxAbs) * half;
    const up = f.contribution > 0;
    const g = svg("g", { class: "factor", "data-feature": f.feature });
    const text = f.text.length > 58 ? f.text.slice(0, 57) + "…" : f.text;
    g.append(svg("text", { x: 4, y: y + 15 }, text));
    g.append(svg("rect", { x: up ? mid : mid - w, y: y + 3, width: Math.max(w, 1), height: rowH - 8,
      fill: up ? "#b42318" : "#1a7f37" }));
    g.append(svg("text", { x: up ? mid + w + 4 : mid - w - 4, y: y + 15, "text-anchor": up ? "start" : "end" },
      (up ? "+" : "") + f.contribution.toFixed(2)));
    g.append(svg("title", {}, `${f.text} (${f.feature} = ${f.value ?? "unknown"})`));
    chart.append(g);
  });
}

function drawTimeline(items) {
  const t = $("timeline");
  t.replaceChildren();
  if (!items.length) return;
  const W = 560, H = 120, pad = 30;
  t.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const times = items.map((x) => new Date(x.timestamp).getTime());
  const amts = items.map((x) => Math.log10(1 + x.amount));
  const t0 = Math.min(...times), t1 = Math.max(...times) || t0 + 1;
  const a1 = Math.max(...amts, 1);
  const X = (v) => pad + ((v - t0) / Math.max(t1 - t0, 1)) * (W - 2 * pad);
  const Y = (a) => H - 25 - (a / a1) * (H - 45);
  t.append(svg("line", { x1: pad, x2: W - pad, y1: H - 20, y2: H - 20, stroke: "#8c959f" }));
  items.forEach((x, i) => {
    const cx = X(times[i]), cy = Y(amts[i]);
    const color = x.status === "declined" ? "#b42318" : x.status === "held_for_review" ? "#9a3412" : "#1a7f37";
    const dot = svg("circle", { cx, cy, r: x.this ? 8 : 4, fill: x.this ? "#fff" : color,
      stroke: x.this ? "#0b57d0" : color, "stroke-width": x.this ? 3 : 1, class: x.this ? "this" : "" });
    dot.append(svg("title", {}, `${new Date(x.timestamp).toLocaleString()} · ${money(x.amount, x.currency)} · ${x.merchant_id} · ${x.status}`));
    t.append(dot);
    if (x.this) {
      const anchor = cx > W - 80 ? "end" : cx < 80 ? "start" : "middle";
      t.append(svg("text", { x: cx, y: cy - 12, "text-anchor": anchor }, "this payment"));
    }
  });
  const sameDay = new Date(t0).toDateString() === new Date(t1).toDateString();
  const label = (v) => (sameDay ? new Date(v).toLocaleTimeString() : new Date(v).toLocaleDateString());
  t.append(svg("text", { x: pad, y: H - 5 }, label(t0)));
  t.append(svg("text", { x: W - pad, y: H - 5, "text-anchor": "end" }, label(t1)));
}

function haversine(a, b) {
  const r = Math.PI / 180, dLat = (b[0] - a[0]) * r, dLon = (b[1] - a[1]) * r;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a[0] * r) * Math.cos(b[0] * r) * Math.sin(dLon / 2) ** 2;
  return 2 * 6371 * Math.asin(Math.min(1, Math.sqrt(h)));
}

function drawWhere(p, features) {
  const w = $("where");
  w.replaceChildren();
  const W = 560, H = 160;
  w.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const pts = [];
  if (p.customer_lat != null && p.customer_lon != null) pts.push({ name: "customer home", ll: [p.customer_lat, p.customer_lon], color: "#0b57d0" });
  if (p.merchant_lat != null && p.merchant_lon != null) pts.push({ name: "merchant", ll: [p.merchant_lat, p.merchant_lon], color: "#9a3412" });
  const parts = [];
  if (pts.length) {
    const lats = pts.map((x) => x.ll[0]), lons = pts.map((x) => x.ll[1]);
    const la0 = Math.min(...lats) - 2, la1 = Math.max(...lats) + 2, lo0 = Math.min(...lons) - 3, lo1 = Math.max(...lons) + 3;
    const X = (lon) => 20 + ((lon - lo0) / (lo1 - lo0)) * (W - 40);
    const Y = (lat) => H - 20 - ((lat - la0) / (la1 - la0)) * (H - 40);
    if (pts.length === 2) {
      w.append(svg("line", { x1: X(pts[0].ll[1]), y1: Y(pts[0].ll[0]), x2: X(pts[1].ll[1]), y2: Y(pts[1].ll[0]),
        stroke: "#8c959f", "stroke-dasharray": "4 3" }));
      parts.push(`home → merchant ${Math.round(haversine(pts[0].ll, pts[1].ll))} km`);
    }
    for (const x of pts) {
      w.append(svg("circle", { cx: X(x.ll[1]), cy: Y(x.ll[0]), r: 6, fill: x.color }));
      w.append(svg("text", { x: X(x.ll[1]) + 9, y: Y(x.ll[0]) + 4 }, x.name));
    }
  } else {
    w.append(svg("text", { x: 10, y: 20 }, "no coordinates for this payment"));
  }
  parts.push(`IP country ${p.ip_country || "unknown"}`, `billing ${p.billing_country || "unknown"}`,
    `merchant country ${p.merchant_country || "unknown"}`);
  if (p.ip_country && p.billing_country && p.ip_country !== p.billing_country) parts.push("IP and billing differ");
  if (features.card_prev_speed_kmh != null) parts.push(`${Math.round(features.card_prev_speed_kmh)} km/h since the card's previous payment`);
  $("where-text").textContent = parts.join(" · ");
}

async function decideCurrent(decision) {
  const c = S.current;
  if (!c || !S.mine || c.status !== "open" || S.deciding) return;
  S.deciding = true;  // a second key press while the first request is in flight does nothing
  for (const b of document.querySelectorAll("#decide button")) b.disabled = true;
  try {
    const r = await api(`/cases/${c.id}/decision`, { method: "POST", body: { decision, note: $("note").value || null } });
    c.status = "decided";
    $("decide-result").textContent = `${decision.replace("_", " ")}: payment ${r.status}`;
    await loadQueue();
  } catch (e) {
    $("decide-result").textContent = `Not decided: ${e.message}`;
  } finally {
    S.deciding = false;
    $("next").disabled = false;
  }
}

async function nextCase() {
  await loadQueue();
  const free = (x) => !x.claimed_by || x.claimed_by === S.me.name;  // skip others' locks
  const next = S.cases.find((x) => (!S.current || x.id !== S.current.id) && free(x));
  if (!next) { S.current = null; show("queue"); focusRow(); return; }
  S.sel = S.cases.indexOf(next);
  await openCase(next.id);
}

// ---------- wiring ----------
$("signin-form").addEventListener("submit", (ev) => { ev.preventDefault(); signIn($("key").value.trim()); });
$("filters").addEventListener("submit", (ev) => { ev.preventDefault(); S.sel = 0; loadQueue(); });
$("back").addEventListener("click", async () => { await loadQueue(); show("queue"); focusRow(); });
$("next").addEventListener("click", () => nextCase());
for (const b of document.querySelectorAll("#decide [data-decision]")) {
  b.addEventListener("click", () => decideCurrent(b.dataset.decision));
}
$("bulk-approve").addEventListener("click", async () => {
  const ids = [...S.checked];
  const r = await api("/cases/bulk_approve", { method: "POST", body: { case_ids: ids } });
  S.checked.clear();
  await loadQueue();
  $("queue-empty").hidden = S.cases.length > 0;
  $("stat-today").setAttribute("title", `bulk approved ${r.approved} of ${ids.length}`);
});

document.addEventListener("keydown", (ev) => {
  const typing = ["INPUT", "TEXTAREA"].includes(document.activeElement.tagName);
  if (ev.key === "Escape") {
    if (!$("case").hidden) { loadQueue().then(() => { show("queue"); focusRow(); }); }
    if (typing) document.activeElement.blur();
    return;
  }
  if (typing || ev.ctrlKey || ev.metaKey || ev.altKey || !S.me) return;
  if (ev.key === "Enter" && ev.target.closest("button, a")) return;  // let buttons be pressed
  if (!$("queue").hidden) {
    if (ev.key === "j") { S.sel = Math.min(S.sel + 1, S.cases.length - 1); focusRow(); }
    else if (ev.key === "k") { S.sel = Math.max(S.sel - 1, 0); focusRow(); }
    else if ((ev.key === "Enter" || ev.key === "o") && S.cases[S.sel]) openCase(S.cases[S.sel].id);
    else if (ev.key === "n" && S.cases.length) nextCase();
    else return;
    ev.preventDefault();
  } else if (!$("case").hidden) {
    const map = { a: "approve", d: "decline", f: "decline_fraud" };
    if (map[ev.key]) decideCurrent(map[ev.key]);
    else if (ev.key === "n") nextCase();
    else return;
    ev.preventDefault();
  }
});

function start() {
  show("signin");
  if (S.key) signIn(S.key);
}
start();
