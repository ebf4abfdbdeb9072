// Shared by every page: the token, API calls, small DOM helpers, the header, charts.
// The token lives in sessionStorage and goes in the Authorization header, never in a cookie.
"use strict";
const FG = {
  token() { return sessionStorage.getItem("flowguard-token"); },

  async api(method, path, body) {
    const headers = { Authorization: `Bearer ${FG.token() || ""}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 401) {
      location.href = `/ui/login?next=${encodeURIComponent(location.pathname + location.search)}`;
      throw new Error("signed out");
    }
    const type = response.headers.get("content-type") || "";
    const data = response.status === 204 ? null
      : type.includes("json") ? await response.json() : await response.text();
    if (!response.ok) {
      const error = new Error((data && data.error && data.error.message) || response.statusText);
      error.body = data && data.error;
      throw error;
    }
    return data;
  },

  el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined) {
        node.append(child instanceof Node ? child : document.createTextNode(String(child)));
      }
    }
    return node;
  },

  // replaceChildren that skips null/false and flattens arrays, like el() does.
  fill(node, ...children) {
    node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
    return node;
  },

  badge(text, kind) { return FG.el("span", { class: `badge ${kind || text}` }, text); },

  when(iso) { return iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "Z") : "—"; },

  toast(text) {
    const node = FG.el("div", { class: "toast", role: "status" }, text);
    document.body.append(node);
    setTimeout(() => node.remove(), 3000);
  },

  problemList(error) {
    const items = (error.body && error.body.problems) || [];
    return FG.el("ul", { class: "problems", "data-testid": "problems" },
      items.length ? items.map((p) => FG.el("li", {}, `${p.field}: ${p.reason}`))
        : [FG.el("li", {}, error.message)]);
  },

  sparkline(values) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    const max = Math.max(1, ...values);
    svg.setAttribute("class", "spark"); svg.setAttribute("width", "96"); svg.setAttribute("height", "20");
    values.forEach((v, i) => {
      const rect = document.createElementNS(ns, "rect");
      const h = Math.max(v ? 2 : 0, (v / max) * 20);
      rect.setAttribute("x", i * 4); rect.setAttribute("y", 20 - h);
      rect.setAttribute("width", 3); rect.setAttribute("height", h);
      svg.append(rect);
    });
    return svg;
  },

  // Stacked bars of executions per hour by outcome: rows are {hour, outcome, count}.
  chart(rows) {
    const ns = "http://www.w3.org/2000/svg";
    // Always the last 24 hours, oldest first, so one busy hour is one bar, not the whole chart.
    const now = Math.floor(Date.now() / 3600e3) * 3600e3;
    const hours = [...Array(24).keys()].map(
      (i) => new Date(now - (23 - i) * 3600e3).toISOString().replace(".000Z", "Z"));
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("class", "chart"); svg.setAttribute("width", "100%"); svg.setAttribute("height", "120");
    svg.setAttribute("viewBox", `0 0 ${Math.max(hours.length, 1) * 12} 100`);
    svg.setAttribute("preserveAspectRatio", "none");
    const totals = hours.map((h) => rows.filter((r) => r.hour === h).reduce((a, r) => a + r.count, 0));
    const max = Math.max(1, ...totals);
    hours.forEach((hour, i) => {
      let y = 100;
      for (const outcome of ["success", "failure", "skipped"]) {
        const row = rows.find((r) => r.hour === hour && r.outcome === outcome);
        if (!row) continue;
        const h = (row.count / max) * 100;
        y -= h;
        const rect = document.createElementNS(ns, "rect");
        rect.setAttribute("x", i * 12); rect.setAttribute("y", y);
        rect.setAttribute("width", 10); rect.setAttribute("height", h);
        rect.setAttribute("class", outcome);
        const title = document.createElementNS(ns, "title");
        title.textContent = `${hour}: ${row.count} ${outcome}`;
        rect.append(title);
        svg.append(rect);
      }
    });
    return svg;
  },

  async header() {
    if (!FG.token()) {
      location.href = `/ui/login?next=${encodeURIComponent(location.pathname)}`;
      return null;
    }
    const me = await FG.api("GET", "/api/me");
    const bar = FG.el("header", {},
      FG.el("a", { class: "brand", href: "/ui/" }, "flowguard"),
      FG.el("nav", {},
        FG.el("a", { href: "/ui/" }, "Workflows"),
        FG.el("a", { href: "/ui/fleet" }, "Fleet"),
        FG.el("a", { href: "/ui/groups" }, "Groups"),
        FG.el("a", { href: "/ui/remediate" }, "Remediate"),
        me.role !== "viewer" ? FG.el("a", { href: "/ui/new" }, "Create Workflow") : null,
        FG.el("a", { href: "/docs" }, "API")),
      FG.el("span", { class: "who", "data-testid": "who" }, `${me.name} (${me.role})`),
      FG.el("button", {
        class: "secondary",
        onclick: () => { sessionStorage.removeItem("flowguard-token"); location.href = "/ui/login"; },
      }, "Sign out"));
    document.body.prepend(bar);
    document.body.dataset.role = me.role;
    return me;
  },

  // Test Workflow: a dry run of what `workflow()` returns ({workflow_id} or a draft
  // {definition, workflow_id?}) over uploaded JSONL or a cluster's last hours. Nothing is retried.
  testPanel(workflow) {
    const results = FG.el("div", { "data-testid": "test-results" });
    const jsonl = FG.el("textarea", { rows: 6, placeholder: "JSON lines of Celery events",
      "data-testid": "test-events" });
    const file = FG.el("input", { type: "file", accept: ".jsonl,.json,.txt", onchange: async () => {
      jsonl.value = await file.files[0].text();
    } });
    const cluster = FG.el("input", { value: "default" });
    const hours = FG.el("input", { type: "number", value: "", placeholder: "hours", min: "0", step: "any" });
    const samples = FG.el("input", { type: "checkbox" });
    const run = async () => {
      const body = { ...workflow(), cluster: cluster.value, send_samples: samples.checked };
      if (hours.value) body.hours = Number(hours.value); else body.events_jsonl = jsonl.value;
      FG.fill(results, FG.el("p", { class: "muted" }, "Running…"));
      try {
        FG.fill(results, ...FG.testResults(await FG.api("POST", "/api/test", body)));
      } catch (e) { FG.fill(results, FG.problemList(e)); }
    };
    return [FG.el("div", { class: "card" },
      FG.el("p", { class: "muted" }, "A dry run through the engine: nothing is retried. Upload recorded events, or read a cluster's last hours from Kafka."),
      FG.el("label", {}, "Events (JSONL)"), file, jsonl,
      FG.el("div", { class: "grid" },
        FG.el("div", {}, FG.el("label", {}, "Cluster"), cluster),
        FG.el("div", {}, FG.el("label", {}, "…or the last N hours from Kafka"), hours),
        FG.el("div", {}, FG.el("label", {}, "Send a sample notification (marked as a test)"), samples)),
      FG.el("p", {}, FG.el("button", { type: "button", onclick: run, "data-testid": "run-test" }, "Run test"))),
    results];
  },

  testResults(r) {
    return [
      FG.el("p", {}, `${r.source}: ${r.stats.events} events, ${r.stats.triggers} triggers, ` +
        `${r.records.length} execution records (dry run)`),
      r.samples.length ? FG.el("p", {}, "Samples: ", r.samples.map((s) => `${s.type} ${s.status} ${s.detail}`).join("; ")) : null,
      FG.el("table", {}, FG.el("thead", {}, FG.el("tr", {}, ["Trigger", "At", "Task / worker", "Fired?", "Why"].map((h) => FG.el("th", {}, h)))),
        FG.el("tbody", {}, r.verdicts.map((v) => FG.el("tr", { "data-testid": "verdict", "data-fired": String(v.fired) },
          FG.el("td", {}, v.event), FG.el("td", {}, FG.when(v.at)), FG.el("td", {}, v.subject),
          FG.el("td", {}, FG.badge(v.fired ? "fired" : "no", v.fired ? "success" : "skipped")),
          FG.el("td", {}, v.reason))))),
      FG.el("h2", {}, "Records"),
      ...r.records.map((rec) => FG.el("details", { class: "card" },
        FG.el("summary", {}, `${rec.trigger.event} ${rec.task ? rec.task.name : ""} → `,
          FG.badge(rec.outcome), ` ${rec.actions.map((a) => `${a.type}:${a.status}`).join(", ")}`),
        FG.recordDetail(rec))),
    ];
  },

  // The record of one execution, expanded: trigger, conditions, actions, breaker, outcome.
  recordDetail(record) {
    const task = record.task || {};
    return FG.el("div", { class: "record" },
      FG.el("div", {}, FG.el("b", {}, "Trigger: "),
        `${record.trigger.event} at ${FG.when(record.trigger.at)} ${record.trigger.reason || ""}`),
      record.task ? FG.el("div", {}, FG.el("b", {}, "Task: "),
        FG.el("a", { href: `/ui/tasks/${encodeURIComponent(task.root_id)}` }, task.name || task.id),
        ` ${task.id} on ${task.worker || "?"} (${task.cluster}) ${task.exception_type || ""}: `,
        task.error_message || "") : null,
      task.fingerprint ? FG.el("div", {}, FG.el("b", {}, "Failure group: "),
        FG.el("a", { href: `/ui/groups?fingerprint=${task.fingerprint}`, "data-testid": "group-link" },
          task.fingerprint)) : null,
      FG.el("div", {}, FG.el("b", {}, "Conditions: "),
        record.conditions.length ? record.conditions.map(
          (c) => `${c.name}=${c.value} ${c.matched ? "✓" : "✗"}`).join(", ") : "none"),
      FG.el("div", {}, FG.el("b", {}, "Actions: "),
        record.actions.map((a) => `${a.type} ${a.status}${a.detail ? ` (${a.detail})` : ""}` +
          `${a.delay_seconds ? ` after ${a.delay_seconds}s` : ""}`).join("; ") || "none"),
      FG.el("div", {}, FG.el("b", {}, "Circuit breaker: "),
        `${record.circuit_breaker.state}, ${record.circuit_breaker.count}/` +
        `${record.circuit_breaker.max_executions} in ${record.circuit_breaker.window_seconds}s`),
      FG.el("div", {}, FG.el("b", {}, "Outcome: "), FG.badge(record.outcome),
        record.reason ? ` ${record.reason}` : "", record.dry_run ? " (dry run)" : ""),
      FG.el("details", {}, FG.el("summary", {}, "JSON"),
        FG.el("pre", {}, JSON.stringify(record, null, 2))));
  },
};
