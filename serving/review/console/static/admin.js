// riskgate policy admin: the policy in force, its history, and a rule edit that is backtested
// before it is applied or shadowed. Plain DOM (textContent only: no markup from the API).
"use strict";

const KEY = "riskgate.admin-key";
const $ = (id) => document.getElementById(id);
const state = { policy: null, proposal: null, backtested: false };

async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: {
      Authorization: `Bearer ${sessionStorage.getItem(KEY) || ""}`,
      "Content-Type": "application/json",
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const err = data.error;
    const text = typeof err === "object" && err ? err.message || JSON.stringify(err) : err;
    throw new Error(text || `${res.status}`);
  }
  return data;
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "–" : String(text);
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function num(v) {
  if (v === null || v === undefined) return "–";
  return typeof v === "number" ? v.toLocaleString("en-US", { maximumFractionDigits: 1 }) : v;
}

function renderPolicy() {
  const body = $("rules");
  body.replaceChildren();
  for (const r of state.policy.rules) {
    const tr = document.createElement("tr");
    tr.dataset.rule = r.name;
    cell(tr, r.name);
    cell(tr, r.field);
    cell(tr, r.op);
    cell(tr, JSON.stringify(r.value));
    cell(tr, r.action);
    const td = cell(tr, "");
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = "Edit";
    b.addEventListener("click", () => edit(r));
    td.replaceChildren(b);
    body.appendChild(tr);
  }
  const count = (lists) => Object.entries(lists).map(([k, v]) => `${k}: ${v.length}`).join(", ") || "none";
  $("lists").textContent =
    `Block lists ${count(state.policy.block)} · allow lists ${count(state.policy.allow)} · ` +
    `fallback settles up to ${state.policy.fallback_max_amount}`;
}

function edit(rule) {
  $("r-name").value = rule.name;
  $("r-field").value = rule.field;
  $("r-op").value = rule.op;
  $("r-value").value = JSON.stringify(rule.value);
  $("r-action").value = rule.action;
  invalidate();
}

function invalidate() {
  state.backtested = false;
  $("do-apply").disabled = true;
}

function proposal() {
  let value;
  const raw = $("r-value").value.trim();
  try {
    value = JSON.parse(raw);
  } catch {
    value = raw; // plain text
  }
  const rule = {
    name: $("r-name").value.trim(),
    field: $("r-field").value.trim(),
    op: $("r-op").value,
    value,
    action: $("r-action").value,
  };
  const rules = state.policy.rules.filter((r) => r.name !== rule.name);
  rules.push(rule);
  return { ...state.policy, rules };
}

const ROWS = [
  ["approve", (c) => c.decisions.approve],
  ["review", (c) => c.decisions.review],
  ["decline", (c) => c.decisions.decline],
  ["peak reviews in one hour", (c) => c.peak_reviews_in_one_hour],
  ["fraud caught (count)", (c) => c.mature.fraud_caught_count],
  ["fraud caught (amount)", (c) => c.mature.fraud_caught_amount],
  ["good payments held", (c) => c.mature.good_held],
  ["good payments declined", (c) => c.mature.good_declined],
  ["team: good-payment hold p95 (min)", (c) => c.team.hold_p95_min],
  ["team: SLA breaches", (c) => c.team.sla_breaches],
  ["younger than the label delay", (c) => c.label_immature.payments],
];

function renderReport(rep) {
  $("report").hidden = false;
  $("report-title").textContent =
    `Backtest ${rep.backtest_id}: ${rep.payments.toLocaleString("en-US")} payments, ` +
    `${rep.period.start.slice(0, 10)} to ${rep.period.end.slice(0, 10)}`;
  const body = $("report-rows");
  body.replaceChildren();
  for (const [label, get] of ROWS) {
    const tr = document.createElement("tr");
    cell(tr, label);
    for (const c of ["actual", "in_force", "proposed"]) cell(tr, num(get(rep[c])), "num");
    body.appendChild(tr);
  }
  const kinds = Object.entries(rep.changes.by_kind)
    .map(([k, v]) => `${k}: ${v.payments} (amount ${num(v.amount)})`)
    .join("; ");
  $("report-note").textContent = `Changed by the proposal: ${rep.changes.changed}${kinds ? ` — ${kinds}` : ""}.`;
}

async function backtest(ev) {
  ev.preventDefault();
  $("edit-error").textContent = "";
  state.proposal = proposal();
  // the days ending at the latest stored payment (the API's default period is 30 of them)
  const body = { ...state.proposal, period: { days: Number($("r-days").value) || 30 } };
  try {
    const rep = await api("POST", "/admin/policy/backtest", body);
    renderReport(rep);
    state.backtested = true;
    $("do-apply").disabled = false;
  } catch (e) {
    $("edit-error").textContent = e.message;
  }
}

async function apply(mode) {
  $("edit-error").textContent = "";
  const body = { ...(state.proposal || proposal()), reason: $("r-reason").value || null };
  try {
    await api("PUT", `/admin/policy${mode === "shadow" ? "?mode=shadow" : ""}`, body);
    await refresh();
  } catch (e) {
    $("edit-error").textContent = e.message;
  }
}

async function refreshShadow() {
  try {
    const s = await api("GET", "/admin/policy/shadow");
    $("shadow").hidden = false;
    $("shadow-text").textContent =
      `${s.shadow_id}: ${s.payments} payments so far, ${s.differ} decided otherwise than live ` +
      `(live ${JSON.stringify(s.live)}, shadow ${JSON.stringify(s.shadow)}).`;
  } catch {
    $("shadow").hidden = true;
  }
}

function renderHistory(items) {
  const body = $("history");
  body.replaceChildren();
  for (const h of items) {
    const tr = document.createElement("tr");
    cell(tr, h.at.replace("T", " ").slice(0, 19));
    cell(tr, h.actor);
    cell(tr, h.action.replace("policy_", "") + (h.force ? " (forced)" : ""));
    cell(tr, h.reason);
    const b = h.backtest;
    cell(
      tr,
      b
        ? `#${h.backtest_id}: reviews ${num(b.in_force.review_volume)} → ${num(b.proposed.review_volume)}, ` +
            `fraud caught ${num(b.in_force.fraud_caught_amount)} → ${num(b.proposed.fraud_caught_amount)}`
        : h.shadow
          ? `shadow: ${h.shadow.payments} payments, ${h.shadow.differ} differ`
          : h.action === "policy" ? "no backtest" : "",
    );
    body.appendChild(tr);
  }
}

async function refresh() {
  state.policy = await api("GET", "/admin/policy");
  renderPolicy();
  renderHistory((await api("GET", "/admin/policy/history")).items);
  await refreshShadow();
  invalidate();
}

async function signIn(ev) {
  if (ev) ev.preventDefault();
  const typed = $("key").value;
  if (typed) sessionStorage.setItem(KEY, typed);
  try {
    const who = await api("GET", "/whoami");
    if (who.role !== "admin") throw new Error("this page needs an admin key");
    $("who").textContent = `${who.name} (admin)`;
    $("signin").hidden = true;
    $("admin").hidden = false;
    await refresh();
  } catch (e) {
    sessionStorage.removeItem(KEY);
    $("signin-error").textContent = e.message;
  }
}

$("signin-form").addEventListener("submit", signIn);
$("edit").addEventListener("submit", backtest);
$("edit").addEventListener("input", invalidate);
$("do-apply").addEventListener("click", () => apply("live"));
$("do-shadow").addEventListener("click", () => apply("shadow"));
$("do-promote").addEventListener("click", async () => {
  await api("POST", "/admin/policy/shadow/promote");
  await refresh();
});
$("do-drop").addEventListener("click", async () => {
  await api("DELETE", "/admin/policy/shadow");
  await refresh();
});
if (sessionStorage.getItem(KEY)) signIn();
