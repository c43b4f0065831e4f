// EventPro live dashboard: polls the JSON API once a second and redraws without a reload.
"use strict";
(function () {
  const POLL_MS = 1000;
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);
  const state = { event: "", window: null, lastRequests: null, lastAt: null, rate: null };

  const fmt = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));
  const money = (c) => (c / 100).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });

  async function getJSON(url) {
    const response = await fetch(url, { cache: "no-store" });
    if (!response.ok) throw new Error(url + " answered " + response.status);
    return response.json();
  }

  function setText(id, value) {
    const el = $(id);
    if (el.textContent !== String(value)) el.textContent = value;
  }

  function fillWindows(sizes, current) {
    const select = $("window-select");
    if (select.options.length === sizes.length) return;
    select.innerHTML = "";
    for (const size of sizes) {
      const option = document.createElement("option");
      option.value = String(size);
      option.textContent = size + " s";
      if (size === current) option.selected = true;
      select.appendChild(option);
    }
  }

  function fillEvents(events) {
    const select = $("event-select");
    const known = Array.from(select.options).map((o) => o.value).filter(Boolean);
    if (known.join("|") === events.join("|")) return;
    select.innerHTML = "";
    for (const id of events) {
      const option = document.createElement("option");
      option.value = id;
      option.textContent = id;
      select.appendChild(option);
    }
    if (!state.event || !events.includes(state.event)) state.event = events[0] || "";
    select.value = state.event;
  }

  function renderTop(rows) {
    const body = $("top-events").querySelector("tbody");
    body.innerHTML = "";
    for (const row of rows) {
      const tr = document.createElement("tr");
      const cells = [row.event_id, fmt(row.current.sold), fmt(row.current.requests),
        fmt(row.current.rejected), money(row.current.revenue_cents), fmt(row.totals.sold)];
      for (const text of cells) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
  }

  function el(name, attrs) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    return node;
  }

  function renderChart(windows, size) {
    const svg = $("sales-chart");
    const W = 800, H = 260, left = 44, right = 8, top = 10, bottom = 24;
    const rows = windows.slice(-40);
    const max = Math.max(1, ...rows.map((r) => Math.max(r.sold, r.reserved, r.requests)));
    const slot = (W - left - right) / Math.max(rows.length, 1);
    const y = (v) => top + (H - top - bottom) * (1 - v / max);
    svg.replaceChildren();
    svg.appendChild(el("line", { x1: left, y1: H - bottom, x2: W - right, y2: H - bottom, class: "axis" }));
    svg.appendChild(el("line", { x1: left, y1: top, x2: left, y2: H - bottom, class: "axis" }));
    for (const v of [0, max / 2, max]) {
      const t = el("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end" });
      t.textContent = Math.round(v);
      svg.appendChild(t);
    }
    const points = [];
    rows.forEach((r, i) => {
      const x = left + i * slot;
      const w = Math.max(slot * 0.38, 1);
      svg.appendChild(el("rect", { x: x + slot * 0.1, y: y(r.reserved), width: w, height: H - bottom - y(r.reserved), class: "bar-reserved" }));
      const sold = el("rect", { x: x + slot * 0.1 + w, y: y(r.sold), width: w, height: H - bottom - y(r.sold), class: "bar-sold" });
      sold.setAttribute("data-sold", r.sold);
      const tip = el("title", {});
      tip.textContent = r.window_start + ": " + r.sold + " sold, " + r.requests + " requests";
      sold.appendChild(tip);
      svg.appendChild(sold);
      if (r.rejected > 0) {
        svg.appendChild(el("rect", { x: x + slot * 0.1 + w * 2, y: y(r.rejected), width: Math.max(slot * 0.1, 1), height: H - bottom - y(r.rejected), class: "bar-rejected" }));
      }
      points.push((x + slot / 2).toFixed(1) + "," + y(r.requests).toFixed(1));
      if (i % Math.ceil(rows.length / 8) === 0) {
        const label = el("text", { x: x + slot / 2, y: H - 8, "text-anchor": "middle" });
        label.textContent = new Date(r.window_start).toISOString().substring(11, 19);
        svg.appendChild(label);
      }
    });
    if (points.length > 1) svg.appendChild(el("polyline", { points: points.join(" "), class: "line-requests" }));
    const sold = rows.reduce((a, r) => a + r.sold, 0);
    svg.setAttribute("data-windows", rows.length);
    svg.setAttribute("data-sold", sold);
    setText("chart-caption", rows.length + " windows of " + size + " s, " + sold + " sold");
  }

  async function tick() {
    try {
      const query = state.window ? "?window=" + state.window : "";
      const stats = await getJSON("/api/v1/stats" + query);
      state.window = state.window || stats.window;
      fillWindows(stats.windows || [stats.window], state.window);
      fillEvents(stats.top_events.map((e) => e.event_id).concat(stats.events.filter((id) => !stats.top_events.some((e) => e.event_id === id))));
      setText("sold-total", fmt(stats.totals.sold));
      const now = performance.now();
      if (state.lastRequests !== null && now > state.lastAt) {
        const rate = ((stats.totals.requests - state.lastRequests) * 1000) / (now - state.lastAt);
        state.rate = state.rate === null ? rate : 0.5 * state.rate + 0.5 * rate;
      }
      state.lastRequests = stats.totals.requests;
      state.lastAt = now;
      setText("requests-rate", state.rate === null ? "–" : state.rate.toFixed(1));
      setText("latency-p50", stats.decision_latency_ms.p50 === null ? "–" : stats.decision_latency_ms.p50.toFixed(1));
      setText("latency-p99", stats.decision_latency_ms.p99 === null ? "–" : stats.decision_latency_ms.p99.toFixed(1));
      setText("consumer-lag", fmt(stats.consumer_lag));
      setText("dlq-depth", fmt(stats.dlq_depth));
      renderTop(stats.top_events);
      if (state.event) {
        const id = encodeURIComponent(state.event);
        const [inventory, windows] = await Promise.all([
          getJSON("/api/v1/events/" + id).catch(() => null),
          getJSON("/api/v1/events/" + id + "/sales?window=" + state.window),
        ]);
        if (inventory) {
          setText("seats-sold", fmt(inventory.sold));
          setText("seats-held", fmt(inventory.held));
          setText("seats-available", fmt(inventory.available));
          setText("seats-capacity", fmt(inventory.capacity));
        }
        renderChart(windows, state.window);
      }
      const status = $("status");
      status.className = "status" + (stats.partial ? " error" : "");
      setText("status", (stats.partial ? "partial: " + stats.unreachable.join(", ") + " · " : "live · ") + new Date().toLocaleTimeString());
    } catch (err) {
      $("status").className = "status error";
      setText("status", "update failed: " + err.message);
    } finally {
      setTimeout(tick, POLL_MS);
    }
  }

  $("event-select").addEventListener("change", (e) => { state.event = e.target.value; });
  $("window-select").addEventListener("change", (e) => { state.window = Number(e.target.value); });
  tick();
})();
