// The fleet: one row per Celery cluster (bridge, last event, workers, failures, open breakers),
// refreshed every 10 s, and the executions of one cluster below it (the cluster filter).
"use strict";
const REFRESH_MS = 10000;

function ago(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  if (seconds < 90) return `${Math.round(seconds)} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  return `${Math.round(seconds / 3600)} h ago`;
}

function sum(items, key) { return items.reduce((total, item) => total + item[key], 0); }

function bridgeCell(c) {
  const state = { reporting: "on", silent: "open", unknown: "off" }[c.bridge_state];
  return FG.el("td", { "data-testid": "bridge" }, FG.badge(c.bridge_state, state),
    c.bridges.map((b) => FG.el("div", { class: "muted", title: b.bridge_id },
      `status ${ago(b.status_age_seconds)}`,
      b.celery_connected ? "" : " · broker unreachable", b.kafka_connected ? "" : " · Kafka unreachable")));
}

function workersCell(c) {
  const label = `${c.workers_online} online · ${c.workers_offline} offline`;
  if (!c.workers.length) return FG.el("td", { "data-testid": "workers" }, FG.el("span", { class: "muted" }, "none seen"));
  return FG.el("td", { "data-testid": "workers" }, FG.el("details", {}, FG.el("summary", {}, label),
    FG.el("ul", { class: "plain" }, c.workers.map((w) => FG.el("li", { "data-worker": w.hostname },
      FG.badge(w.state, w.state === "online" ? "on" : "open"), ` ${w.hostname}`)))));
}

function clusterRow(c, pick) {
  const published = sum(c.bridges, "events_published");
  const dropped = sum(c.bridges, "events_dropped");
  const buffered = sum(c.bridges, "buffered");
  return FG.el("tr", { "data-cluster": c.cluster, "data-bridge-state": c.bridge_state,
    class: c.bridge_state === "silent" ? "alert" : null },
  FG.el("td", {}, FG.el("b", {}, c.cluster)),
  bridgeCell(c),
  FG.el("td", { "data-testid": "last-event" }, ago(c.last_event_age_seconds),
    FG.el("div", { class: "muted" }, FG.when(c.last_event_at))),
  FG.el("td", { "data-testid": "events" }, `${published} / `,
    FG.el("span", { class: dropped ? "bad" : null }, String(dropped)), ` / ${buffered}`),
  workersCell(c),
  FG.el("td", { "data-testid": "failures" }, String(c.failures_last_hour)),
  FG.el("td", {}, FG.sparkline(c.failures_per_hour)),
  FG.el("td", { "data-testid": "executions" }, FG.el("a", { href: "#executions", onclick: () => pick(c.cluster) },
    String(c.executions_last_hour))),
  FG.el("td", { "data-testid": "breakers" }, c.open_breakers.length
    ? c.open_breakers.map((id) => FG.el("div", {}, FG.badge("open"), " ",
      FG.el("a", { href: `/ui/workflows/${encodeURIComponent(id)}?cluster=${encodeURIComponent(c.cluster)}#history` }, id)))
    : FG.el("span", { class: "muted" }, "—")));
}

function breakersCard(breakers) {
  if (!breakers.length) return null;
  return FG.el("div", { class: "card", "data-testid": "open-breakers" }, FG.el("b", {}, "Open circuit breakers"),
    FG.el("ul", { class: "plain" }, breakers.map((b) => FG.el("li", { "data-breaker": b.workflow_id },
      FG.badge("open"), " ", FG.el("a", { href: `/ui/workflows/${encodeURIComponent(b.workflow_id)}#history` }, b.workflow_name),
      ` ${b.count}/${b.max_executions} in ${b.window_seconds} s, last ${FG.when(b.last_execution_at)}; clusters: ${b.clusters.join(", ") || "—"}`))));
}

// Executions of one cluster (or all), newest first: /api/executions?cluster=...
function executionsPanel() {
  const select = FG.el("select", { name: "cluster", "data-testid": "cluster-select" }, FG.el("option", { value: "" }, "any"));
  const list = FG.el("div", { "data-testid": "cluster-history" });
  const load = async () => {
    const params = new URLSearchParams({ limit: "25" });
    if (select.value) params.set("cluster", select.value);
    const page = await FG.api("GET", `/api/executions?${params}`);
    FG.fill(list, page.items.length ? FG.el("table", {},
      FG.el("thead", {}, FG.el("tr", {}, ["At", "Cluster", "Workflow", "Trigger", "Task / worker", "Outcome"].map((h) => FG.el("th", {}, h)))),
      FG.el("tbody", {}, page.items.map((r) => FG.el("tr", { "data-execution": r.execution_id },
        FG.el("td", {}, FG.when(r.trigger.at)),
        FG.el("td", {}, r.task ? r.task.cluster : (r.worker ? r.worker.cluster : "—")),
        FG.el("td", {}, FG.el("a", { href: `/ui/workflows/${encodeURIComponent(r.workflow.id)}${select.value ? `?cluster=${encodeURIComponent(select.value)}` : ""}#history` }, r.workflow.name)),
        FG.el("td", {}, r.trigger.event),
        FG.el("td", {}, r.task ? FG.el("a", { href: `/ui/tasks/${encodeURIComponent(r.task.root_id)}` }, r.task.name || r.task.id)
          : (r.worker ? r.worker.hostname : "")),
        FG.el("td", {}, FG.badge(r.outcome))))))
      : FG.el("p", { class: "muted" }, "No executions match."));
  };
  select.addEventListener("change", load);
  const setClusters = (names) => {
    const chosen = select.value;
    FG.fill(select, FG.el("option", { value: "" }, "any"), names.map((n) => FG.el("option", { value: n }, n)));
    select.value = names.includes(chosen) ? chosen : "";
  };
  const pick = (name) => { select.value = name; load(); };
  const card = FG.el("div", { class: "card", id: "executions" },
    FG.el("div", { class: "row" }, FG.el("b", {}, "Recent executions"), FG.el("label", {}, "Cluster"), select),
    list);
  return { card, load, setClusters, pick };
}

(async () => {
  const me = await FG.header();
  if (!me) return;
  const main = document.getElementById("main");
  const summary = FG.el("p", { class: "muted", "data-testid": "fleet-summary" });
  const breakers = FG.el("div");
  const body = FG.el("tbody");
  const executions = executionsPanel();
  const table = FG.el("table", { "data-testid": "fleet" },
    FG.el("thead", {}, FG.el("tr", {}, ["Cluster", "Bridge", "Last event", "Published / dropped / buffered",
      "Workers", "Failures 1 h", "Failures per hour, 24 h", "Executions 1 h", "Open breakers"].map((h) => FG.el("th", {}, h)))),
    body);
  const refresh = async () => {
    const fleet = await FG.api("GET", "/api/fleet");
    const silent = fleet.clusters.filter((c) => c.bridge_state === "silent").length;
    FG.fill(summary, `${fleet.clusters.length} clusters, ${silent} with a silent bridge, ` +
      `${fleet.open_breakers.length} open breaker${fleet.open_breakers.length === 1 ? "" : "s"}; as of ${FG.when(fleet.generated_at)}` +
      (fleet.counted_since ? `; failures counted since ${FG.when(fleet.counted_since)}` : ""));
    FG.fill(breakers, breakersCard(fleet.open_breakers));
    FG.fill(body, fleet.clusters.length ? fleet.clusters.map((c) => clusterRow(c, executions.pick))
      : FG.el("tr", {}, FG.el("td", { colspan: 9, class: "muted" }, "No cluster has reported yet: start a bridge (flowguard-bridge --cluster NAME).")));
    executions.setClusters(fleet.clusters.map((c) => c.cluster));
  };
  FG.fill(main, FG.el("h1", {}, "Fleet"), summary, breakers, table, executions.card);
  await refresh();
  const wanted = new URLSearchParams(location.search).get("cluster");
  if (wanted) executions.pick(wanted); else await executions.load();
  setInterval(() => refresh().catch((e) => FG.fill(summary, FG.problemList(e))), REFRESH_MS);
})();
