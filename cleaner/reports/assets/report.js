// The table of decisions: the rows come from the JSON blocks of this page (one per
// repository), are filtered by repository, verdict and reason text, sorted by age or size,
// and drawn a page at a time, so a report of 20,000 images opens at once.
"use strict";
(function () {
  const PAGE = 200;
  const now = Number(document.body.dataset.now);
  const rows = [];
  const repositories = [];
  for (const block of document.querySelectorAll("script.repository")) {
    const data = JSON.parse(block.textContent);
    const index = repositories.push(data.repository) - 1;
    for (const d of data.decisions) {
      // [verdict, digest, tags, pushed (epoch s), size, reason]
      rows.push({ repo: index, verdict: d[0], digest: d[1], tags: d[2], age: now - d[3],
                  size: d[4], reason: d[5], text: d[5].toLowerCase() });
    }
  }
  const $ = (id) => document.getElementById(id);
  const repoSelect = $("repository"), verdictSelect = $("verdict"), reasonInput = $("reason");
  for (const name of repositories.slice().sort()) {
    repoSelect.append(new Option(name, String(repositories.indexOf(name))));
  }
  let shown = rows, page = 0, sortKey = null, sortDir = 1;

  function formatBytes(size) {
    if (Math.abs(size) < 1024) return size + " B";
    let value = size;
    for (const unit of ["KiB", "MiB", "GiB", "TiB"]) {
      value /= 1024;
      if (Math.abs(value) < 1024 || unit === "TiB") return value.toFixed(1) + " " + unit;
    }
  }
  function formatAge(seconds) {  // the largest two units, rounded down: 1d17h, 5m30s
    let rest = Math.max(0, Math.floor(seconds));
    const parts = [];
    for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]]) {
      if (parts.length === 2) break;
      const count = Math.floor(rest / size);
      rest -= count * size;
      if (count || parts.length) parts.push(count ? count + unit : "");
    }
    return parts.join("") || "0s";
  }
  function cell(tr, text, className) {
    const td = tr.insertCell();
    if (className) td.className = className;
    td.textContent = text;
    return td;
  }
  function draw() {
    const body = $("rows");
    const pages = Math.max(1, Math.ceil(shown.length / PAGE));
    page = Math.min(page, pages - 1);
    const fragment = document.createDocumentFragment();
    for (const row of shown.slice(page * PAGE, (page + 1) * PAGE)) {
      const tr = document.createElement("tr");
      cell(tr, repositories[row.repo]);
      cell(tr, row.verdict, row.verdict);
      const digest = cell(tr, "");
      const code = document.createElement("code");
      code.textContent = row.digest.replace("sha256:", "").slice(0, 12);
      code.title = row.digest;
      digest.append(code);
      if (row.tags.length) cell(tr, row.tags.join(", ")); else cell(tr, "untagged", "untagged");
      cell(tr, formatAge(row.age), "n");
      cell(tr, formatBytes(row.size), "n");
      cell(tr, row.reason);
      fragment.append(tr);
    }
    body.replaceChildren(fragment);
    const first = shown.length ? page * PAGE + 1 : 0;
    const last = Math.min(shown.length, (page + 1) * PAGE);
    $("status").textContent = `${shown.length} of ${rows.length} decisions match; ` +
      `showing ${first}-${last}.`;
    $("page").textContent = `page ${page + 1} of ${pages}`;
    $("previous").disabled = page === 0;
    $("next").disabled = page >= pages - 1;
  }
  function apply() {
    const repo = repoSelect.value, verdict = verdictSelect.value;
    const words = reasonInput.value.trim().toLowerCase();
    shown = rows.filter((row) =>
      (repo === "" || row.repo === Number(repo)) &&
      (verdict === "" || row.verdict === verdict) &&
      (words === "" || row.text.includes(words)));
    if (sortKey) shown.sort((a, b) => (a[sortKey] - b[sortKey]) * sortDir);
    page = 0;
    draw();
  }
  for (const header of document.querySelectorAll("th[data-sort]")) {
    header.querySelector("button").addEventListener("click", () => {
      const key = header.dataset.sort;
      sortDir = sortKey === key ? -sortDir : 1;
      sortKey = key;
      for (const other of document.querySelectorAll("th[data-sort]")) {
        other.setAttribute("aria-sort", other === header ?
          (sortDir > 0 ? "ascending" : "descending") : "none");
      }
      apply();
    });
  }
  repoSelect.addEventListener("change", apply);
  verdictSelect.addEventListener("change", apply);
  reasonInput.addEventListener("input", apply);
  $("previous").addEventListener("click", () => { page -= 1; draw(); });
  $("next").addEventListener("click", () => { page += 1; draw(); });
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.has("repository")) {
    const wanted = repositories.indexOf(params.get("repository"));
    if (wanted >= 0) repoSelect.value = String(wanted);
  }
  apply();
  performance.mark("decisions-drawn");
})();
