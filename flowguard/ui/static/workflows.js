// The workflows list: state, circuit, last execution, executions in 24 h, a sparkline.
"use strict";
(async () => {
  const me = await FG.header();
  if (!me) return;
  const main = document.getElementById("main");
  const workflows = await FG.api("GET", "/api/workflows");
  const rows = workflows.map((w) => FG.el("tr", { "data-workflow": w.id },
    FG.el("td", {}, FG.el("a", { href: `/ui/workflows/${w.id}` }, w.name),
      FG.el("div", { class: "muted" }, w.id)),
    FG.el("td", {}, FG.badge(w.enabled ? "enabled" : "disabled", w.enabled ? "on" : "off")),
    FG.el("td", {}, w.trigger),
    FG.el("td", {}, `v${w.version}`, FG.el("div", { class: "muted" }, w.saved_by)),
    FG.el("td", {}, w.circuit_state ? FG.badge(w.circuit_state) : FG.el("span", { class: "muted" }, "—")),
    FG.el("td", {}, w.last_execution
      ? [FG.badge(w.last_execution.outcome), " ", FG.when(w.last_execution.at)] : "never"),
    FG.el("td", { "data-testid": "executions-24h" }, String(w.executions_24h)),
    FG.el("td", {}, FG.sparkline(w.sparkline))));
  FG.fill(main, 
    FG.el("div", { class: "row" }, FG.el("h1", {}, "Workflows"),
      me.role !== "viewer" ? FG.el("a", { class: "button", href: "/ui/new", style: "margin-left:auto" },
        "Create Workflow") : null),
    workflows.length ? FG.el("table", { "data-testid": "workflows" },
      FG.el("thead", {}, FG.el("tr", {}, ["Workflow", "State", "Trigger", "Version", "Circuit",
        "Last execution", "24 h", "Per hour"].map((h) => FG.el("th", {}, h)))),
      FG.el("tbody", {}, rows))
      : FG.el("div", { class: "card" }, "No workflows yet. ",
        FG.el("a", { href: "/ui/new" }, "Create one from a template.")),
    FG.el("form", { class: "row card", onsubmit: (e) => {
      e.preventDefault();
      const id = new FormData(e.target).get("root");
      if (id) location.href = `/ui/tasks/${encodeURIComponent(id)}`;
    } }, FG.el("label", {}, "Task retry chain (root task id)"),
      FG.el("input", { name: "root", placeholder: "root task id" }),
      FG.el("button", { class: "secondary" }, "Open")));
})();
