/* Trace: /api/v1/traces/<id> as a waterfall. Rows come in the API's order (parents before
 * their children), indented by depth; bars are placed with CSSOM styles (left/width in %). */
(function () {
  "use strict";
  const o = window.otlpd;
  const traceId = document.getElementById("trace-id").dataset.traceId;
  const waterfall = document.getElementById("waterfall");
  const messageBox = document.getElementById("trace-message");
  const INDENT_REM = 1.1;

  function say(kind, text, ...extra) {
    messageBox.className = "message message-" + kind;
    o.fill(messageBox, text, ...extra);
    messageBox.hidden = false;
  }

  function traceDuration(trace) {
    let end = 0;
    for (const span of trace.spans) end = Math.max(end, (span.offset_ms || 0) + (span.duration_ms || 0));
    return Math.max(trace.duration_ms || 0, end);
  }

  function header(total) {
    const ticks = [0, 0.25, 0.5, 0.75, 1].map((fraction) => {
      const tick = o.el("span", { class: "wf-tick", text: o.millis(total * fraction) });
      tick.style.left = (fraction * 100) + "%";
      return tick;
    });
    return o.el("div", { class: "wf-row wf-header", role: "row" },
      o.el("div", { class: "wf-cell wf-name", role: "columnheader", text: "Span" }),
      o.el("div", { class: "wf-cell", role: "columnheader", text: "Service" }),
      o.el("div", { class: "wf-cell num", role: "columnheader", text: "Duration" }),
      o.el("div", { class: "wf-cell", role: "columnheader", text: "Status" }),
      o.el("div", { class: "wf-cell wf-timeline wf-ticks", role: "columnheader", "aria-label": "timeline" }, ticks));
  }

  function details(span, known) {
    const parent = span.parent_span_id
      ? span.parent_span_id + (known.has(span.parent_span_id) ? "" : " (not stored)") : "none (root span)";
    const entries = [
      ["span id", span.span_id], ["parent span id", parent], ["kind", o.kind(span.kind)],
      ["start", o.time(span.start_time)], ["offset", o.millis(span.offset_ms)],
      ["status message", span.status_message || "—"],
    ];
    const box = o.el("dl", { class: "wf-details kv kv-inline" },
      entries.map(([key, value]) => o.el("div", {}, o.el("dt", { text: key }), o.el("dd", { class: "mono", text: value }))));
    box.hidden = true;
    return box;
  }

  function row(span, total, known) {
    const depth = Math.max(0, span.depth || 0);
    const label = o.el("span", { class: "wf-label", text: span.name || "(no name)" });
    const name = o.el("div", { class: "wf-cell wf-name", role: "cell", title: span.name || null }, label);
    name.style.paddingLeft = (0.5 + depth * INDENT_REM) + "rem";

    const bar = o.el("div", { class: "wf-bar" + (span.status_code === 2 ? " wf-bar-error" : "") });
    const offset = total > 0 ? Math.min(100, Math.max(0, 100 * (span.offset_ms || 0) / total)) : 0;
    const width = total > 0 ? Math.max(0.3, 100 * (span.duration_ms || 0) / total) : 100;
    bar.style.left = offset + "%";
    bar.style.width = Math.min(width, 100 - offset) + "%";
    bar.title = o.millis(span.duration_ms) + " at +" + o.millis(span.offset_ms);

    const line = o.el("div", {
      class: "wf-row", role: "row", tabindex: "0", "aria-expanded": "false",
      dataset: { depth: String(depth), spanId: span.span_id },
    },
    name,
    o.el("div", { class: "wf-cell", role: "cell", text: span.service === null || span.service === undefined ? "—" : span.service }),
    o.el("div", { class: "wf-cell num", role: "cell", text: o.millis(span.duration_ms) }),
    o.el("div", { class: "wf-cell", role: "cell" }, o.statusBadge(span.status_code, span.status_message)),
    o.el("div", { class: "wf-cell wf-timeline", role: "cell" }, bar));

    const more = details(span, known);
    const toggle = () => {
      more.hidden = !more.hidden;
      line.setAttribute("aria-expanded", String(!more.hidden));
    };
    line.addEventListener("click", toggle);
    line.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        toggle();
      }
    });
    return [line, more];
  }

  async function load() {
    const result = await o.api("/api/v1/traces/" + encodeURIComponent(traceId));
    if (result.status === 404) {
      waterfall.replaceChildren();
      say("error", o.el("strong", { text: "Trace not found." }), " ",
        o.el("span", { class: "detail", text: result.error ? "The API says: " + result.error + "." : "" }),
        o.el("br"), "Only completed files are read: if the trace was sent just now, ",
        o.el("a", { href: o.url("/files"), text: "rotate its file" }), " and reload this page.");
      o.live(true);
      return;
    }
    if (!result.ok) {
      say("error", "Cannot read the trace: " + result.error);
      o.live(false, result.error);
      return;
    }
    const trace = result.body;
    const spans = trace.spans || [];
    const total = traceDuration(trace);
    const known = new Set(spans.map((span) => span.span_id));
    const services = Array.from(new Set(spans.map((span) => span.service).filter((s) => s !== null && s !== undefined)));
    o.text("trace-start", o.time(trace.start_time));
    o.text("trace-duration", o.millis(total));
    o.text("trace-spans", o.number(spans.length));
    o.text("trace-services", services.length ? services.join(", ") : "—");
    o.text("trace-scanned", o.scanned(trace.scanned));
    messageBox.hidden = true;
    o.fill(waterfall, header(total), spans.map((span) => row(span, total, known)));
    o.live(true);
  }

  load();
})();
