// herd's dashboard: one feed (server-sent events from /api/events, or
// polling /api/dashboard where they fail), every row built in one
// innerHTML, every node-provided string escaped.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const filter = { state: "", rack: "", stragglers: false };
  let last = null, lastAt = 0;

  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, (c) =>
      ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  }
  function bytes(n) {
    if (!(n > 0)) return "0 B";
    const u = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + u[i];
  }
  function dur(s) {
    if (s == null || s < 0) return "";
    s = Math.round(s);
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
  }

  function renderCounts(d) {
    let h = "";
    for (const c of d.counts) {
      const sel = filter.state === c.state ? " selected" : "";
      h += `<span class="count ${esc(c.state)}${c.n ? "" : " zero"}${sel}" data-state="${esc(c.state)}">${esc(c.state)}<span class="n">${c.n}</span></span>`;
    }
    $("counts").innerHTML = h;
  }

  function renderSelect(sel, values, current) {
    const want = ["", ...values].join("\n");
    if (sel.dataset.options !== want) {
      sel.innerHTML = `<option value="">all</option>` + values.map((v) => `<option value="${esc(v)}">${esc(v)}</option>`).join("");
      sel.dataset.options = want;
    }
    sel.value = current;
  }

  function renderAggregate(d) {
    const done = (d.counts.find((c) => c.state === "done") || { n: 0 }).n;
    const total = d.nodes.length;
    $("summary").textContent = `${done} of ${total} nodes done`;
    document.title = `herd: ${done} of ${total} done`;
    $("agg-rate").textContent = bytes(d.rate) + "/s";
    $("agg-bytes").textContent = d.total > 0 ? `${bytes(d.bytes)} of ${bytes(d.total)}` : bytes(d.bytes);
    $("agg-eta").textContent = d.eta >= 0 ? dur(d.eta) : "–";
    const hist = d.history || [];
    const W = 320, H = 64;
    let peak = 0;
    for (const s of hist) peak = Math.max(peak, s.rate);
    const t0 = hist.length ? hist[0].t : 0, t1 = hist.length ? hist[hist.length - 1].t : 1;
    const span = Math.max(t1 - t0, 1);
    const pts = hist.map((s) => {
      const x = ((s.t - t0) / span) * W;
      const y = H - 2 - (peak > 0 ? (s.rate / peak) * (H - 6) : 0);
      return x.toFixed(1) + "," + y.toFixed(1);
    });
    $("rate-line").setAttribute("points", pts.join(" "));
    $("rate-area").setAttribute("points", pts.length ? `0,${H} ${pts.join(" ")} ${W},${H}` : "");
    $("rate-peak").textContent = `peak ${bytes(peak)}/s over ${dur(span)}`;
  }

  function rowHTML(n) {
    const cls = [n.state];
    if (n.straggler) cls.push("straggler");
    let pct = -1;
    if (n.total > 0) pct = Math.min(100, (100 * n.bytes) / n.total);
    else if (n.state === "done") pct = 100;
    const bar = pct >= 0
      ? `<span class="bar"><i style="width:${pct.toFixed(1)}%"></i></span><span class="pct">${pct.toFixed(0)}%</span>`
      : `<span class="muted">${n.bytes > 0 ? esc(bytes(n.bytes)) : ""}</span>`;
    const why = n.state === "failed" ? n.reason : n.message;
    const busy = n.state === "installing";
    return `<tr class="${cls.join(" ")}" data-name="${esc(n.name)}" data-state="${esc(n.state)}" data-rack="${esc(n.rack)}"${n.straggler ? ` data-straggler="${esc(n.straggler)}"` : ""}>` +
      `<td class="name" data-why="${esc(n.straggler || "")}">${esc(n.name)}</td>` +
      `<td>${esc(n.rack)}</td>` +
      `<td class="state">${esc(n.state)}</td>` +
      `<td class="step">${esc(n.step)}</td>` +
      `<td class="num since">${dur(n.step_secs)}</td>` +
      `<td class="progress">${bar}</td>` +
      `<td class="num rate">${busy && n.rate > 0 ? esc(bytes(n.rate)) + "/s" : ""}</td>` +
      `<td class="num eta">${n.eta >= 0 ? dur(n.eta) : ""}</td>` +
      `<td class="reason">${esc(why)}</td></tr>`;
  }

  function renderRows(d) {
    const rows = [];
    for (const n of d.nodes) {
      if (filter.state && n.state !== filter.state) continue;
      if (filter.rack && n.rack !== filter.rack) continue;
      if (filter.stragglers && !n.straggler) continue;
      rows.push(rowHTML(n));
    }
    $("rows").innerHTML = rows.length ? rows.join("") : `<tr><td colspan="9" class="muted">no node matches</td></tr>`;
    const strag = d.nodes.filter((n) => n.straggler).length;
    $("shown").textContent = `${rows.length} of ${d.nodes.length} nodes shown; ${strag} straggler(s)`;
    document.body.dataset.shown = rows.length;
  }

  function render(d) {
    last = d;
    lastAt = Date.now();
    renderCounts(d);
    renderSelect($("state-filter"), d.counts.map((c) => c.state), filter.state);
    renderSelect($("rack-filter"), d.racks || [], filter.rack);
    renderAggregate(d);
    renderRows(d);
    $("updated").textContent = "updated " + new Date(d.time).toLocaleTimeString();
    $("updated").classList.remove("stale");
    document.body.dataset.rendered = d.time;
  }

  function rerender() { if (last) render(last); }
  $("state-filter").addEventListener("change", (e) => { filter.state = e.target.value; rerender(); });
  $("rack-filter").addEventListener("change", (e) => { filter.rack = e.target.value; rerender(); });
  $("straggler-filter").addEventListener("change", (e) => { filter.stragglers = e.target.checked; rerender(); });
  $("counts").addEventListener("click", (e) => {
    const c = e.target.closest(".count");
    if (!c) return;
    filter.state = filter.state === c.dataset.state ? "" : c.dataset.state;
    rerender();
  });
  setInterval(() => { if (lastAt && Date.now() - lastAt > 5000) $("updated").classList.add("stale"); }, 1000);

  let polling = false;
  function poll() {
    if (polling) return;
    polling = true;
    const once = () => fetch("/api/dashboard", { cache: "no-store" })
      .then((r) => r.json()).then(render).catch(() => {})
      .finally(() => setTimeout(once, 2000));
    once();
  }
  if (window.EventSource) {
    const es = new EventSource("/api/events");
    es.addEventListener("dashboard", (e) => render(JSON.parse(e.data)));
    // A refused stream (503: too many) is closed for good: poll instead.
    es.onerror = () => { if (es.readyState === EventSource.CLOSED) poll(); };
  } else {
    poll();
  }
})();
