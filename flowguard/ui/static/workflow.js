// One workflow: settings, versions (diff, rollback), Test Workflow, Execution History.
"use strict";
const workflowId = decodeURIComponent(location.pathname.split("/")[3]);
let me = null;
const W = (path) => `/api/workflows/${encodeURIComponent(workflowId)}${path}`;

async function settingsTab(box) {
  const w = await FG.api("GET", W(""));
  const canWrite = me.role !== "viewer";
  const act = async (method, path, body) => {
    try { await FG.api(method, W(path), body); location.reload(); } catch (e) { box.append(FG.problemList(e)); }
  };
  FG.fill(box, 
    FG.el("div", { class: "row" },
      FG.badge(w.enabled ? "enabled" : "disabled", w.enabled ? "on" : "off"),
      FG.el("span", { class: "muted" }, `version ${w.version}, saved ${FG.when(w.saved_at)} by ${w.saved_by}`),
      canWrite ? FG.el("a", { class: "button", href: `/ui/workflows/${w.id}/edit` }, "Edit") : null,
      canWrite ? FG.el("button", { class: "secondary", onclick: () => act("POST", w.enabled ? "/disable" : "/enable") },
        w.enabled ? "Disable" : "Enable") : null,
      FG.el("a", { class: "button secondary", href: "#", onclick: async (e) => {
        e.preventDefault();
        const text = await FG.api("GET", W("/export"));
        box.append(FG.el("pre", {}, text));
      } }, "Export YAML"),
      canWrite ? FG.el("button", { class: "danger", onclick: async () => {
        if (confirm(`Delete ${w.name}? Its versions stay in the history.`)) {
          await FG.api("DELETE", W("")); location.href = "/ui/";
        }
      } }, "Delete") : null),
    w.warnings.length ? FG.el("ul", { class: "warnings" },
      w.warnings.map((x) => FG.el("li", {}, `${x.field}: ${x.message}`))) : null,
    FG.el("pre", { "data-testid": "definition" }, w.yaml));
}

function diffView(text) {
  return FG.el("pre", { class: "diff", "data-testid": "diff" }, text.split("\n").map((line) =>
    FG.el("div", { class: line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : "" }, line)));
}

async function versionsTab(box) {
  const versions = await FG.api("GET", W("/versions"));
  const latest = versions[versions.length - 1].version;
  const diffBox = FG.el("div");
  const pick = (name, value) => FG.el("select", { name },
    versions.map((v) => FG.el("option", { value: v.version, selected: v.version === value }, `v${v.version}`)));
  const a = pick("a", Math.max(1, latest - 1));
  const b = pick("b", latest);
  FG.fill(box, 
    FG.el("table", { "data-testid": "versions" },
      FG.el("thead", {}, FG.el("tr", {}, ["Version", "Saved", "By", "Comment", ""].map((h) => FG.el("th", {}, h)))),
      FG.el("tbody", {}, versions.slice().reverse().map((v) => FG.el("tr", { "data-version": v.version },
        FG.el("td", {}, `v${v.version}`, v.version === latest ? " (latest)" : "", v.deleted ? " deleted" : ""),
        FG.el("td", {}, FG.when(v.saved_at)), FG.el("td", {}, v.saved_by), FG.el("td", {}, v.comment),
        FG.el("td", {}, me.role !== "viewer" && v.version !== latest && !v.deleted
          ? FG.el("button", { class: "secondary", onclick: async () => {
            await FG.api("POST", W("/rollback"), { version: v.version });
            FG.toast(`Rolled back to v${v.version}`);
            location.hash = "versions"; location.reload();
          } }, `Roll back to v${v.version}`) : null))))),
    FG.el("div", { class: "row" }, "Diff ", a, " → ", b,
      FG.el("button", { class: "secondary", onclick: async () => {
        const d = await FG.api("GET", W(`/diff?a=${a.value}&b=${b.value}`));
        FG.fill(diffBox, diffView(d.diff || "(no difference)"));
      } }, "Show diff")),
    diffBox);
}

function testTab(box) {
  FG.fill(box, ...FG.testPanel(() => ({ workflow_id: workflowId })));
}

// The cluster filter: the clusters the fleet knows, preset from ?cluster= (the fleet page links so).
async function clusterField() {
  const wanted = new URLSearchParams(location.search).get("cluster") || "";
  const fleet = await FG.api("GET", "/api/fleet").catch(() => ({ clusters: [] }));
  const names = fleet.clusters.map((c) => c.cluster);
  if (wanted && !names.includes(wanted)) names.push(wanted);
  const select = FG.el("select", { name: "cluster", "data-testid": "history-cluster" },
    FG.el("option", { value: "" }, "any"), names.map((n) => FG.el("option", { value: n }, n)));
  select.value = wanted;
  return FG.el("div", {}, FG.el("label", {}, "Cluster"), select);
}

async function historyTab(box) {
  const filters = FG.el("form", { class: "row card" });
  const field = (name, label, options) => FG.el("div", {}, FG.el("label", {}, label), options
    ? FG.el("select", { name }, FG.el("option", { value: "" }, "any"), options.map((o) => FG.el("option", { value: o }, o)))
    : FG.el("input", { name, size: 14 }));
  filters.append(field("outcome", "Outcome", ["success", "failure", "skipped"]),
    field("trigger", "Trigger", ["task.failed", "task.orphaned", "task.execution_time_exceeded", "worker.offline"]),
    await clusterField(), field("task_name", "Task name"), field("task_id", "Task id"),
    field("since", "Since (ISO)"), field("until", "Until (ISO)"),
    FG.el("button", {}, "Filter"));
  const chart = FG.el("div", { class: "card", "data-testid": "chart" });
  const table = FG.el("div", { "data-testid": "history" });
  const pager = FG.el("div", { class: "row" });
  const cursors = [null];
  const load = async () => {
    const params = new URLSearchParams({ workflow: workflowId, limit: "25" });
    for (const [k, v] of new FormData(filters)) if (v) params.set(k, v);
    const countParams = new URLSearchParams({ workflow: workflowId });
    if (params.get("cluster")) countParams.set("cluster", params.get("cluster"));
    const counts = await FG.api("GET", `/api/executions/counts?${countParams}`);
    FG.fill(chart, FG.el("b", {}, "Executions per hour, last 24 h"), FG.chart(counts));
    const cursor = cursors[cursors.length - 1];
    if (cursor) params.set("cursor", cursor);
    let page;
    try { page = await FG.api("GET", `/api/executions?${params}`); } catch (e) {
      FG.fill(table, FG.problemList(e)); return;
    }
    FG.fill(table, page.items.length ? FG.el("div", {}, page.items.map((r) => FG.el("details", { class: "card", "data-execution": r.execution_id },
      FG.el("summary", {}, FG.when(r.trigger.at), " ", r.trigger.event, " ",
        r.task ? r.task.name : (r.worker ? r.worker.hostname : ""), " → ", FG.badge(r.outcome),
        ` ${r.actions.map((a) => `${a.type}:${a.status}`).join(", ")}`),
      FG.recordDetail(r),
      me.role !== "viewer" && r.actions.some((a) => a.status === "scheduled")
        ? FG.el("button", { class: "danger", onclick: async () => {
          await FG.api("POST", `/api/executions/${encodeURIComponent(r.execution_id)}/cancel`, {});
          FG.toast("Cancellation requested");
        } }, "Cancel pending retry") : null)))
      : FG.el("p", { class: "muted" }, "No executions match."));
    FG.fill(pager, 
      FG.el("button", { class: "secondary", disabled: cursors.length === 1, onclick: () => { cursors.pop(); load(); } }, "Newer"),
      FG.el("button", { class: "secondary", disabled: !page.next_cursor, onclick: () => { cursors.push(page.next_cursor); load(); } }, "Older"));
  };
  filters.addEventListener("submit", (e) => { e.preventDefault(); cursors.length = 1; load(); });
  FG.fill(box, filters, chart, table, pager);
  await load();
}

(async () => {
  me = await FG.header();
  if (!me) return;
  const detail = await FG.api("GET", W("")).catch(() => null);
  const main = document.getElementById("main");
  const box = FG.el("div", { id: "tab" });
  const tabs = { settings: settingsTab, versions: versionsTab, test: testTab, history: historyTab };
  const labels = { settings: "Settings", versions: "Versions", test: "Test Workflow", history: "Execution History" };
  const bar = FG.el("div", { class: "tabs" });
  const show = async (name) => {
    for (const b of bar.children) b.classList.toggle("active", b.dataset.tab === name);
    location.hash = name;
    await tabs[name](box);
  };
  for (const name of Object.keys(tabs)) {
    bar.append(FG.el("button", { "data-tab": name, onclick: () => show(name) }, labels[name]));
  }
  FG.fill(main, FG.el("h1", {}, detail ? detail.name : workflowId,
    FG.el("span", { class: "muted" }, ` ${workflowId}`)), bar, box);
  const saved = new URLSearchParams(location.search).get("saved");
  if (saved) FG.toast(`Saved version ${saved}`);
  const first = location.hash.slice(1);
  await show(tabs[first] ? first : "settings");
})();
