// The console's only script (the Content-Security-Policy allows no inline script or style):
// confirm dangerous forms, follow a batch live over server-sent events, and preview sequence steps as they are typed.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
  const live = document.getElementById("live");
  if (live) followBatch(live);
  for (const section of document.querySelectorAll("[data-fragment]")) loadFragment(section);
  livePreviews(document.querySelectorAll("form[data-preview]"));
});

// The sequence editor: a step's draft is posted (with its CSRF token, the chosen lead and step 1's
// subject, which a follow-up is sent under) 300 ms after the last keystroke; the server's escaped
// HTML fragment replaces the step's preview. Typing in step 1's subject, or choosing another lead,
// refreshes every preview.
function livePreviews(forms) {
  const timers = new Map();
  const latest = new Map();
  const schedule = (form) => {
    clearTimeout(timers.get(form));
    timers.set(form, setTimeout(() => previewStep(form, latest), 300));
  };
  for (const form of forms) {
    form.addEventListener("input", (event) => {
      if (event.target.hasAttribute("data-first-subject")) { for (const f of forms) schedule(f); } else schedule(form);
    });
  }
  const lead = document.querySelector("[data-preview-lead]");
  if (lead && forms.length) {
    lead.addEventListener("change", () => {  // another lead: every preview (and where a save comes back to)
      for (const input of document.querySelectorAll('input[type="hidden"][name="lead"]')) input.value = lead.value;
      for (const f of forms) schedule(f);
    });
  }
}

async function previewStep(form, latest) {
  const data = new URLSearchParams(new FormData(form));
  const lead = document.querySelector("[data-preview-lead]");
  if (lead) data.set("lead", lead.value);
  const first = document.querySelector("[data-first-subject]");
  if (first) data.set("first_subject", first.value);
  const target = document.getElementById(form.dataset.previewTarget);
  const ticket = (latest.get(form) || 0) + 1;
  latest.set(form, ticket);
  try {
    const response = await fetch(form.dataset.preview, { method: "POST", body: data, credentials: "same-origin" });
    const html = await response.text();
    if (latest.get(form) !== ticket) return;  // a newer draft's preview is on its way
    if (!response.ok) throw new Error(String(response.status));
    target.innerHTML = html;
  } catch (error) {
    if (latest.get(form) === ticket) target.textContent = "Could not preview (" + error.message + "): save, or reload.";
  }
}

// A slow part of a page (the campaign forecast) is rendered by the server on its own URL and
// put in place when it arrives; it is our own escaped HTML from the same origin.
async function loadFragment(section) {
  try {
    const response = await fetch(section.dataset.fragment, { credentials: "same-origin" });
    if (!response.ok) throw new Error(String(response.status));
    section.innerHTML = await response.text();
  } catch (error) {
    section.textContent = "Could not load this part of the page (" + error.message + "): reload to try again.";
  }
}

function rows(tbody, cells) {
  tbody.replaceChildren();
  if (!cells.length) cells = [["none"]];
  for (const values of cells) {
    const tr = document.createElement("tr");
    for (const value of values) {
      const td = document.createElement("td");
      td.textContent = String(value);
      tr.appendChild(td);
    }
    tbody.appendChild(tr);
  }
}

function show(live, data) {
  const status = document.querySelector('[data-live="status"]');
  if (status) {
    status.textContent = data.status;
    status.className = "badge s-" + data.status;
  }
  for (const seg of live.querySelectorAll("[data-seg]")) seg.style.flexGrow = String(data.counts[seg.dataset.seg] || 0);
  for (const dd of live.querySelectorAll("[data-count]")) dd.textContent = String(data.counts[dd.dataset.count] || 0);
  live.querySelector('[data-live="total"]').textContent = String(data.total);
  live.querySelector('[data-live="credits"]').textContent = String(data.credits_spent);
  rows(live.querySelector('[data-live="skips"]'), Object.entries(data.skip_reasons));
  const calls = [];
  for (const [provider, outcomes] of Object.entries(data.provider_calls)) {
    for (const [outcome, n] of Object.entries(outcomes)) calls.push([provider, outcome, n]);
  }
  rows(live.querySelector('[data-live="calls"]'), calls);
  if (data.finished) {
    const actions = document.querySelector('[data-live="actions"]');
    if (actions) actions.replaceChildren();
  } else if (data.status !== "draft") {
    const launch = document.querySelector('[data-testid="launch"]');
    if (launch) launch.closest("form").remove();
  }
}

// The item table: fetched again (as JSON, built with textContent) when the counts move, at most every 2 s.
let itemsDue = 0;
let itemsTimer = null;
function refreshItems() {
  const table = document.querySelector("[data-items]");
  if (!table) return;
  const wait = Math.max(0, itemsDue - Date.now());
  if (itemsTimer) return;
  itemsTimer = setTimeout(async () => {
    itemsTimer = null;
    itemsDue = Date.now() + 2000;
    const response = await fetch(table.dataset.items, { credentials: "same-origin" });
    if (!response.ok) return;
    const tbody = table.querySelector('[data-live="items"]');
    tbody.replaceChildren();
    for (const item of await response.json()) {
      const tr = document.createElement("tr");
      const cell = (text) => { const td = document.createElement("td"); td.textContent = text; tr.appendChild(td); return td; };
      cell(String(item.id));
      const lead = cell("");
      const a = document.createElement("a");
      a.href = table.dataset.leadHref + encodeURIComponent(item.lead_id);
      a.textContent = item.email;
      lead.appendChild(a);
      cell(item.company_name || "");
      const status = cell("");
      const badge = document.createElement("span");
      badge.className = "badge s-" + item.status;
      badge.textContent = item.status;
      status.appendChild(badge);
      if (item.skip_reason) status.appendChild(document.createTextNode(" " + item.skip_reason));
      cell(item.attempts + "/" + item.max_attempts);
      cell(item.score === null ? "" : String(item.score));
      cell(item.last_error || "").className = "err";
      tbody.appendChild(tr);
    }
  }, wait);
}

function followBatch(live) {
  show(live, JSON.parse(live.dataset.initial));
  if (JSON.parse(live.dataset.initial).finished) return;
  const hint = live.querySelector('[data-live="stream"]');
  const source = new EventSource(live.dataset.events);
  source.addEventListener("progress", (event) => {
    show(live, JSON.parse(event.data));
    refreshItems();
  });
  source.addEventListener("finished", () => {
    source.close();
    hint.textContent = "finished";
  });
  source.onerror = () => { hint.textContent = "reconnecting…"; };
  source.onopen = () => { hint.textContent = "live: updates as the batch runs"; };
}

// A lead import running in the background (the imports page): poll its status, move the progress bar,
// and when it is done put the server's rendering of the page in place (no reload): the outcome and the job list.
document.addEventListener("DOMContentLoaded", () => {
  const job = document.querySelector("[data-import-status]");
  if (job) followImport(job);
});

async function followImport(section) {
  const bar = section.querySelector("progress");
  const count = section.querySelector("[data-import-count]");
  const hint = section.querySelector("[data-import-hint]");
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    let status;
    try {
      const response = await fetch(section.dataset.importStatus, { credentials: "same-origin" });
      if (!response.ok) throw new Error(String(response.status));
      status = await response.json();
    } catch (error) {
      hint.textContent = "Could not read the progress (" + error.message + "): reload to try again.";
      return;
    }
    bar.max = Math.max(status.total, 1);
    bar.value = status.rows_done;
    count.textContent = status.rows_done + " of about " + status.total + " rows";
    if (status.finished) break;
  }
  const page = await fetch(section.dataset.importPage, { credentials: "same-origin" });
  const done = new DOMParser().parseFromString(await page.text(), "text/html").querySelector("main");
  if (page.ok && done) document.querySelector("main").replaceWith(done);
  else hint.textContent = "Finished: reload to see the outcome.";
}
