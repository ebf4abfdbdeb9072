// Bulk remediation: retry or revoke by filter across clusters. A preview (count and a sample),
// then a named run, paced, with progress and abort; undo a run or a workflow's pending retries.
// Viewers see the runs only; editors confirm the count; admins set the per-run ceiling.
"use strict";

function field(label, input) {
  return FG.el("label", { class: "field" }, FG.el("span", {}, label), input);
}

function list(text) {
  return text.split(",").map((s) => s.trim()).filter(Boolean);
}

function sampleTable(sample) {
  return FG.el("table", { "data-testid": "sample" },
    FG.el("thead", {}, FG.el("tr", {}, ["Cluster", "Task", "Args", "Queue", "Error", "At"].map((h) => FG.el("th", {}, h)))),
    FG.el("tbody", {}, sample.map((s) => FG.el("tr", { "data-task": s.task_id },
      FG.el("td", {}, s.cluster),
      FG.el("td", {}, FG.el("b", {}, s.name || "(unknown)"), " ", FG.el("code", {}, s.task_id)),
      FG.el("td", {}, FG.el("code", {}, `${s.args || ""} ${s.kwargs || ""}`)),
      FG.el("td", {}, s.queue || "—"),
      FG.el("td", {}, s.exception_type ? `${s.exception_type}: ${s.error_message || ""}` : "—"),
      FG.el("td", {}, FG.when(s.at))))));
}

function progressText(run) {
  const state = run.aborted ? "aborted" : run.error ? `stopped: ${run.error}` : run.done >= run.total ? "done" : "running";
  return `${run.name}: ${run.done} of ${run.total} (${run.sent} sent, ${run.refused} refused) · ${state}`;
}

(async () => {
  const me = await FG.header();
  if (!me) return;
  const canEdit = me.role !== "viewer";
  const main = document.getElementById("main");
  const inputs = {
    action: FG.el("select", { "data-testid": "action" },
      FG.el("option", { value: "retry" }, "retry failed tasks"),
      FG.el("option", { value: "revoke" }, "revoke unfinished tasks")),
    task: FG.el("input", { placeholder: "billing.*", "data-testid": "task" }),
    exception: FG.el("input", { placeholder: "ConnectionError", "data-testid": "exception" }),
    error: FG.el("input", { placeholder: "regular expression", "data-testid": "error" }),
    clusters: FG.el("input", { placeholder: "any (comma-separated)", "data-testid": "clusters" }),
    queues: FG.el("input", { placeholder: "any (comma-separated)", "data-testid": "queues" }),
    since: FG.el("input", { value: "24h", "data-testid": "since" }),
  };
  const filter = () => {
    const body = { action: inputs.action.value, since: inputs.since.value,
      clusters: list(inputs.clusters.value), queues: list(inputs.queues.value) };
    for (const name of ["task", "exception", "error"]) if (inputs[name].value) body[name] = inputs[name].value;
    return body;
  };
  const result = FG.el("div", { "data-testid": "preview" });
  const progress = FG.el("p", { "data-testid": "progress" });
  const runs = FG.el("ul", { class: "plain", "data-testid": "runs" });
  const name = FG.el("input", { placeholder: "incident 4211", "data-testid": "run-name" });
  const rate = FG.el("input", { type: "number", value: "5", min: "0.1", step: "0.1", "data-testid": "rate" });
  const runButton = FG.el("button", { type: "button", disabled: true, "data-testid": "run" }, "Run");
  const abortButton = FG.el("button", { type: "button", class: "secondary", disabled: true, "data-testid": "abort" }, "Abort");
  let selected = null;
  let current = null;

  const loadRuns = async () => {
    const found = await FG.api("GET", "/api/remediate/runs");
    FG.fill(runs, found.length ? found.map((r) => FG.el("li", { "data-run": r.run }, progressText(r)))
      : FG.el("li", { class: "muted" }, "No run started from this API process yet."));
    return found;
  };
  const follow = async () => {
    if (!current) return;
    const run = await FG.api("GET", `/api/remediate/runs/${encodeURIComponent(current)}`);
    FG.fill(progress, progressText(run));
    const over = run.aborted || run.error || run.done >= run.total;
    abortButton.disabled = over;
    if (over) { current = null; await loadRuns(); } else setTimeout(follow, 500);
  };
  const doPreview = async () => {
    try {
      const found = await FG.api("POST", "/api/remediate/preview", { ...filter(), sample: 20 });
      selected = found.count;
      const clusters = Object.entries(found.by_cluster).map(([c, n]) => `${c}: ${n}`).join(", ");
      FG.fill(result,
        FG.el("p", { "data-testid": "count" }, `${found.count} task${found.count === 1 ? "" : "s"} selected`,
          clusters ? ` (${clusters})` : "", ` · ceiling ${found.ceiling} a run`),
        found.sample.length ? sampleTable(found.sample) : null);
      runButton.disabled = found.count === 0;
    } catch (e) { selected = null; runButton.disabled = true; FG.fill(result, FG.problemList(e)); }
  };
  const doRun = async () => {
    const verb = inputs.action.value;
    if (!confirm(`${verb} ${selected} tasks as '${name.value}'? Each one is recorded on the execution log.`)) return;
    try {
      const run = await FG.api("POST", "/api/remediate/runs",
        { ...filter(), name: name.value, rate: Number(rate.value), confirm: selected });
      current = run.run;
      abortButton.disabled = false;
      FG.fill(progress, progressText(run));
      setTimeout(follow, 300);
    } catch (e) { FG.fill(progress, FG.problemList(e)); }
  };
  const doAbort = async () => {
    if (current) await FG.api("POST", `/api/remediate/runs/${encodeURIComponent(current)}/abort`);
  };
  const undoTarget = FG.el("input", { placeholder: "incident 4211, or a workflow id", "data-testid": "undo-target" });
  const undoKind = FG.el("select", { "data-testid": "undo-kind" },
    FG.el("option", { value: "run" }, "a bulk run"), FG.el("option", { value: "workflow_id" }, "a workflow (disables it)"));
  const undoResult = FG.el("p", { "data-testid": "undo-result" });
  const doUndo = async () => {
    if (!confirm(`Revoke every pending retry of ${undoTarget.value}?`)) return;
    try {
      const done = await FG.api("POST", "/api/remediate/undo", { [undoKind.value]: undoTarget.value, confirm: true });
      FG.fill(undoResult, `${done.cancelled.length} pending retr${done.cancelled.length === 1 ? "y" : "ies"} revoked` +
        (done.disabled ? `; ${done.workflow_id} disabled` : ""));
    } catch (e) { FG.fill(undoResult, FG.problemList(e)); }
  };
  runButton.addEventListener("click", doRun);
  abortButton.addEventListener("click", doAbort);

  const ceiling = FG.el("input", { type: "number", min: "1", "data-testid": "ceiling" });
  ceiling.value = String((await FG.api("GET", "/api/remediate/ceiling")).ceiling);
  const saveCeiling = async () => {
    try {
      const set = await FG.api("PUT", "/api/remediate/ceiling", { ceiling: Number(ceiling.value) });
      FG.toast(`ceiling: ${set.ceiling} tasks a run`);
    } catch (e) { FG.toast(e.message); }
  };

  FG.fill(main, FG.el("h1", {}, "Bulk remediation"),
    FG.el("p", { class: "muted" }, "Retry failed tasks (with their original arguments) or revoke unfinished ones, by filter, across clusters, from what the bridges published. Preview first; a run is paced, can be aborted, and every action is on the execution log as workflow remediate.<run>."),
    canEdit ? [
      FG.el("section", {},
        FG.el("div", { class: "row" }, field("Action", inputs.action), field("Task name", inputs.task),
          field("Exception", inputs.exception), field("Error", inputs.error)),
        FG.el("div", { class: "row" }, field("Clusters", inputs.clusters), field("Queues", inputs.queues),
          field("Since", inputs.since),
          FG.el("button", { type: "button", onclick: doPreview, "data-testid": "preview-button" }, "Preview")),
        result,
        FG.el("div", { class: "row" }, field("Run name", name), field("Tasks per second", rate), runButton, abortButton),
        progress),
      FG.el("section", {}, FG.el("h2", {}, "Undo a wave"),
        FG.el("div", { class: "row" }, undoKind, undoTarget,
          FG.el("button", { type: "button", class: "secondary", onclick: doUndo, "data-testid": "undo" }, "Undo")),
        undoResult),
    ] : FG.el("p", { "data-testid": "viewer-note" }, "Viewers cannot remediate: ask an editor."),
    me.role === "admin" ? FG.el("section", {}, FG.el("h2", {}, "Ceiling"),
      FG.el("div", { class: "row" }, field("Most tasks a run may act on", ceiling),
        FG.el("button", { type: "button", onclick: saveCeiling, "data-testid": "save-ceiling" }, "Save"))) : null,
    FG.el("section", {}, FG.el("h2", {}, "Runs"), runs));
  await loadRuns();
})();
