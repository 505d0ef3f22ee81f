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
  total: 0,
  offset: 0,
  queues: [],
  view: "queue",
};
const PAGE = 100;

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
  for (const id of ["signin", "queue", "case", "stats-view"]) $(id).hidden = id !== section;
  $("nav").hidden = section === "signin";
}

// Times are shown in UTC, and say so (reviewers and the audit log share one clock).
function utc(ts, withDate = true) {
  if (!ts) return "–";
  const d = new Date(ts);
  const iso = d.toISOString();
  return `${withDate ? iso.slice(0, 10) + " " : ""}${iso.slice(11, 16)} UTC`;
}

const fmt = new Intl.NumberFormat("en");

// ---------- sign in ----------
async function signIn(key) {
  S.key = key;
  try {
    const me = await api("/whoami");
    if (me.role !== "reviewer" && me.role !== "supervisor") throw Object.assign(new Error(`this key has the ${me.role} role: use a reviewer key (or a supervisor's)`), { status: 403 });
    S.me = me;
    sessionStorage.setItem("riskgate.key", key);
    $("who").textContent = `Signed in as ${me.name}`;
    $("nav-stats").hidden = me.role !== "supervisor";
    $("signin-error").textContent = "";
    await loadQueues();
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
async function loadQueues() {
  try { S.queues = (await api("/queues")).queues; } catch (_) { S.queues = []; }
  const sel = $("f-queue");
  const keep = sel.value;
  sel.replaceChildren(el("option", { value: "" }, "All queues"));
  for (const q of S.queues) {
    const label = `${q.name} (${fmt.format(q.open)} open${q.mode === "locked" ? ", locked" : ""})`;
    sel.append(el("option", { value: q.name }, label));
  }
  sel.value = keep;
}

function currentQueue() {
  return S.queues.find((q) => q.name === $("f-queue").value) || null;
}

function filterQuery() {
  const q = new URLSearchParams({ status: "open", limit: String(PAGE), offset: String(S.offset) });
  if ($("f-queue").value) q.set("queue", $("f-queue").value);
  if ($("f-min-amount").value) q.set("min_amount", $("f-min-amount").value);
  if ($("f-min-score").value) q.set("min_score", $("f-min-score").value);
  if ($("f-merchant").value.trim()) q.set("merchant_id", $("f-merchant").value.trim());
  if ($("f-overdue").checked) q.set("overdue", "true");
  return q.toString();
}

async function loadQueue() {
  const data = await api(`/cases?${filterQuery()}`);
  S.cases = data.items;
  S.total = data.total;
  if (S.offset > 0 && S.offset >= S.total) { S.offset = Math.max(0, S.total - PAGE); return loadQueue(); }
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

function groupKey(c) {
  const by = $("f-group").value;
  return by ? (c.group || {})[by] || null : null;
}

// Cases in display order: with grouping, cases sharing a card/device/IP sit together under one
// header (largest groups first), so a burst from one attacker is decided as one group.
function ordered() {
  const by = $("f-group").value;
  if (!by) return S.cases.map((c) => ({ c, group: null }));
  const groups = new Map();
  for (const c of S.cases) {
    const k = groupKey(c) || `single-${c.id}`;
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k).push(c);
  }
  const list = [...groups.entries()].sort((a, b) => b[1].length - a[1].length);
  const out = [];
  for (const [k, cs] of list) for (const c of cs) out.push({ c, group: cs.length > 1 ? { key: k, cases: cs } : null });
  return out;
}

function groupHeader(by, g) {
  const tr = el("tr", { class: "group", "data-group": g.key });
  const total = g.cases.reduce((a, c) => a + c.amount, 0);
  const td = el("td", { colspan: "9" });
  td.append(el("strong", {}, `${g.cases.length} cases share ${by === "ip" ? "an IP" : `a ${by}`} `),
    el("code", {}, g.key), document.createTextNode(` · ${money(total, g.cases[0].currency)} in total `));
  const ids = g.cases.map((c) => c.id);
  const approve = el("button", { type: "button", class: "approve group-approve" }, "Approve group");
  const decline = el("button", { type: "button", class: "fraud group-decline" }, "Decline group as fraud");
  approve.addEventListener("click", (ev) => { ev.stopPropagation(); bulk("approve", ids); });
  decline.addEventListener("click", (ev) => { ev.stopPropagation(); bulk("decline_fraud", ids); });
  td.append(approve, document.createTextNode(" "), decline);
  tr.append(td);
  return tr;
}

function flags(c) {
  const out = [];
  if (c.escalated) out.push("escalated");
  if (c.on_hold) out.push("on hold");
  if (c.pending_decision) out.push(`awaiting 2nd reviewer (${c.pending_decision.replace("_", " ")})`);
  return out;
}

function renderQueue() {
  const body = $("queue-rows");
  body.replaceChildren();
  const elapsed = (Date.now() - S.fetchedAt) / 1000;
  const rows = ordered();
  S.cases = rows.map((x) => x.c);  // keyboard order = display order
  const seen = new Set();
  const by = $("f-group").value;
  rows.forEach(({ c, group }, i) => {
    if (group && !seen.has(group.key)) { seen.add(group.key); body.append(groupHeader(by, group)); }
    const tr = el("tr", { "data-case": c.id, tabindex: "-1" });
    const left = c.sla_paused ? c.sla_seconds_left : c.sla_seconds_left - elapsed;
    if (left < 0) tr.classList.add("overdue");
    if (i === S.sel) tr.classList.add("selected");
    if (group) tr.classList.add("in-group");
    const box = el("input", { type: "checkbox", "aria-label": `Select case ${c.id} for bulk approve` });
    box.checked = S.checked.has(c.id);
    box.addEventListener("click", (ev) => {
      ev.stopPropagation();
      if (box.checked) S.checked.add(c.id); else S.checked.delete(c.id);
      updateBulk();
    });
    const td0 = el("td"); td0.append(box);
    const reason = el("td", {}, c.top_reason || "–");
    for (const f of flags(c)) reason.append(" ", el("span", { class: "badge" }, f));
    tr.append(
      td0,
      el("td", { class: "num" }, money(c.amount, c.currency)),
      el("td", { class: "num risk" }, money(c.priority, c.currency)),
      el("td", { class: "num" }, c.score == null ? "–" : String(c.score)),
      reason,
      el("td", { class: "num age" }, duration(c.age_seconds + elapsed)),
      el("td", { class: "num sla" }, slaText(c, left)),
      el("td", {}, c.queue || "–"),
      el("td", {}, c.claimed_by || ""),
    );
    tr.addEventListener("click", () => {
      S.sel = i;
      const q = currentQueue();
      if (q && q.mode === "locked") nextCase(); else openCase(c.id);
    });
    body.append(tr);
  });
  $("queue-empty").hidden = S.cases.length > 0;
  const first = S.total ? S.offset + 1 : 0, last = S.offset + S.cases.length;
  $("page-text").textContent = S.total
    ? `${fmt.format(first)}–${fmt.format(last)} of ${fmt.format(S.total)} open cases`
    : "no open cases";
  $("page-prev").disabled = S.offset === 0;
  $("page-next").disabled = last >= S.total;
  const q = currentQueue();
  $("locked-note").hidden = !(q && q.mode === "locked");
  updateBulk();
}

function slaText(c, left) {
  if (c.sla_paused) return `paused ${duration(left)}`;
  return left < 0 ? `overdue ${duration(-left)}` : duration(left);
}

function updateBulk() {
  $("bulk-count").textContent = S.checked.size;
  $("bulk-count2").textContent = S.checked.size;
  $("bulk-approve").disabled = S.checked.size === 0;
  $("bulk-decline").disabled = S.checked.size === 0;
}

async function bulk(decision, ids) {
  const path = decision === "approve" ? "/cases/bulk_approve" : "/cases/bulk_decline";
  const body = decision === "approve" ? { case_ids: ids } : { case_ids: ids, decision };
  const r = await api(path, { method: "POST", body });
  for (const id of ids) S.checked.delete(id);
  await loadQueue();
  const done = decision === "approve" ? r.approved : r.declined;
  $("page-text").setAttribute("title", `${decision.replace("_", " ")}: ${done} of ${ids.length}`);
  return r;
}

function focusRow() {
  const rows = $("queue-rows").querySelectorAll("tr[data-case]");
  for (let i = 0; i < rows.length; i++) rows[i].classList.toggle("selected", i === S.sel);
  if (rows[S.sel]) rows[S.sel].focus();
}

function tick() {
  if (!$("queue").hidden) {
    const elapsed = (Date.now() - S.fetchedAt) / 1000;
    [...$("queue-rows").querySelectorAll("tr[data-case]")].forEach((tr, i) => {
      const c = S.cases[i];
      if (!c) return;
      const left = c.sla_paused ? c.sla_seconds_left : c.sla_seconds_left - elapsed;
      tr.classList.toggle("overdue", left < 0);
      tr.querySelector(".sla").textContent = slaText(c, left);
      tr.querySelector(".age").textContent = duration(c.age_seconds + elapsed);
    });
    if (elapsed > 10) loadQueue().catch(() => {});
  }
}

// ---------- one case ----------
async function openCase(id, claimed = null) {
  let lockNote = "";
  S.mine = false;
  try {
    const claim = claimed || await api(`/cases/${id}/claim`, { method: "POST" });
    S.mine = true;
    lockNote = `Held by you until ${utc(claim.claim_expires, false)}`;
  } catch (e) {
    lockNote = e.status === 409 ? e.message.replace(/until (\d{4}-\d\d-\d\dT\S+Z)/, (_, t) => `until ${utc(t, false)}`) : `Could not claim: ${e.message}`;
  }
  const c = await api(`/cases/${id}`);
  S.current = c;
  renderCase(c, lockNote);
  show("case");
  $("case-title").focus();
}

const ARM_SHOWS = { score: [], "score+facts": ["facts"], "score+facts+shap": ["facts", "shap"] };

function whyHeld(c) {
  const src = c.decision_source;
  if (src === "fallback") return "Held because the model was unavailable: the fallback rules send larger payments to review.";
  if (src === "rules") return "Held by a rule of the platform's policy.";
  if (c.review_by === "saving") {
    return `Held because reviewing it is expected to save money: probability ${(c.probability * 100).toFixed(1)}% × ${money(c.amount, c.currency)} at stake ` +
      `is above the review cut-off (${money(c.review_threshold ?? 0, c.currency)} expected saving). A low score can be held for a large amount.`;
  }
  return `Held because its fraud probability (${c.probability == null ? "unknown" : (c.probability * 100).toFixed(1) + "%"}) is above the review cut-off.`;
}

// The facts a reviewer weighs first, each against what is normal (from the stored features).
function normalFacts(f) {
  const n = (k) => (typeof f[k] === "number" && Number.isFinite(f[k]) ? f[k] : null);
  const plural = (v, one, many) => `${fmt.format(v)} ${v === 1 ? one : many}`;
  const out = [];
  // A count of earlier payments against the same count over a longer window ("the usual"); none
  // in the longer window says "first payment" instead of comparing with a usual of 0.
  const rate = new Intl.NumberFormat("en", { maximumFractionDigits: 1 });
  const velocity = (short, long, where, longWords, units, unit) => {
    const now = n(short), before = n(long);
    if (now == null) return;
    if (before === 0) { out.push(`first payment ${where} in ${longWords}`); return; }
    const count = now === 0 ? `no earlier payment ${where} in the last hour` : `${plural(now, "earlier payment", "earlier payments")} ${where} in the last hour`;
    out.push(before == null ? count : `${count}; usual over ${longWords}: ${rate.format(before / units)} ${unit} (${plural(before, "payment", "payments")})`);
  };
  velocity("card_count_1h", "card_count_30d", "on this card", "the last 30 days", 30, "a day");
  velocity("ip_count_1h", "ip_count_24h", "from this IP address", "the last 24 hours", 24, "an hour");
  if (n("amount_to_card_median_30d") != null) out.push(`amount ${n("amount_to_card_median_30d").toFixed(1)}× this card's 30-day median`);
  if (n("distinct_cards_per_device_24h") != null && n("distinct_cards_per_device_24h") > 1) out.push(`${n("distinct_cards_per_device_24h")} different cards on this device in 24 h (usual: 1)`);
  if (n("distinct_cards_per_ip_24h") != null && n("distinct_cards_per_ip_24h") > 1) out.push(`${n("distinct_cards_per_ip_24h")} different cards from this IP address in 24 h (usual: 1)`);
  if (n("device_new_for_customer") === 1) out.push("first payment from this device for this customer");
  if (n("seconds_since_card_prev") != null) out.push(`previous payment on this card ${duration(n("seconds_since_card_prev"))} earlier`);
  return out;
}

function renderCase(c, lockNote) {
  $("case-title").textContent = `Case ${c.id} · ${money(c.amount, c.currency)} · score ${c.score ?? "–"} of 99`;
  $("case-title").setAttribute("tabindex", "-1");
  $("case-why").textContent = whyHeld(c);
  const lock = $("case-lock");
  lock.textContent = c.status !== "open" ? `Decided: ${c.decision} by ${c.decided_by}${c.confirmed_by ? `, confirmed by ${c.confirmed_by}` : ""}` : lockNote;
  lock.className = "lock " + (S.mine ? "mine" : "other");
  const pending = c.status === "open" && c.pending_decision;
  const canDecide = S.mine && c.status === "open" && !pending;
  for (const b of document.querySelectorAll("#decide [data-decision]")) b.disabled = !canDecide;
  const f = [];
  if (c.escalated) f.push(`Escalated by ${c.escalated_by} at ${utc(c.escalated_at, false)}: ${c.escalation_reason}`);
  if (c.on_hold) f.push(`On hold since ${utc(c.hold_since, false)}: ${c.hold_reason}. SLA clock paused (${duration(c.sla_seconds_left)} left).`);
  if (pending) f.push(`${c.pending_by} proposed "${c.pending_decision.replace("_", " ")}" at ${utc(c.pending_at, false)}: a second reviewer must confirm (four eyes); the payment stays held.`);
  $("case-flags").textContent = f.join(" · ");
  $("case-flags").hidden = !f.length;
  const mineProposal = pending && c.pending_by === S.me.name;
  $("confirm-yes").hidden = !pending || mineProposal;
  $("confirm-no").hidden = !pending || mineProposal;
  $("escalate").hidden = c.status !== "open" || c.escalated;
  $("hold").hidden = c.status !== "open" || c.on_hold;
  $("resume").hidden = c.status !== "open" || !c.on_hold;
  $("decide-result").textContent = "";
  $("note").value = "";

  const arm = c.explain_arm;
  const shows = arm && ARM_SHOWS[arm] ? ARM_SHOWS[arm] : ["facts", "shap"];
  $("case-arm").textContent = arm ? `explanation arm: ${arm}` : "";
  const normal = $("case-normal");
  normal.replaceChildren(...normalFacts(c.features || {}).map((t) => el("li", {}, t)));
  normal.hidden = !shows.includes("facts");
  $("facts-grid").hidden = !shows.includes("facts");
  $("shap-block").hidden = !shows.includes("shap");
  $("timeline").parentElement.parentElement.hidden = !shows.includes("facts");

  const p = c.payment || {};
  const facts = [
    ["Transaction", c.transaction_id],
    ["Time", utc(p.timestamp)],
    ["Amount", money(c.amount, p.currency)],
    ["Card", p.card_id],
    ["Customer", p.customer_id],
    ["Merchant", `${p.merchant_id}${p.mcc ? ` (MCC ${p.mcc})` : ""}`],
    ["Channel", p.channel || "–"],
    ["Billing / IP / shipping", [p.billing_country, p.ip_country, p.shipping_country].map((x) => x || "–").join(" / ")],
    ["Device", p.device_id || "–"],
    ["3-D Secure", p.auth_result || "–"],
    ["Probability", c.probability == null ? "–" : c.probability.toFixed(4)],
    ["Queue", c.queue || "–"],
    ["SLA due", c.sla_paused ? "paused (on hold)" : utc(c.sla_due)],
  ];
  const dl = $("case-payment");
  dl.replaceChildren();
  for (const [k, v] of facts) dl.append(el("dt", {}, k), el("dd", {}, v == null ? "–" : String(v)));
  drawShap(c.factors || []);
  drawTimeline(c.card_recent || []);
  drawWhere(p, c.features || {});
  loadLinks(c.id);
}

async function loadLinks(id) {
  $("links-warning").textContent = "";
  $("links-counts").textContent = "loading linked payments…";
  $("links-table").hidden = true;
  let data;
  try { data = await api(`/cases/${id}/links`); } catch (e) { $("links-counts").textContent = `links unavailable: ${e.message}`; return; }
  if (!S.current || S.current.id !== id) return;
  $("links-warning").textContent = data.warning || "";
  const words = { card: "card", device: "device", ip: "IP", email_domain: "e-mail domain", customer: "customer" };
  const counts = $("links-counts");
  counts.replaceChildren();
  const total = data.links.length;
  if (!total) { counts.textContent = "No other payment shares this card, device, IP, e-mail domain or customer."; return; }
  for (const [k, n] of Object.entries(data.counts)) {
    const b = el("button", { type: "button", class: "link-count", "data-kind": k }, `${n} sharing the ${words[k]}`);
    b.disabled = n === 0;
    b.addEventListener("click", () => renderLinks(data.links.filter((x) => x.shared.includes(k))));
    counts.append(b, " ");
  }
  const all = el("button", { type: "button", class: "link-count", "data-kind": "all" }, `all ${total}`);
  all.addEventListener("click", () => renderLinks(data.links));
  counts.append(all);
}

function renderLinks(items) {
  const body = $("links-rows");
  body.replaceChildren();
  for (const x of items) {
    const label = x.label ? (x.label.is_fraud ? `fraud (${x.label.source})` : `genuine (${x.label.source})`) : "–";
    const tr = el("tr", { "data-txn": x.transaction_id, class: x.label && x.label.is_fraud ? "fraud-row" : "" });
    tr.append(el("td", {}, utc(x.timestamp)), el("td", { class: "num" }, money(x.amount, x.currency)),
      el("td", {}, x.shared.join(", ")), el("td", {}, x.status.replaceAll("_", " ")),
      el("td", {}, x.review_decision ? `${x.review_decision.replace("_", " ")} by ${x.decided_by}` : "–"),
      el("td", {}, label));
    body.append(tr);
  }
  $("links-table").hidden = false;
}

// One row per factor in HTML (the sentence wraps instead of being cut), a diverging bar, and the
// plain reading: how many times the factor multiplies the odds of fraud (exp of its SHAP value).
function oddsText(c) {
  const x = Math.exp(c);
  return x >= 1 ? `×${x.toFixed(x < 10 ? 2 : 0)} odds` : `×${x.toFixed(2)} odds`;
}

function drawShap(factors) {
  const chart = $("shap-chart");
  chart.replaceChildren();
  const top = factors.slice(0, 10);
  const maxAbs = Math.max(...top.map((f) => Math.abs(f.contribution)), 1e-6);
  for (const f of top) {
    const up = f.contribution > 0;
    const pct = Math.max((Math.abs(f.contribution) / maxAbs) * 50, 0.5);
    const members = (f.features || [f.feature]).join(", ");
    const plain = up ? `multiplies the odds of fraud by ${Math.exp(f.contribution).toFixed(2)}`
      : `divides the odds of fraud by ${Math.exp(-f.contribution).toFixed(2)}`;
    const row = el("div", { class: `factor ${up ? "up" : "down"}`, role: "listitem", "data-feature": f.feature,
      title: `${f.text}: ${plain} (${members}; SHAP ${f.contribution.toFixed(3)} log-odds)` });
    const track = el("span", { class: "track", "aria-hidden": "true" });
    track.append(el("span", { class: "bar", style: up ? `left:50%;width:${pct}%` : `right:50%;width:${pct}%` }));
    row.append(el("span", { class: "label" }, f.text), track, el("span", { class: "odds" }, oddsText(f.contribution)));
    chart.append(row);
  }
}

function drawTimeline(items) {
  const t = $("timeline");
  t.replaceChildren();
  if (!items.length) return;
  const W = 560, H = 150, pad = 70, right = 24;
  t.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const times = items.map((x) => new Date(x.timestamp).getTime());
  const amts = items.map((x) => Math.log10(1 + x.amount));
  const t0 = Math.min(...times), t1 = Math.max(...times);
  const a1 = Math.max(...amts, 1);
  const X = (v) => (t1 > t0 ? pad + ((v - t0) / (t1 - t0)) * (W - pad - right) : (pad + W - right) / 2);
  const Y = (a) => H - 28 - (a / a1) * (H - 60);
  const short = (v) => money(v, items[0].currency).replace(/\.\d\d$/, "");
  t.append(svg("line", { x1: pad, x2: W - right, y1: H - 22, y2: H - 22, stroke: "#8c959f" }));
  const maxAmt = Math.max(...items.map((x) => x.amount));
  t.append(svg("text", { x: pad - 12, y: Y(Math.log10(1 + maxAmt)) + 4, "text-anchor": "end" }, short(maxAmt)));
  t.append(svg("text", { x: pad - 12, y: H - 24, "text-anchor": "end" }, short(0)));
  items.forEach((x, i) => {
    const color = x.status === "declined" ? "#b42318" : x.status === "held_for_review" ? "#9a3412" : "#1a7f37";
    const dot = svg("circle", { cx: X(times[i]), cy: Y(amts[i]), r: x.this ? 8 : 4, fill: x.this ? "#fff" : color,
      stroke: x.this ? "#0b57d0" : color, "stroke-width": x.this ? 3 : 1, class: x.this ? "this" : "" });
    dot.append(svg("title", {}, `${utc(x.timestamp)} · ${money(x.amount, x.currency)} · ${x.merchant_id} · ${x.status}`));
    t.append(dot);
  });
  // Few payments: each says its amount where it has room; "this payment" is placed first.
  const labelled = items.length <= 8;
  const placed = [];  // [centre x, y, half width] of the labels drawn
  const room = (cx, cy, half) => placed.every(([px, py, ph]) => Math.abs(px - cx) > ph + half + 4 || Math.abs(py - cy) > 14);
  const order = items.map((_, i) => i).sort((a, b) => Number(!!items[b].this) - Number(!!items[a].this));
  for (const i of order) {
    const x = items[i], cx = X(times[i]), cy = Y(amts[i]);
    const words = x.this ? `this payment, ${money(x.amount, x.currency)}` : short(x.amount);
    const half = words.length * 3.2;  // ~6.4 px a character at 11 px
    const anchor = cx > W - 90 ? "end" : cx < pad + 60 ? "start" : "middle";
    const mid = anchor === "end" ? cx - half : anchor === "start" ? cx + half : cx;
    if (!x.this && !(labelled && room(mid, cy, half))) continue;
    placed.push([mid, cy, half]);
    t.append(svg("text", { x: cx, y: cy - 12, "text-anchor": anchor, class: x.this ? "this-label" : "" }, words));
  }
  const sameDay = new Date(t0).toDateString() === new Date(t1).toDateString();
  const label = (v) => (sameDay ? utc(v, false) : new Date(v).toISOString().slice(0, 10));
  if (t1 > t0) {
    t.append(svg("text", { x: pad, y: H - 6 }, label(t0)));
    t.append(svg("text", { x: W - right, y: H - 6, "text-anchor": "end" }, label(t1)));
  } else {
    t.append(svg("text", { x: X(t0), y: H - 6, "text-anchor": "middle" }, `${label(t0)} (the card's only payment in view)`));
  }
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
    const margin = 120;  // room for a label on the outer side of either dot
    const X = (lon) => margin + ((lon - lo0) / (lo1 - lo0)) * (W - 2 * margin);
    const Y = (lat) => H - 20 - ((lat - la0) / (la1 - la0)) * (H - 40);
    if (pts.length === 2) {
      w.append(svg("line", { x1: X(pts[0].ll[1]), y1: Y(pts[0].ll[0]), x2: X(pts[1].ll[1]), y2: Y(pts[1].ll[0]),
        stroke: "#8c959f", "stroke-dasharray": "4 3" }));
      parts.push(`home → merchant ${Math.round(haversine(pts[0].ll, pts[1].ll))} km`);
    }
    // Each label sits on the side of its dot away from the other dot (or away from the edge),
    // so neither runs off the drawing nor over the other label.
    const close = pts.length === 2 && Math.abs(Y(pts[0].ll[0]) - Y(pts[1].ll[0])) < 16;
    pts.forEach((x, i) => {
      const cx = X(x.ll[1]), cy = Y(x.ll[0]);
      w.append(svg("circle", { cx, cy, r: 6, fill: x.color }));
      const other = pts[1 - i];
      const leftOfOther = other ? cx < X(other.ll[1]) || (cx === X(other.ll[1]) && i === 0) : cx > W / 2;
      const toLeft = other ? leftOfOther : cx > W / 2;
      const dy = close ? (i === 0 ? -10 : 16) : 4;
      w.append(svg("text", { x: cx + (toLeft ? -10 : 10), y: Math.min(Math.max(cy + dy, 12), H - 4),
        "text-anchor": toLeft ? "end" : "start", class: "map-label" }, x.name));
    });
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
    if (r.pending_confirmation) {
      c.pending_decision = decision;
      $("decide-result").textContent = `${decision.replace("_", " ")} proposed: a second reviewer must confirm (four eyes); the payment stays held`;
    } else {
      c.status = "decided";
      $("decide-result").textContent = `${decision.replace("_", " ")}: payment ${r.status}`;
    }
    await loadQueue();
  } catch (e) {
    $("decide-result").textContent = `Not decided: ${e.message}`;
  } finally {
    S.deciding = false;
    $("next").disabled = false;
  }
}

async function nextCase() {
  const q = currentQueue();
  if (q && q.mode === "locked") {  // a locked queue hands out its next case; no free pick
    try {
      const got = await api(`/queues/${q.name}/next`, { method: "POST" });
      await openCase(got.case_id, got);
    } catch (e) {
      S.current = null; await loadQueue(); show("queue"); focusRow();
      $("page-text").textContent = e.status === 404 ? `no free case in queue ${q.name}` : e.message;
    }
    return;
  }
  await loadQueue();
  // skip others' locks, holds, escalations (unless a supervisor) and own proposals
  const free = (x) => (!x.claimed_by || x.claimed_by === S.me.name) && !x.on_hold &&
    (!x.escalated || S.me.role === "supervisor") && !(x.pending_decision && x.pending_by === S.me.name);
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
  const r = await bulk("approve", ids);
  S.checked.clear();
  $("queue-empty").hidden = S.cases.length > 0;
  $("stat-today").setAttribute("title", `bulk approved ${r.approved} of ${ids.length}`);
});
$("bulk-decline").addEventListener("click", async () => {
  await bulk("decline_fraud", [...S.checked]);
  S.checked.clear();
  updateBulk();
});
$("page-prev").addEventListener("click", () => { S.offset = Math.max(0, S.offset - PAGE); S.sel = 0; loadQueue(); });
$("page-next").addEventListener("click", () => { S.offset += PAGE; S.sel = 0; loadQueue(); });
$("f-queue").addEventListener("change", () => { S.offset = 0; S.sel = 0; loadQueue(); });
$("f-group").addEventListener("change", () => { S.sel = 0; renderQueue(); });
$("take-next").addEventListener("click", () => nextCase());

function reason() {
  const r = $("note").value.trim();
  if (r.length < 3) { $("decide-result").textContent = "Write the reason in the note field first (3 characters at least)."; $("note").focus(); return null; }
  return r;
}

async function caseAction(path, body, done) {
  const c = S.current;
  try {
    const r = await api(`/cases/${c.id}/${path}`, { method: "POST", body });
    const fresh = await api(`/cases/${c.id}`);
    S.current = fresh;
    S.mine = S.mine && !fresh.escalated;
    renderCase(fresh, $("case-lock").textContent);
    $("decide-result").textContent = done(r);
  } catch (e) {
    $("decide-result").textContent = `Not done: ${e.message}`;
  }
}
$("escalate").addEventListener("click", () => {
  const r = reason(); if (r) caseAction("escalate", { reason: r }, () => "Escalated to the supervisors");
});
$("hold").addEventListener("click", () => {
  const r = reason(); if (r) caseAction("hold", { reason: r }, () => "On hold: the SLA clock is paused");
});
$("resume").addEventListener("click", () => caseAction("resume", undefined, (r) => `Resumed after ${duration(r.paused_seconds)} on hold`));
$("confirm-yes").addEventListener("click", () => caseAction("confirm", { agree: true, note: $("note").value || null }, (r) => `Confirmed: payment ${r.status}`));
$("confirm-no").addEventListener("click", () => caseAction("confirm", { agree: false, note: $("note").value || null }, () => "Proposal rejected: the case is open again"));
$("nav-queue").addEventListener("click", async () => { await loadQueues(); await loadQueue(); show("queue"); focusRow(); });
$("nav-stats").addEventListener("click", () => loadStats());

// ---------- the team lead's page ----------
function pct(v) { return v == null ? "–" : `${(v * 100).toFixed(0)}%`; }
function secs(v) { return v == null ? "–" : duration(v); }

function table(id, head, rows) {
  const t = $(id);
  t.replaceChildren();
  const tr = el("tr");
  for (const h of head) tr.append(el("th", { scope: "col" }, h));
  const thead = el("thead"); thead.append(tr);
  const tbody = el("tbody");
  for (const r of rows) {
    const x = el("tr");
    for (const v of r) x.append(el("td", {}, v));
    tbody.append(x);
  }
  if (!rows.length) { const x = el("tr"); x.append(el("td", { colspan: String(head.length) }, "no decided cases yet")); tbody.append(x); }
  t.append(thead, tbody);
}

function groupRow(g) {
  return [String(g.decided), secs(g.median_seconds), secs(g.p90_seconds), String(g.sla_breaches),
    pct(g.approved_share), g.labelled ? `${pct(g.accuracy)} of ${g.labelled}` : "no labels yet", money(g.lost_amount, "EUR")];
}
const HEAD = ["decided", "median to decision", "p90", "SLA breaches", "approved", "right by later labels", "lost to approved fraud"];

async function loadStats() {
  const st = await api("/review/stats");
  table("stats-queues", ["day", "queue", ...HEAD], st.by_queue.map((g) => [g.day, g.queue, ...groupRow(g)]));
  table("stats-reviewers", ["day", "reviewer", ...HEAD], st.by_reviewer.map((g) => [g.day, g.reviewer, ...groupRow(g)]));
  const ci = (v, f) => (v ? `${f(v[0])}–${f(v[1])}` : "–");
  table("stats-arms", ["arm", "decided", "mean to decision (95%)", "right by labels (95%)", "lost per case (95%)"],
    st.by_arm.map((g) => [g.arm, String(g.decided), `${secs(g.mean_seconds)} (${ci(g.mean_seconds_ci95, secs)})`,
      `${pct(g.accuracy)} (${ci(g.accuracy_ci95, pct)})`, `${money(g.lost_per_case ?? 0, "EUR")} (${ci(g.lost_per_case_ci95, (v) => money(v, "EUR"))})`]));
  $("stats-arms-block").hidden = !(st.explain_arms.length || st.by_arm.length);
  drawOutlook(st.outlook);
  show("stats-view");
}

function drawOutlook(o) {
  const c = $("outlook-chart");
  c.replaceChildren();
  const W = 760, H = 180, pad = 40, n = o.hours.length;
  c.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const peak = Math.max(1, ...o.hours.map((h) => Math.max(h.demand, h.supply)), o.backlog_total);
  const bw = (W - 2 * pad) / n;
  const Y = (v) => H - 24 - (v / peak) * (H - 50);
  c.append(svg("line", { x1: pad, x2: W - pad, y1: H - 24, y2: H - 24, stroke: "#8c959f" }));
  o.hours.forEach((h, i) => {
    const x = pad + i * bw;
    const demand = h.demand + (i === 0 ? o.backlog_total : 0);
    const g = svg("g", { class: "hour" });
    g.append(svg("rect", { x: x + 4, y: Y(demand), width: bw / 2 - 6, height: H - 24 - Y(demand), fill: "#9a3412", class: "demand" }));
    g.append(svg("rect", { x: x + bw / 2, y: Y(h.supply), width: bw / 2 - 6, height: H - 24 - Y(h.supply), fill: "#1a7f37", class: "supply" }));
    g.append(svg("text", { x: x + bw / 2, y: H - 8, "text-anchor": "middle" }, utc(h.hour, false).replace(" UTC", "")));
    g.append(svg("title", {}, `${utc(h.hour)}: ${demand.toFixed(1)} cases expected${i === 0 ? " (incl. backlog)" : ""}, ${h.supply.toFixed(1)} cleared by ${h.reviewers_on_shift} reviewer(s) on shift`));
    c.append(g);
  });
  c.append(svg("text", { x: pad, y: 12 }, `■ demand (cases)`), svg("text", { x: pad + 130, y: 12, class: "down" }, "■ staffed supply (cases)"));
  $("outlook-text").textContent = `Backlog ${o.backlog_total}; next ${n} h: ${o.demand_total.toFixed(0)} cases expected, ` +
    `${o.supply_total.toFixed(0)} can be cleared` + (o.short_by > 0 ? ` — short by ${o.short_by.toFixed(0)}.` : " — enough staff.") + ` Team: ${o.team}.`;
}

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
    const locked = currentQueue() && currentQueue().mode === "locked";
    if (locked && (ev.key === "Enter" || ev.key === "o" || ev.key === "n")) { nextCase(); ev.preventDefault(); return; }
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
