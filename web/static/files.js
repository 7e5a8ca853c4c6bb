/* Files and rotation: /api/v1/rotation every 3 s; "Rotate now" POSTs to it. */
(function () {
  "use strict";
  const o = window.otlpd;
  const INTERVAL = 3000;
  const message = document.getElementById("rotate-message");
  const tokenInput = document.getElementById("admin-token");
  let poller = null;

  function emptyRow(columns, label) {
    return o.el("tr", {}, o.el("td", { colspan: columns, class: "muted", text: label }));
  }

  function fileCell(name, path) {
    return o.el("td", { class: "mono file-name", title: path || null, text: name });
  }

  function inProgressRows(files) {
    if (!files.length) return [emptyRow(6, "No file in progress: nothing was received since the last rotation.")];
    return files.map((file) => o.el("tr", {},
      fileCell(file.name),
      o.el("td", { class: "num", text: o.bytes(file.bytes) }),
      o.el("td", { class: "num", text: o.number(file.rows) }),
      o.el("td", { class: "num", text: o.seconds(file.age_seconds) }),
      o.el("td", { class: "num", text: o.seconds(file.seconds_until_rotation) }),
      o.el("td", { class: "num", text: o.bytes(file.bytes_until_rotation) })));
  }

  function recentRows(files) {
    if (!files.length) return [emptyRow(6, "No completed file yet.")];
    return files.map((file) => o.el("tr", {},
      fileCell(file.name, file.path),
      o.el("td", { class: "num", text: o.bytes(file.bytes) }),
      o.el("td", { class: "num", text: o.number(file.rows) }),
      o.el("td", { text: o.time(file.min_time) }),
      o.el("td", { text: o.time(file.max_time) }),
      o.el("td", { text: o.time(file.modified) })));
  }

  function describeDisk(disk) {
    if (!disk) return "—";
    const known = ["completed_files", "completed_bytes", "in_progress_bytes"];
    const parts = [];
    if (disk.completed_files !== undefined || disk.completed_bytes !== undefined) {
      parts.push(o.number(disk.completed_files) + (disk.completed_files === 1 ? " completed file, " : " completed files, ") +
        o.bytes(disk.completed_bytes));
    }
    if (disk.in_progress_bytes !== undefined) parts.push(o.bytes(disk.in_progress_bytes) + " in progress");
    for (const [key, value] of Object.entries(disk)) {
      if (!known.includes(key)) parts.push(key.replace(/_/g, " ") + ": " + (/bytes/.test(key) ? o.bytes(value) : o.number(value)));
    }
    return parts.length ? parts.join("; ") : "—";
  }

  function describeRetention(retention) {
    const rules = [];
    if (retention.max_age_seconds > 0) rules.push("files older than " + o.seconds(retention.max_age_seconds));
    if (retention.max_total_bytes > 0) rules.push("the oldest files beyond " + o.bytes(retention.max_total_bytes));
    if (!rules.length) return "off: completed files are kept until you delete them";
    return "deletes " + rules.join(" and ") + " (checked every " + o.seconds(retention.check_interval_seconds) +
      " and after each rotation)";
  }

  async function refresh() {
    const result = await o.api("/api/v1/rotation", { query: { limit: 10 } });
    if (!result.ok) {
      o.live(false, result.error);
      return;
    }
    const body = result.body;
    o.text("max-file-bytes", o.bytes(body.max_file_bytes));
    o.text("max-file-age", o.seconds(body.max_file_age_seconds));
    for (const [signal, files] of Object.entries(body.signals || {})) {
      o.fill(signal + "-in-progress", inProgressRows(files.in_progress || []));
      o.fill(signal + "-recent", recentRows(files.recent || []));
      o.text(signal + "-disk", describeDisk(files.disk));
      o.text(signal + "-rotated", o.number(files.files_rotated));
      o.text(signal + "-retention", describeRetention(files.retention || {}));
      o.text(signal + "-deleted", o.number((files.retention || {}).deleted_files) + " files, " +
        o.bytes((files.retention || {}).deleted_bytes));
    }
    o.live(true);
  }

  function say(kind, text) {
    message.className = "message message-" + kind;
    message.textContent = text;
  }

  function baseName(path) {
    return String(path).split(/[\\/]/).pop();
  }

  async function rotate(signal, buttons) {
    if (tokenInput && tokenInput.value) o.setToken(tokenInput.value);
    buttons.forEach((button) => { button.disabled = true; });
    say("info", "Rotating " + (signal || "every signal") + "…");
    const result = await o.api("/api/v1/rotation", {
      method: "POST",
      headers: o.authHeaders(),
      json: signal ? { signal } : {},
    });
    buttons.forEach((button) => { button.disabled = false; });
    if (!result.ok) {
      let text = "Rotation failed: " + result.error;
      if (result.status === 401) text += tokenInput ? " — enter the admin token above." : "";
      say("error", text);
      return;
    }
    const completed = Object.values(result.body.completed || {}).flat().map(baseName);
    say("ok", completed.length ? "Completed " + completed.join(", ")
      : "Nothing to complete: no rows were waiting in a file in progress.");
    if (poller) await poller.now();
  }

  const buttons = Array.from(document.querySelectorAll("button.rotate"));
  buttons.forEach((button) => {
    button.addEventListener("click", () => rotate(button.dataset.signal || null, buttons));
  });

  const form = document.getElementById("token-form");
  if (form) {
    tokenInput.value = o.token();
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      o.setToken(tokenInput.value.trim());
      say("info", tokenInput.value ? "Token kept for this tab." : "Token forgotten.");
    });
    document.getElementById("token-forget").addEventListener("click", () => {
      tokenInput.value = "";
      o.setToken("");
      say("info", "Token forgotten.");
    });
  }

  poller = o.poll(refresh, INTERVAL);
})();
