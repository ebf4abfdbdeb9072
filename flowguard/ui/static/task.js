// A task's retry chain: each attempt, its worker and error, and the executions that touched it.
"use strict";
(async () => {
  const me = await FG.header();
  if (!me) return;
  const rootId = decodeURIComponent(location.pathname.split("/")[3]);
  const main = document.getElementById("main");
  let chain;
  try { chain = await FG.api("GET", `/api/chains/${encodeURIComponent(rootId)}`); } catch (e) {
    FG.fill(main, FG.el("h1", {}, `Task ${rootId}`), FG.problemList(e)); return;
  }
  FG.fill(main, FG.el("h1", {}, `Retry chain ${rootId}`),
    FG.el("table", { "data-testid": "chain" },
      FG.el("thead", {}, FG.el("tr", {}, ["Attempt", "Task", "Worker", "Error", "Retried as", "Executions"].map((h) => FG.el("th", {}, h)))),
      FG.el("tbody", {}, chain.map((t, i) => FG.el("tr", { "data-task": t.task_id },
        FG.el("td", {}, String(i + 1)),
        FG.el("td", {}, t.name || "?", FG.el("div", { class: "muted" }, t.task_id),
          t.parent_id ? FG.el("div", { class: "muted" }, `parent ${t.parent_id}`) : null),
        FG.el("td", {}, t.worker || "—", FG.el("div", { class: "muted" }, t.cluster || "")),
        FG.el("td", {}, t.exception_type ? `${t.exception_type}: ${t.error_message || ""}` : "—"),
        FG.el("td", {}, t.retried_as.length ? t.retried_as.join(", ") : "—",
          t.retry_status ? [" ", FG.badge(t.retry_status, "")] : null),
        FG.el("td", {}, t.executions.map((x) => FG.el("div", {},
          FG.el("a", { href: `/ui/workflows/${x.workflow_id}#history` }, x.workflow_name), " ",
          x.trigger_event, " ", FG.badge(x.outcome), x.reason ? ` ${x.reason}` : "",
          FG.el("span", { class: "muted" }, ` ${FG.when(x.at)}`)))))))));
})();
