/* Metric temporality: /api/v1/temporality every 3 s; the form PUTs to it, "Back" DELETEs. */
(function () {
  "use strict";
  const o = window.otlpd;
  const INTERVAL = 3000;
  const form = document.getElementById("temporality-form");
  const message = document.getElementById("temporality-message");
  const tokenInput = document.getElementById("admin-token");
  let chosen = false; // the user picked a value: polling no longer moves the radio buttons

  function say(kind, text) {
    message.className = "message message-" + kind;
    message.textContent = text;
  }

  function show(state) {
    o.text("t-current", state.temporality);
    o.text("t-configured", state.configured);
    o.text("t-source", state.source === "api" ? "set here or over the REST API" : "the configuration");
    o.text("t-changed", state.changed_at ? new Date(state.changed_at * 1000).toISOString() : "never");
    o.text("t-streams", o.number(state.streams));
    o.text("t-converted", o.number(state.converted_points));
    o.text("t-passed", o.number(state.passed_through_points));
    o.text("t-over", o.number(state.streams_over_limit));
    const dropped = Object.entries(state.dropped_points || {});
    o.text("t-dropped", dropped.length ? dropped.map(([reason, n]) => reason + " " + o.number(n)).join(", ") : "none");
    if (!chosen) {
      for (const input of form.querySelectorAll("input[name=temporality]")) input.checked = input.value === state.temporality;
    }
  }

  async function refresh() {
    const result = await o.api("/api/v1/temporality");
    if (!result.ok) {
      o.live(false, result.error);
      return;
    }
    show(result.body);
    o.live(true);
  }

  async function change(method, json) {
    if (tokenInput && tokenInput.value) o.setToken(tokenInput.value);
    const result = await o.api("/api/v1/temporality", { method, headers: o.authHeaders(), json });
    if (!result.ok) {
      let text = "Not changed: " + result.error;
      if (result.status === 401) text += tokenInput ? " — enter the admin token." : "";
      say("error", text);
      return;
    }
    chosen = false;
    show(result.body);
    say("ok", "Metrics received from now on are stored as " + result.body.temporality + ".");
  }

  form.addEventListener("change", () => { chosen = true; });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const picked = form.querySelector("input[name=temporality]:checked");
    if (!picked) { say("error", "Choose a temporality first."); return; }
    change("PUT", { temporality: picked.value });
  });
  document.getElementById("temporality-reset").addEventListener("click", () => change("DELETE"));
  if (tokenInput) tokenInput.value = o.token();
  o.poll(refresh, INTERVAL);
})();
