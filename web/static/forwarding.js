/* Forwarding: /api/v1/forwarding every 2 s, into the forwarding page or the overview's panel
 * (whichever elements are on the page; values only ever as text). */
(function () {
  "use strict";
  const o = window.otlpd;
  const INTERVAL = 2000;
  const SIGNALS = ["traces", "metrics", "logs"];
  const STATE_CLASS = { forwarding: "status-ok", "waiting for the remote": "sev-warn", stopped: "status-error" };

  function byCode(counts) {
    const entries = Object.entries(counts || {});
    return entries.length ? entries.map(([code, n]) => code + " " + o.number(n)).join(", ") : "none";
  }

  function show(body) {
    const panel = document.getElementById("fw-panel"); // the overview's: shown only when forwarding is on
    if (panel) panel.hidden = !body.enabled;
    const off = document.getElementById("fw-off");
    const on = document.getElementById("fw-on");
    if (off) off.hidden = body.enabled;
    if (on) on.hidden = !body.enabled;
    const badge = document.getElementById("fw-state");
    if (badge) {
      badge.textContent = body.enabled ? body.state : "off";
      badge.className = "badge " + (STATE_CLASS[body.state] || "");
    }
    const reason = document.getElementById("fw-reason");
    if (reason) {
      reason.hidden = !body.stopped_reason;
      reason.textContent = body.stopped_reason || "";
    }
    if (!body.enabled) return;
    const remote = body.remote;
    o.text("fw-endpoint", remote.endpoint);
    o.text("fw-transport", remote.insecure ? "plain text" : (remote.mutual_tls ? "mutual TLS" : "TLS"));
    o.text("fw-compression", remote.compression);
    o.text("fw-timeout", o.seconds(remote.timeout_seconds));
    o.text("fw-auth", remote.auth);
    o.text("fw-headers", remote.header_names.length ? remote.header_names.join(", ") : "none");
    const breaker = body.breaker;
    o.text("fw-breaker", breaker.state.replace("_", "-"));
    o.text("fw-open-timeout", o.seconds(breaker.open_timeout));
    o.text("fw-retry-after", breaker.state === "open" ? o.seconds(breaker.retry_after) : "—");
    o.text("fw-opened", o.number(breaker.counters.opened) + " times");
    const transitions = document.querySelector("#fw-transitions tbody");
    if (transitions && breaker.transitions.length) {
      o.fill(transitions, breaker.transitions.slice().reverse().map((t) => o.el("tr", {},
        o.el("td", { text: o.time(t.at) }), o.el("td", { text: t.from }), o.el("td", { text: t.to }),
        o.el("td", { text: t.reason }))));
    }
    const errors = [];
    for (const signal of SIGNALS) {
      const part = body.signals[signal];
      if (!part) continue;
      const backlog = part.backlog;
      o.text("fw-" + signal + "-backlog-short", o.number(backlog.records) + " records, lag " + o.seconds(backlog.lag_seconds));
      o.text("fw-" + signal + "-backlog", o.number(backlog.records));
      o.text("fw-" + signal + "-backlog-bytes", o.bytes(backlog.bytes));
      o.text("fw-" + signal + "-backlog-files", o.number(backlog.files));
      o.text("fw-" + signal + "-lag", o.seconds(backlog.lag_seconds));
      o.text("fw-" + signal + "-rate", o.rate(part.send_rate_records_per_second));
      o.text("fw-" + signal + "-sent", o.number(part.sent_records));
      o.text("fw-" + signal + "-retries", o.number(part.retries));
      o.text("fw-" + signal + "-skipped", byCode(part.skipped_by_code));
      o.text("fw-" + signal + "-dropped", o.number(part.dropped_by_retention));
      o.text("fw-" + signal + "-partial", o.number(part.partial_success.rejected));
      o.text("fw-" + signal + "-duplicates", o.number(part.duplicates_suspected.records));
      if (part.last_error) errors.push(o.el("li", {}, o.el("strong", { text: signal + " " + part.last_error.code }),
        " " + part.last_error.message + " (" + o.time(part.last_error.at) + ")"));
    }
    const list = document.getElementById("fw-errors");
    if (list && errors.length) o.fill(list, errors);
  }

  async function refresh() {
    const result = await o.api("/api/v1/forwarding");
    if (result.ok) show(result.body);
    if (document.body.dataset.page === "forwarding") o.live(result.ok, result.error);
  }

  refresh();
  setInterval(refresh, INTERVAL);
})();
