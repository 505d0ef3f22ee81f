// The team lead's view of GET /status/forecast. Shares the console's key (this tab only).
"use strict";
(() => {
  const KEY = "riskgate.key";
  const $ = (id) => document.getElementById(id);
  let key = sessionStorage.getItem(KEY) || "";

  const minutes = (m) => (m === null || m === undefined ? "–" : `${m.toFixed(1)} min`);

  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text; // never innerHTML: event names are the admin's text
    if (cls) td.className = cls;
    row.appendChild(td);
  }

  async function load() {
    const r = await fetch("/status/forecast", { headers: { Authorization: `Bearer ${key}` } });
    if (r.status === 401 || r.status === 403) {
      sessionStorage.removeItem(KEY);
      key = "";
      $("signin").hidden = false;
      $("forecast").hidden = true;
      $("signin-error").textContent = r.status === 401 ? "Unknown key." : "This key may not see the forecast.";
      return;
    }
    const body = await r.json();
    $("signin").hidden = true;
    $("forecast").hidden = false;
    $("as-of").textContent = `as of ${body.as_of}, SLA ${body.sla_minutes} min`;
    const rows = $("forecast-rows");
    rows.replaceChildren();
    for (const h of body.hours) {
      const tr = document.createElement("tr");
      if (h.over_sla) tr.className = "overdue";
      cell(tr, h.start.slice(11, 16));
      cell(tr, h.expected_inflow.toFixed(1));
      cell(tr, h.capacity_per_hour.toFixed(1));
      cell(tr, String(h.reviewers));
      cell(tr, minutes(h.p50_wait_minutes));
      const band = h.p90_band_minutes ? ` (${h.p90_band_minutes[0]}–${h.p90_band_minutes[1]})` : "";
      cell(tr, minutes(h.p90_wait_minutes) + band + (h.over_sla ? " · over SLA" : ""));
      cell(tr, h.events.join(", "));
      rows.appendChild(tr);
    }
  }

  $("signin-form").addEventListener("submit", (e) => {
    e.preventDefault();
    key = $("key").value.trim();
    sessionStorage.setItem(KEY, key);
    load();
  });
  if (key) load();
  setInterval(() => key && load(), 60000);
})();
