// Failure groups: failures sharing a fingerprint (task, exception type, message with numbers,
// ids and quoted values normalized), with counts, first and last seen, clusters, and the
// workflows that acted on them. Editors can keep a workflow from retrying a group.
"use strict";
const RANGES = [["24 h", 24], ["7 days", 24 * 7], ["30 days", 24 * 30]];

function workflowItem(group, w, canEdit, reload) {
  const toggle = async () => {
    const method = w.never_retry ? "DELETE" : "PUT";
    const path = `/api/groups/${group.fingerprint}/never-retry/${encodeURIComponent(w.id)}`;
    const verb = w.never_retry ? "retry this group again" : "never retry this group";
    if (!confirm(`${w.name}: ${verb}? This saves a new version of the workflow.`)) return;
    try {
      const result = await FG.api(method, path);
      FG.toast(`${w.name}: version ${result.workflow_version} saved`);
      await reload();
    } catch (e) { FG.toast(`${w.name}: ${e.message}`); }
  };
  const counts = [`${w.executions} execution${w.executions === 1 ? "" : "s"}`];
  if (w.retries) counts.push(`${w.retries} retr${w.retries === 1 ? "y" : "ies"}`);
  if (w.never_retried) counts.push(`${w.never_retried} retr${w.never_retried === 1 ? "y" : "ies"} refused (never retry)`);
  return FG.el("li", { "data-workflow": w.id, "data-never-retry": String(w.never_retry) },
    FG.el("a", { href: `/ui/workflows/${encodeURIComponent(w.id)}#history` }, w.name),
    ` · ${counts.join(", ")} `,
    w.never_retry ? FG.badge("never retry", "open") : null,
    canEdit && w.can_retry ? FG.el("button", { class: "secondary small", type: "button", onclick: toggle,
      "data-testid": "never-retry-toggle" }, w.never_retry ? "Allow retry" : "Never retry") : null);
}

function groupRow(group, canEdit, reload) {
  return FG.el("tr", { "data-group": group.fingerprint },
    FG.el("td", {},
      FG.el("div", {}, FG.el("b", {}, group.task_name || "(unknown task)"), " ", group.exception_type || ""),
      FG.el("div", { class: "muted", "data-testid": "pattern" }, group.message || "(no message)"),
      FG.el("details", {}, FG.el("summary", {}, FG.el("code", { "data-testid": "fingerprint" }, group.fingerprint)),
        FG.el("div", {}, "Latest: ", group.example),
        FG.el("div", {}, "In a workflow: ", FG.el("code", {}, `conditions: {fingerprint: ${group.fingerprint}}`)))),
    FG.el("td", { "data-testid": "failures" }, String(group.failures)),
    FG.el("td", { "data-testid": "first-seen" }, FG.when(group.first_seen)),
    FG.el("td", { "data-testid": "last-seen" }, FG.when(group.last_seen)),
    FG.el("td", { "data-testid": "clusters" }, group.clusters.join(", ")),
    FG.el("td", {}, FG.el("ul", { class: "plain", "data-testid": "workflows" },
      group.workflows.map((w) => workflowItem(group, w, canEdit, reload)))));
}

(async () => {
  const me = await FG.header();
  if (!me) return;
  const canEdit = me.role !== "viewer";
  const main = document.getElementById("main");
  const params = new URLSearchParams(location.search);
  const range = FG.el("select", { "data-testid": "range" },
    RANGES.map(([label, hours]) => FG.el("option", { value: String(hours) }, label)));
  range.value = params.get("hours") || String(24 * 7);
  const cluster = FG.el("input", { placeholder: "any cluster", value: params.get("cluster") || "", "data-testid": "cluster" });
  const summary = FG.el("p", { class: "muted", "data-testid": "groups-summary" });
  // ?fingerprint=... (an execution record's "Group" link): that group only.
  const only = params.get("fingerprint");
  const body = FG.el("tbody");
  const load = async () => {
    const query = new URLSearchParams({
      since: new Date(Date.now() - Number(range.value) * 3600e3).toISOString() });
    if (cluster.value) query.set("cluster", cluster.value);
    if (only) query.set("fingerprint", only);
    try {
      const found = await FG.api("GET", `/api/groups?${query}`);
      FG.fill(summary, `${found.groups.length} group${found.groups.length === 1 ? "" : "s"} from ` +
        `${found.scanned} task.failed executions since ${FG.when(found.since)}` +
        (found.complete ? "" : " (the newest only: narrow the range for all)"),
        only ? [" · one group: ", FG.el("a", { href: "/ui/groups", "data-testid": "show-all" }, "show all")] : null);
      FG.fill(body, found.groups.length ? found.groups.map((g) => groupRow(g, canEdit, load))
        : FG.el("tr", {}, FG.el("td", { colspan: 6, class: "muted" }, "No failure matched a workflow in this range.")));
    } catch (e) { FG.fill(summary, FG.problemList(e)); }
  };
  range.addEventListener("change", load);
  cluster.addEventListener("change", load);
  FG.fill(main, FG.el("h1", {}, "Failure groups"),
    FG.el("p", { class: "muted" }, "Failures that share a fingerprint: the task, the exception type and the message with numbers, ids and quoted values replaced. Only failures a workflow matched are on the execution log, so only they are counted."),
    FG.el("div", { class: "row" }, FG.el("label", {}, "Range"), range, FG.el("label", {}, "Cluster"), cluster),
    summary,
    FG.el("table", { "data-testid": "groups" },
      FG.el("thead", {}, FG.el("tr", {}, ["Group", "Failures", "First seen", "Last seen", "Clusters", "Workflows that acted"].map((h) => FG.el("th", {}, h)))),
      body));
  await load();
})();
