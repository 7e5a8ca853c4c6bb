/* Overview: /api/v1/status and /api/v1/history every 2 s; the live chart is uPlot. */
(function () {
  "use strict";
  const o = window.otlpd;
  const SIGNALS = ["traces", "metrics", "logs"];
  const INTERVAL = 2000;
  const RATE_WINDOW = 5; // samples averaged for the rates of the table
  const container = document.getElementById("rate-chart");
  const chartSeconds = Number(container.dataset.seconds) || 300;
  let plot = null;

  function mean(values, count) {
    if (!values || values.length === 0) return null;
    const tail = values.slice(-count);
    return tail.reduce((sum, value) => sum + value, 0) / tail.length;
  }

  function describeReasons(items, requests) {
    const reasons = new Set([...Object.keys(items || {}), ...Object.keys(requests || {})]);
    if (reasons.size === 0) return "none";
    return [...reasons].sort().map((reason) => {
      const parts = [];
      if (items && items[reason]) parts.push(o.number(items[reason]) + " items");
      if (requests && requests[reason] !== undefined) parts.push(o.number(requests[reason]) + " requests");
      return reason.replace(/_/g, " ") + ": " + parts.join(", ");
    }).join("; ");
  }

  function showHealth(status) {
    const banner = document.getElementById("health");
    const health = status.health || {};
    const healthy = health.status === "healthy";
    banner.className = "banner " + (healthy ? "banner-healthy" : "banner-degraded");
    banner.dataset.status = health.status || "unknown";
    o.text("health-status", healthy ? "Healthy" : "Degraded");
    o.text("health-ready", health.ready ? "ready to receive" : "not ready: " + (health.unready_reasons || []).join("; "));
    o.fill("health-reasons", (health.reasons || []).map((reason) => o.el("li", { text: reason })));
  }

  function showFacts(status) {
    o.text("uptime", o.seconds(status.uptime_seconds));
    o.text("version", status.version);
    o.text("grpc-endpoint", status.grpc_endpoint || "not serving");
    const dashboard = status.dashboard_url;
    if (dashboard && /^https?:\/\//.test(dashboard)) {
      o.fill("dashboard-url", o.el("a", { href: dashboard, text: dashboard }));
    } else {
      o.text("dashboard-url", dashboard);
    }
    const daemon = status.daemon || {};
    o.text("output-dir", Array.isArray(daemon.output_dir) ? daemon.output_dir[0] : daemon.output_dir);
    const workers = status.workers && typeof status.workers === "object" ? Object.keys(status.workers).length : 0;
    const implementation = Array.isArray(daemon.buffer_implementation)
      ? daemon.buffer_implementation[0] : daemon.buffer_implementation;
    o.text("receivers", (workers > 1 ? workers + " worker processes" : "1 process") +
      (implementation ? ", " + implementation + " buffer" : ""));
  }

  function meter(id, value, max) {
    const node = document.getElementById(id);
    if (node) {
      node.max = Math.max(1, max || 0);
      node.low = node.max * 0.5;
      node.high = node.max * 0.8;
      node.value = Math.min(value || 0, node.max);
    }
  }

  function percent(value, max) {
    return max > 0 ? " (" + (100 * value / max).toFixed(value && value < max / 1000 ? 3 : 1) + " %)" : "";
  }

  function showSignals(status, history) {
    const series = (history && history.series) || {};
    for (const signal of SIGNALS) {
      const item = (status.summary || {})[signal];
      if (!item) continue;
      const rejected = Object.values(item.rejected_items || {}).reduce((a, b) => a + b, 0);
      o.text(signal + "-received", o.number(item.received_items));
      o.text(signal + "-written", o.number(item.written_items));
      o.text(signal + "-rejected", o.number(rejected));
      o.text(signal + "-received-rate", o.rate(mean(series[signal + ".received_items"], RATE_WINDOW)));
      o.text(signal + "-written-rate", o.rate(mean(series[signal + ".written_items"], RATE_WINDOW)));
      o.text(signal + "-rejected-rate", o.rate(mean(series[signal + ".rejected_items"], RATE_WINDOW)));
      o.text(signal + "-reasons", describeReasons(item.rejected_items, item.rejected_requests));
      o.text(signal + "-requests", o.number(item.requests));
      o.text(signal + "-request-bytes", o.bytes(item.request_bytes));

      meter(signal + "-buffer-bytes", item.buffer_bytes, item.buffer_max_bytes);
      meter(signal + "-buffer-items", item.buffer_items, item.buffer_max_items);
      o.text(signal + "-buffer-bytes-text", o.bytes(item.buffer_bytes) + " of " + o.bytes(item.buffer_max_bytes) +
        percent(item.buffer_bytes, item.buffer_max_bytes));
      o.text(signal + "-buffer-items-text", o.number(item.buffer_items) + " of " + o.number(item.buffer_max_items) +
        percent(item.buffer_items, item.buffer_max_items));

      o.text(signal + "-files-rotated", o.number(item.files_rotated));
      o.text(signal + "-written-bytes", o.bytes(item.written_bytes));
      o.text(signal + "-write-errors", o.number(item.write_errors));
      const state = document.getElementById(signal + "-writer-state");
      if (state) {
        const failed = (item.writer_errors || []).length > 0;
        o.fill(state, o.el("span", {
          class: "badge " + (!item.writer_running || failed ? "status-error" : "status-ok"),
          text: !item.writer_running ? "stopped" : failed ? "failing" : "running",
          title: (item.writer_errors || []).join("\n") || null,
        }));
      }
    }
  }

  function decoderValue(key, value) {
    if (value === null || value === undefined) return "—";
    if (Array.isArray(value)) return value.map((v) => decoderValue(key, v)).join(", ");
    if (typeof value === "object") {
      const entries = Object.entries(value);
      return entries.length ? entries.map(([k, v]) => k + ": " + decoderValue(k, v)).join(", ") : "none";
    }
    if (typeof value === "number") return /bytes|_limit$/.test(key) ? o.bytes(value) : o.number(value);
    return String(value);
  }

  function showDecoder(status) {
    const decoder = (status.daemon || {}).decoder || {};
    o.fill("decoder", Object.entries(decoder).map(([key, value]) =>
      o.el("div", {}, o.el("dt", { text: key.replace(/_/g, " ") }), o.el("dd", { text: decoderValue(key, value) }))));
  }

  function chartData(history) {
    const series = history.series || {};
    const total = (name) => (series[name] || []);
    const rejected = history.time.map((_, i) =>
      SIGNALS.reduce((sum, signal) => sum + (total(signal + ".rejected_items")[i] || 0), 0));
    return [history.time,
      ...SIGNALS.flatMap((signal) => [total(signal + ".received_items"), total(signal + ".written_items")]),
      rejected];
  }

  function showChart(history) {
    const data = chartData(history);
    if (plot) {
      o.setChartData(plot, data);
      return;
    }
    const series = [{ label: "time", value: (u, v) => (v === null || v === undefined ? "—" : o.time(v).slice(11, 19)) }];
    for (const signal of SIGNALS) {
      series.push({ label: signal + " received", stroke: o.COLORS[signal], width: 2, value: (u, v) => o.rate(v) });
      series.push({ label: signal + " written", stroke: o.COLORS[signal], width: 1.5, dash: [6, 4],
        value: (u, v) => o.rate(v) });
    }
    series.push({ label: "rejected", stroke: o.COLORS.rejected, width: 2, value: (u, v) => o.rate(v) });
    for (const item of series.slice(1)) item.points = { show: false };
    plot = o.chart("overview", container, {
      height: 240,
      series,
      scales: { y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
      axes: [{}, { size: 60, values: (u, values) => values.map(o.tick) }],
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
    }, data);
  }

  async function refresh() {
    const [status, history] = await Promise.all([
      o.api("/api/v1/status"),
      o.api("/api/v1/history", { query: { seconds: chartSeconds } }),
    ]);
    if (!status.ok) {
      o.live(false, status.error);
      const banner = document.getElementById("health");
      banner.className = "banner banner-degraded";
      o.text("health-status", "The dashboard API does not answer");
      o.text("health-ready", status.error);
      return;
    }
    showHealth(status.body);
    showFacts(status.body);
    showSignals(status.body, history.ok ? history.body : null);
    showDecoder(status.body);
    if (history.ok) showChart(history.body);
    o.live(true);
  }

  o.poll(refresh, INTERVAL);
})();
