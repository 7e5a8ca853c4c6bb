/* otlpd dashboard: helpers shared by every page (window.otlpd).
 *
 * Values from telemetry (span, service, metric and file names, log bodies...) are only ever
 * put into the page as text: el() and text() use textContent and setAttribute, never
 * innerHTML. The Content-Security-Policy forbids inline scripts and style attributes, so
 * positions and sizes are set through element.style (CSSOM), which it allows.
 */
(function () {
  "use strict";

  const body = document.body;
  const root = (body && body.dataset.root) || "";
  const TOKEN_KEY = "otlpd.admin_token";

  /** root + path + "?" + query (null, undefined and "" values are left out). */
  function url(path, query) {
    let result = root + path;
    if (query) {
      const params = new URLSearchParams();
      for (const [key, value] of Object.entries(query)) {
        if (value !== null && value !== undefined && value !== "") params.set(key, String(value));
      }
      const text = params.toString();
      if (text) result += "?" + text;
    }
    return result;
  }

  /** The link of a trace page, the id URL-encoded. */
  function traceUrl(traceId) {
    return root + "/traces/" + encodeURIComponent(traceId);
  }

  /** fetch() a JSON API (path below the root, options.query its parameters, options.json
   * a body to POST): resolves to {ok, status, body, error}; never rejects. */
  async function api(path, options) {
    const init = Object.assign({ headers: {}, credentials: "same-origin", cache: "no-store" }, options || {});
    const query = init.query;
    delete init.query;
    init.headers = Object.assign({ Accept: "application/json" }, init.headers);
    if (init.json !== undefined) {
      init.method = init.method || "POST";
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(init.json);
      delete init.json;
    }
    let response;
    try {
      response = await fetch(url(path, query), init);
    } catch (error) {
      return { ok: false, status: 0, body: null, error: "cannot reach the dashboard (" + error.message + ")" };
    }
    let data = null;
    try {
      data = await response.json();
    } catch (error) {
      data = null;
    }
    let message = null;
    if (!response.ok) {
      message = data && typeof data.error === "string" ? data.error
        : "HTTP " + response.status + " " + response.statusText;
    }
    return { ok: response.ok, status: response.status, body: data, error: message };
  }

  /** A new element: el("a", {href: u, class: "x", text: "label"}, child, "text", ...). */
  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = String(value);
      else if (key === "class") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  /** Replace the children of node (an element or its id) with children. */
  function fill(node, ...children) {
    const target = typeof node === "string" ? document.getElementById(node) : node;
    if (!target) return null;
    target.replaceChildren();
    return append(target, children);
  }

  /** Set the text of the element with this id (a missing element is ignored). */
  function text(id, value) {
    const node = document.getElementById(id);
    if (node) node.textContent = value === null || value === undefined ? "—" : String(value);
    return node;
  }

  // -- formatting ------------------------------------------------------------------------

  const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
  const decimal = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });

  function number(value) {
    if (value === null || value === undefined || Number.isNaN(value)) return "—";
    return integer.format(value);
  }

  /** An axis tick: "0", "0.5", "12", "1,200", "1.5M". */
  function tick(value) {
    if (value === null || value === undefined) return "";
    const size = Math.abs(value);
    if (size >= 1e6) return decimal.format(value / 1e6) + "M";
    if (size >= 1000) return integer.format(value);
    return String(Math.round(value * 100) / 100);
  }

  function rate(value) {
    if (value === null || value === undefined || Number.isNaN(value)) return "—";
    return (value >= 100 ? integer.format(value) : decimal.format(value)) + "/s";
  }

  function bytes(value) {
    if (value === null || value === undefined || Number.isNaN(value)) return "—";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let amount = value;
    let unit = 0;
    while (Math.abs(amount) >= 1024 && unit < units.length - 1) {
      amount /= 1024;
      unit += 1;
    }
    return (unit === 0 ? integer.format(amount) : decimal.format(amount)) + " " + units[unit];
  }

  /** Seconds as "3 s", "4 min 05 s", "2 h 03 min", "1 d 4 h". */
  function seconds(value) {
    if (value === null || value === undefined || Number.isNaN(value)) return "—";
    const total = Math.max(0, Math.floor(value));
    const d = Math.floor(total / 86400);
    const h = Math.floor((total % 86400) / 3600);
    const m = Math.floor((total % 3600) / 60);
    const s = total % 60;
    const pad = (n) => String(n).padStart(2, "0");
    if (d) return d + " d " + h + " h";
    if (h) return h + " h " + pad(m) + " min";
    if (m) return m + " min " + pad(s) + " s";
    if (value < 10 && value > 0 && value !== total) return decimal.format(value) + " s";
    return s + " s";
  }

  /** Milliseconds as "0.42 ms", "12.3 ms", "1.25 s". */
  function millis(value) {
    if (value === null || value === undefined || Number.isNaN(value)) return "—";
    if (value >= 1000) return (value / 1000).toFixed(2) + " s";
    if (value >= 10) return value.toFixed(1) + " ms";
    return value.toFixed(2) + " ms";
  }

  /** An ISO time (or Unix seconds) as local "YYYY-MM-DD HH:MM:SS.mmm". */
  function time(value) {
    if (value === null || value === undefined || value === "") return "—";
    const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
    if (Number.isNaN(date.getTime())) return String(value);
    const pad = (n, width) => String(n).padStart(width || 2, "0");
    return date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate()) + " " +
      pad(date.getHours()) + ":" + pad(date.getMinutes()) + ":" + pad(date.getSeconds()) + "." +
      pad(date.getMilliseconds(), 3);
  }

  const STATUS = { 0: "unset", 1: "ok", 2: "error" };
  const KIND = { 0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer" };

  /** A span status code as a small badge. */
  function statusBadge(code, message) {
    const label = STATUS[code] !== undefined ? STATUS[code] : (code === null || code === undefined ? "—" : String(code));
    return el("span", { class: "badge status-" + label, text: label, title: message || null });
  }

  function kind(code) {
    return KIND[code] !== undefined ? KIND[code] : (code === null || code === undefined ? "—" : String(code));
  }

  /** "Read 3 files, 1,204 rows (truncated: ...)" for the API's scanned object. */
  function scanned(value) {
    if (!value) return "";
    let result = "Read " + number(value.files) + (value.files === 1 ? " completed file, " : " completed files, ") +
      number(value.rows) + (value.rows === 1 ? " row" : " rows");
    if (value.truncated) result += " (truncated: the scan limit was reached, older data is left out)";
    return result;
  }

  // -- polling and the status line -------------------------------------------------------

  function live(ok, message) {
    const node = document.getElementById("live");
    if (!node) return;
    node.classList.toggle("live-error", !ok);
    node.textContent = ok ? "updated " + new Date().toLocaleTimeString("en-GB") : message;
  }

  /** Call task() now and every interval ms after it finished, skipped while the tab is
   * hidden. Returns {now()}: run it at once (after the run in progress), a promise. */
  function poll(task, interval) {
    let timer = null;
    let current = null;

    async function guarded() {
      try {
        await task();
      } catch (error) {
        live(false, "error: " + error.message);
        console.warn("otlpd:", error);
      }
    }

    function run() {
      if (timer !== null) clearTimeout(timer);
      timer = null;
      if (current) return current.then(run);
      current = (document.hidden ? Promise.resolve() : guarded()).then(() => {
        current = null;
        if (timer === null) timer = setTimeout(run, interval);
      });
      return current;
    }

    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && !current) run();
    });
    run();
    return { now: run };
  }

  // -- the admin token (sessionStorage: gone when the tab closes) -------------------------

  function token() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || "";
    } catch (error) {
      return "";
    }
  }

  function setToken(value) {
    try {
      if (value) sessionStorage.setItem(TOKEN_KEY, value);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (error) {
      /* storage disabled: the token is sent only while typed in */
    }
  }

  /** Headers for a mutating call: Authorization when a token is set. */
  function authHeaders() {
    const value = token();
    return value ? { Authorization: "Bearer " + value } : {};
  }

  // -- charts (uPlot) --------------------------------------------------------------------

  /** Registry of the page's uPlot instances (read by the browser tests). */
  window.otlpdCharts = window.otlpdCharts || {};

  /** A uPlot chart filling container's width, resized with it. */
  function chart(name, container, options, data) {
    if (typeof window.uPlot !== "function") {
      fill(container, el("p", { class: "muted", text: "The chart library did not load." }));
      return null;
    }
    const width = () => Math.max(320, container.clientWidth);
    const plot = new window.uPlot(Object.assign({ width: width(), height: 260 }, options), data, container);
    window.otlpdCharts[name] = plot;
    showLatest(plot);
    plot.over.addEventListener("mouseleave", () => setTimeout(() => showLatest(plot), 0));
    if (typeof ResizeObserver === "function") {
      let last = width();
      new ResizeObserver(() => {
        const now = width();
        if (now !== last) {
          last = now;
          plot.setSize({ width: now, height: plot.height });
        }
      }).observe(container);
    }
    return plot;
  }

  /** New data for a chart; while the pointer is not over it the legend shows the newest values. */
  function setChartData(plot, data) {
    plot.setData(data);
    showLatest(plot);
  }

  function showLatest(plot) {
    const count = plot.data[0].length;
    const idle = plot.cursor.left === undefined || plot.cursor.left === null || plot.cursor.left < 0;
    if (count > 0 && idle) plot.setLegend({ idx: count - 1 });
  }

  const COLORS = {
    traces: "#2563eb",
    metrics: "#059669",
    logs: "#d97706",
    rejected: "#dc2626",
    palette: ["#2563eb", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2", "#65a30d", "#9333ea"],
  };

  window.otlpd = {
    root, url, traceUrl, api, el, append, fill, text,
    number, tick, rate, bytes, seconds, millis, time, statusBadge, kind, scanned,
    live, poll, token, setToken, authHeaders, chart, setChartData, COLORS,
  };
})();
