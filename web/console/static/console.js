// The console's only script (the Content-Security-Policy allows no inline script or style):
// confirm dangerous forms, and follow a batch live over server-sent events.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
  const live = document.getElementById("live");
  if (live) followBatch(live);
});

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

function followBatch(live) {
  show(live, JSON.parse(live.dataset.initial));
  if (JSON.parse(live.dataset.initial).finished) return;
  const hint = live.querySelector('[data-live="stream"]');
  const source = new EventSource(live.dataset.events);
  source.addEventListener("progress", (event) => show(live, JSON.parse(event.data)));
  source.addEventListener("finished", () => {
    source.close();
    hint.textContent = "finished";
  });
  source.onerror = () => { hint.textContent = "reconnecting…"; };
  source.onopen = () => { hint.textContent = "live: updates as the batch runs"; };
}
