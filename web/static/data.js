/* Data: spans, log records and metric points read from completed files through /api/v1/. */
(function () {
  "use strict";
  const o = window.otlpd;
  const REFRESH = 15000; // the stored data changes only when a file is completed
  const MAX_SERIES = 8; // metric series drawn (one per attribute set)

  const serviceSelect = document.getElementById("span-service");
  const nameInput = document.getElementById("span-name");
  const limitSelect = document.getElementById("span-limit");
  const severitySelect = document.getElementById("severity-min");
  const metricSelect = document.getElementById("metric-name");
  const chartContainer = document.getElementById("metric-chart");
  let metricPlot = null;
  let metricSeriesKey = null;

  // Filters come from the address (so a filtered view can be linked) and go back to it.
  const initial = new URLSearchParams(window.location.search);
  nameInput.value = initial.get("name") || "";
  if (initial.get("limit")) limitSelect.value = initial.get("limit");
  if (initial.get("severity_min")) severitySelect.value = initial.get("severity_min");
  let wantedService = initial.get("service") || "";
  let wantedMetric = initial.get("metric") || "";

  function remember() {
    const params = new URLSearchParams();
    if (serviceSelect.value) params.set("service", serviceSelect.value);
    if (nameInput.value) params.set("name", nameInput.value);
    if (limitSelect.value !== "100") params.set("limit", limitSelect.value);
    if (severitySelect.value !== "0") params.set("severity_min", severitySelect.value);
    if (metricSelect.value) params.set("metric", metricSelect.value);
    const query = params.toString();
    window.history.replaceState(null, "", window.location.pathname + (query ? "?" + query : ""));
  }

  function message(tbody, columns, text, kind) {
    o.fill(tbody, o.el("tr", {}, o.el("td", { colspan: columns, class: kind || "muted", text })));
  }

  function shortId(id) {
    return id && id.length > 16 ? id.slice(0, 16) + "…" : id || "—";
  }

  function traceLink(traceId, label, className) {
    if (!traceId) return o.el("span", { class: "muted", text: "—" });
    return o.el("a", { href: o.traceUrl(traceId), class: className || null, title: traceId, text: label });
  }

  // -- spans -----------------------------------------------------------------------------

  async function loadServices() {
    const result = await o.api("/api/v1/services");
    if (!result.ok) return;
    const chosen = serviceSelect.value || wantedService;
    const services = result.body.services || [];
    const options = [o.el("option", { value: "", text: "all services" })];
    for (const service of services) options.push(o.el("option", { value: service, text: service }));
    if (chosen && !services.includes(chosen)) options.push(o.el("option", { value: chosen, text: chosen }));
    o.fill(serviceSelect, options);
    serviceSelect.value = chosen;
    wantedService = "";
  }

  async function loadSpans() {
    const tbody = document.getElementById("spans");
    const result = await o.api("/api/v1/spans", {
      query: { service: serviceSelect.value || wantedService, name: nameInput.value, limit: limitSelect.value },
    });
    if (!result.ok) {
      message(tbody, 6, "Cannot read spans: " + result.error, "error-text");
      return;
    }
    o.text("spans-scanned", o.scanned(result.body.scanned));
    const spans = result.body.spans || [];
    if (!spans.length) {
      message(tbody, 6, "No span in the completed files" +
        (serviceSelect.value || nameInput.value ? " matches these filters." : " yet."));
      return;
    }
    o.fill(tbody, spans.map((span) => o.el("tr", { dataset: { traceId: span.trace_id, spanId: span.span_id } },
      o.el("td", { class: "nowrap", text: o.time(span.start_time) }),
      o.el("td", { text: span.service === null || span.service === undefined ? "—" : span.service }),
      o.el("td", { class: "span-name" }, traceLink(span.trace_id, span.name || "(no name)")),
      o.el("td", { class: "num nowrap", text: o.millis(span.duration_ms) }),
      o.el("td", {}, o.statusBadge(span.status_code, span.status_message)),
      o.el("td", { class: "mono" }, traceLink(span.trace_id, shortId(span.trace_id))))));
  }

  // -- logs ------------------------------------------------------------------------------

  function severityClass(number) {
    if (!number) return "sev-unset";
    if (number >= 17) return "sev-error";
    if (number >= 13) return "sev-warn";
    if (number >= 9) return "sev-info";
    return "sev-debug";
  }

  async function loadLogs() {
    const tbody = document.getElementById("logs");
    const result = await o.api("/api/v1/logs", { query: { severity_min: severitySelect.value, limit: 100 } });
    if (!result.ok) {
      message(tbody, 5, "Cannot read log records: " + result.error, "error-text");
      return;
    }
    o.text("logs-scanned", o.scanned(result.body.scanned));
    const logs = result.body.logs || [];
    if (!logs.length) {
      message(tbody, 5, "No log record in the completed files" +
        (severitySelect.value !== "0" ? " at this severity or above." : " yet."));
      return;
    }
    o.fill(tbody, logs.map((record) => {
      const severity = record.severity_text || (record.severity_number ? String(record.severity_number) : "—");
      return o.el("tr", {},
        o.el("td", { class: "nowrap", text: o.time(record.time) }),
        o.el("td", { text: record.service === null || record.service === undefined ? "—" : record.service }),
        o.el("td", {}, o.el("span", {
          class: "badge " + severityClass(record.severity_number), text: severity,
          title: record.severity_number === null ? null : "severity_number " + record.severity_number,
        })),
        o.el("td", { class: "log-body", text: record.body === null || record.body === undefined ? "" : record.body }),
        o.el("td", { class: "mono" }, traceLink(record.trace_id, shortId(record.trace_id))));
    }));
  }

  // -- metrics ---------------------------------------------------------------------------

  async function loadMetricNames() {
    const result = await o.api("/api/v1/metrics");
    if (!result.ok) {
      o.fill(metricSelect, o.el("option", { value: "", text: "cannot read metrics" }));
      o.text("metric-message", result.error);
      return;
    }
    o.text("metrics-scanned", o.scanned(result.body.scanned));
    const metrics = (result.body.metrics || []).filter((metric) => metric.name);
    const chosen = metricSelect.value || wantedMetric;
    wantedMetric = "";
    if (!metrics.length) {
      o.fill(metricSelect, o.el("option", { value: "", text: "no metric stored yet" }));
      o.text("metric-message", "No metric data point in the completed files yet.");
      return;
    }
    o.fill(metricSelect, metrics.map((metric) => o.el("option", {
      value: metric.name,
      text: metric.name + " (" + (metric.type || "?") + ", " + o.number(metric.points) + " points)",
      title: metric.description || null,
    })));
    metricSelect.value = metrics.some((metric) => metric.name === chosen) ? chosen : metrics[0].name;
    await loadMetric();
  }

  function attributesLabel(point) {
    const entries = Object.entries(point.attributes || {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const parts = entries.map(([key, value]) => key + "=" + (typeof value === "object" ? JSON.stringify(value) : value));
    if (point.service) parts.unshift("service=" + point.service);
    return parts.length ? parts.join(", ") : "(no attributes)";
  }

  /** uPlot's columns: one x (seconds) shared by every attribute set, null where a set has no point. */
  function metricData(points) {
    const groups = new Map();
    for (const point of points) {
      if (point.value === null || point.value === undefined || point.time_unix_nano === null) continue;
      const label = attributesLabel(point);
      if (!groups.has(label)) {
        if (groups.size >= MAX_SERIES) continue;
        groups.set(label, new Map());
      }
      groups.get(label).set(point.time_unix_nano / 1e9, point.value);
    }
    const xs = Array.from(new Set([].concat(...Array.from(groups.values(), (g) => Array.from(g.keys())))))
      .sort((a, b) => a - b);
    const labels = Array.from(groups.keys());
    const columns = labels.map((label) => xs.map((x) => (groups.get(label).has(x) ? groups.get(label).get(x) : null)));
    return { labels, data: [xs, ...columns] };
  }

  async function loadMetric() {
    const name = metricSelect.value;
    remember();
    if (!name) return;
    const result = await o.api("/api/v1/metrics/" + encodeURIComponent(name), { query: { limit: 5000 } });
    if (!result.ok) {
      o.text("metric-message", "Cannot read " + name + ": " + result.error);
      return;
    }
    const body = result.body;
    const { labels, data } = metricData(body.points || []);
    o.text("metric-info", [body.type, body.unit ? "unit " + body.unit : null,
      o.number((body.points || []).length) + " points"].filter(Boolean).join(" · "));
    o.text("metrics-scanned", o.scanned(body.scanned));
    o.text("metric-message", labels.length ? ""
      : "This metric has no plottable value (histograms and summaries are not drawn).");
    const key = name + "\u0000" + labels.join("\u0000");
    if (metricPlot && metricSeriesKey === key) {
      o.setChartData(metricPlot, data);
      return;
    }
    if (metricPlot) metricPlot.destroy();
    chartContainer.replaceChildren();
    metricSeriesKey = key;
    metricPlot = o.chart("metric", chartContainer, {
      height: 260,
      series: [{ label: "time", value: (u, v) => (v === null || v === undefined ? "—" : o.time(v)) }, ...labels.map((label, i) => ({
        label, stroke: o.COLORS.palette[i % o.COLORS.palette.length], width: 2, spanGaps: true,
        points: { show: data[0].length < 60 },
      }))],
      axes: [{}, { size: 70, values: (u, values) => values.map(o.tick) }],
      cursor: { drag: { x: true, y: false } },
    }, data);
  }

  // -- wiring ----------------------------------------------------------------------------

  async function refreshAll() {
    await Promise.all([loadServices().then(loadSpans), loadLogs(), loadMetricNames()]);
    o.live(true);
  }

  document.getElementById("spans-form").addEventListener("submit", (event) => {
    event.preventDefault();
    remember();
    loadSpans();
  });
  serviceSelect.addEventListener("change", () => { remember(); loadSpans(); });
  limitSelect.addEventListener("change", () => { remember(); loadSpans(); });
  document.getElementById("logs-form").addEventListener("submit", (event) => event.preventDefault());
  severitySelect.addEventListener("change", () => { remember(); loadLogs(); });
  document.getElementById("metrics-form").addEventListener("submit", (event) => event.preventDefault());
  metricSelect.addEventListener("change", loadMetric);

  const poller = o.poll(refreshAll, REFRESH);
  document.getElementById("refresh").addEventListener("click", () => poller.now());
})();
