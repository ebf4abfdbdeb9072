// Create / edit a workflow: a form and a YAML view kept in sync, validated as you type.
// The definition object is the one source of truth; secrets typed here stay in the page
// (the YAML is made here with js-yaml, the server never echoes a definition back).
"use strict";
const TRIGGERS = ["task.failed", "task.orphaned", "task.execution_time_exceeded", "task.stuck",
  "task.duplicate_start", "worker.offline"];
// task.stuck: where the task waits (topics/triggers.py STUCK_STAGES); "(default)" is both.
const STUCK_STAGES = ["unreceived", "unstarted"];
const THRESHOLD_TRIGGERS = ["task.execution_time_exceeded", "task.stuck"];
const CONDITIONS = [
  ["task_name_pattern", "text", "Task name pattern (glob)"], ["queue", "text", "Queue"],
  ["error_pattern", "text", "Error pattern (regex)"],
  ["failure_count_threshold", "number", "Failure count threshold"],
  ["cluster", "text", "Cluster (glob)"], ["worker_pattern", "text", "Worker (glob)"],
];
const ACTION_FIELDS = {
  retry: [["delay_seconds", "number", "Delay (s)"], ["max_attempts", "number", "Max attempts"],
    ["exponential_backoff", "checkbox", "Exponential backoff"],
    ["backoff_multiplier", "number", "Backoff multiplier"], ["max_delay_seconds", "number", "Max delay (s)"]],
  slack: [["webhook_url", "text", "Webhook URL (secret)"], ["message", "textarea", "Message template"],
    ["channel", "text", "Channel"]],
  webhook: [["url", "text", "URL (secret)"], ["method", "select", "Method", ["POST", "PUT", "PATCH"]],
    ["headers", "headers", "Headers (Name: value per line, secret)"],
    ["timeout_seconds", "number", "Timeout (s)"], ["retries", "number", "Retries"],
    ["secret", "text", "Signing secret"]],
  pagerduty: [["routing_key", "text", "Routing key (secret)"],
    ["severity", "select", "Severity", ["critical", "error", "warning", "info"]],
    ["summary", "textarea", "Summary template"]],
};
const NEW_ACTION = {
  retry: { type: "retry", delay_seconds: 60, max_attempts: 3 },
  slack: { type: "slack", webhook_url: "", message: "Task {task_name} failed: {error_message}" },
  webhook: { type: "webhook", url: "" },
  pagerduty: { type: "pagerduty", routing_key: "" },
};

// enabled: what "Save" keeps (false for a new workflow); "Save and Enable" sets it true.
const state = { def: null, workflowId: null, version: null, enabled: false };
let validateTimer = null;

function normalize(def) {
  const copy = JSON.parse(JSON.stringify(def || {}));
  if (copy.action && !copy.actions) { copy.actions = [copy.action]; delete copy.action; }
  copy.actions = (copy.actions || []).map((a) => (a.type ? a : { type: "retry", ...a }));
  copy.trigger = copy.trigger || { event: "task.failed" };
  copy.trigger.conditions = copy.trigger.conditions || {};
  return copy;
}

// The definition as saved: empty conditions and breaker left out.
function cleaned() {
  const def = JSON.parse(JSON.stringify(state.def));
  if (!Object.keys(def.trigger.conditions).length) delete def.trigger.conditions;
  if (def.circuit_breaker && !Object.keys(def.circuit_breaker).length) delete def.circuit_breaker;
  return def;
}

function getPath(path) { return path.split(".").reduce((o, k) => (o == null ? o : o[k]), state.def); }
function setPath(path, value) {
  const keys = path.split(".");
  let node = state.def;
  for (const key of keys.slice(0, -1)) { node[key] = node[key] || {}; node = node[key]; }
  const last = keys[keys.length - 1];
  if (value === "" || value === null || value === undefined) delete node[last]; else node[last] = value;
}

function headersText(headers) {
  return Object.entries(headers || {}).map(([k, v]) => `${k}: ${v}`).join("\n");
}
function parseHeaders(text) {
  const out = {};
  for (const line of text.split("\n")) {
    const at = line.indexOf(":");
    if (at > 0) out[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return Object.keys(out).length ? out : "";
}

function input(path, kind, label, options) {
  const value = getPath(path);
  let control;
  const onChange = (e) => {
    const t = e.target;
    let v = t.value;
    if (kind === "number") v = t.value === "" ? "" : Number(t.value);
    if (kind === "checkbox") v = t.checked;
    if (kind === "headers") v = parseHeaders(t.value);
    setPath(path, v);
    if (path === "trigger.event") eventChosen();
    changed(path);
  };
  if (kind === "textarea" || kind === "headers") {
    control = FG.el("textarea", { rows: 3, oninput: onChange, "data-path": path },
      kind === "headers" ? headersText(value) : value ?? "");
  } else if (kind === "select") {
    control = FG.el("select", { onchange: onChange, "data-path": path },
      FG.el("option", { value: "" }, "(default)"),
      options.map((o) => FG.el("option", { value: o, selected: o === value }, o)));
  } else if (kind === "checkbox") {
    control = FG.el("input", { type: "checkbox", checked: !!value, onchange: onChange, "data-path": path });
  } else {
    control = FG.el("input", { type: kind, value: value ?? "", oninput: onChange, "data-path": path,
      step: kind === "number" ? "any" : undefined });
  }
  return FG.el("div", {}, FG.el("label", {}, label), control);
}

function actionBox(action, index) {
  const fields = ACTION_FIELDS[action.type] || [];
  const box = FG.el("div", { class: "action", "data-testid": `action-${index}` },
    FG.el("div", { class: "row" },
      FG.el("b", {}, `Action ${index + 1}: `),
      FG.el("select", { "data-path": `actions.${index}.type`, onchange: (e) => {
        state.def.actions[index] = { ...NEW_ACTION[e.target.value] };
        renderForm(); changed();
      } }, Object.keys(NEW_ACTION).map((t) => FG.el("option", { value: t, selected: t === action.type }, t))),
      FG.el("button", { type: "button", class: "secondary", onclick: () => {
        state.def.actions.splice(index, 1); renderForm(); changed();
      } }, "Remove")),
    FG.el("div", { class: "grid" }, fields.map(([name, kind, label, options]) =>
      input(`actions.${index}.${name}`, kind, label, options))));
  const template = action.type === "slack" ? "message" : action.type === "pagerduty" ? "summary" : null;
  if (template) {
    box.append(FG.el("label", {}, "Live preview (example failure)"),
      FG.el("div", { class: "preview", "data-preview": `actions.${index}.${template}` }));
  }
  return box;
}

// A new trigger event: drop the fields it does not take (the server would refuse them) and
// show the ones it does (threshold, stage).
function eventChosen() {
  const trigger = state.def.trigger;
  if (!THRESHOLD_TRIGGERS.includes(trigger.event)) delete trigger.threshold_seconds;
  if (trigger.event !== "task.stuck") delete trigger.stage;
  renderForm();
}

function renderForm() {
  const def = state.def;
  const form = document.getElementById("form");
  FG.fill(form, 
    FG.el("div", { class: "grid" }, input("name", "text", "Name"), input("description", "text", "Description")),
    FG.el("h2", {}, "Trigger"),
    FG.el("div", { class: "grid" },
      input("trigger.event", "select", "Event", TRIGGERS),
      THRESHOLD_TRIGGERS.includes(def.trigger.event)
        ? input("trigger.threshold_seconds", "number", "Threshold (s)") : null,
      def.trigger.event === "task.stuck"
        ? input("trigger.stage", "select", "Stage (unreceived: sent, no worker received it; "
          + "unstarted: received, not started)", STUCK_STAGES) : null),
    FG.el("h2", {}, "Conditions (all must hold)"),
    FG.el("div", { class: "grid" }, CONDITIONS.map(([name, kind, label]) =>
      input(`trigger.conditions.${name}`, kind, label))),
    FG.el("h2", {}, "Actions"),
    FG.el("div", {}, def.actions.map(actionBox)),
    FG.el("div", { class: "row" }, Object.keys(NEW_ACTION).map((t) => FG.el("button", {
      type: "button", class: "secondary", onclick: () => {
        def.actions.push({ ...NEW_ACTION[t] }); renderForm(); changed();
      } }, `+ ${t}`))),
    FG.el("h2", {}, "Circuit breaker"),
    FG.el("div", { class: "grid" },
      input("circuit_breaker.max_executions", "number", "Max executions"),
      input("circuit_breaker.time_window_hours", "number", "Time window (hours)")));
}

function renderYaml() {
  const area = document.getElementById("yaml");
  if (document.activeElement !== area) area.value = jsyaml.dump(cleaned(), { noRefs: true });
}

function changed() {
  renderYaml();
  clearTimeout(validateTimer);
  validateTimer = setTimeout(validate, 250);
}

// The saved workflow this draft edits: the server counts its masked secrets as the stored ones.
function editing() { return state.workflowId ? { workflow_id: state.workflowId } : {}; }

// Each message template rendered with an example failure's variables ({workflow_name} is the
// form's name), by the engine's own template code.
async function preview() {
  for (const node of document.querySelectorAll("[data-preview]")) {
    const template = getPath(node.dataset.preview);
    if (!template) { node.textContent = "(default message)"; continue; }
    const answer = await FG.api("POST", "/api/preview", { template, definition: cleaned() });
    node.textContent = answer.text ?? `✗ ${answer.problem}`;
  }
}

async function validate() {
  const result = await FG.api("POST", "/api/validate", { definition: cleaned(), ...editing() });
  for (const node of document.querySelectorAll(".invalid")) node.classList.remove("invalid");
  const box = document.getElementById("validation");
  FG.fill(box);
  if (!result.valid) {
    box.append(FG.el("ul", { class: "problems", "data-testid": "problems" },
      result.problems.map((p) => FG.el("li", {}, `${p.field}: ${p.message}`))));
    for (const p of result.problems) {
      const node = document.querySelector(`[data-path="${p.field}"]`)
        || document.querySelector(`[data-path^="${p.field}."]`);
      if (node) node.classList.add("invalid");
    }
  } else {
    box.append(FG.el("p", { class: "muted", "data-testid": "valid" }, `✓ valid (id ${result.id})`));
    if (result.warnings.length) {
      box.append(FG.el("ul", { class: "warnings" },
        result.warnings.map((w) => FG.el("li", {}, `${w.field}: ${w.message}`))));
    }
  }
  document.getElementById("save").disabled = !result.valid;
  document.getElementById("save-enable").disabled = !result.valid;
  await preview();
}

function yamlEdited(event) {
  const status = document.getElementById("yaml-status");
  try {
    const parsed = jsyaml.load(event.target.value);
    if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("not a mapping");
    state.def = normalize(parsed);
    status.textContent = "";
    renderForm();
    clearTimeout(validateTimer);
    validateTimer = setTimeout(validate, 250);
  } catch (error) {
    status.textContent = `YAML: ${error.message.split("\n")[0]}`;
  }
}

async function save(enable) {
  const definition = cleaned();
  definition.enabled = enable || state.enabled;
  const body = { definition, comment: document.getElementById("comment").value };
  const box = document.getElementById("validation");
  try {
    const result = state.workflowId
      ? await FG.api("PUT", `/api/workflows/${state.workflowId}`, { ...body, expected_version: state.version })
      : await FG.api("POST", "/api/workflows", body);
    location.href = `/ui/workflows/${result.workflow.id}?saved=${result.workflow.version}`;
  } catch (error) {
    FG.fill(box, FG.problemList(error));
  }
}

// Compare with live: the draft over a range of real events (POST /api/rehearse, the code
// `flowguard rehearse` runs) against what the live version of this workflow decided.
const TOTALS = [["executions", "Executions"], ["skipped", "Skipped"], ["retries", "Retries"],
  ["notifications", "Notifications"], ["pages", "Pages"], ["breaker_openings", "Breaker openings"]];

function comparePanel() {
  const results = FG.el("div", { "data-testid": "compare-results" });
  const hours = FG.el("input", { type: "number", value: "24", min: "0.1", max: "168", step: "any",
    "data-testid": "compare-hours" });
  const cluster = FG.el("input", { placeholder: "all clusters", "data-testid": "compare-cluster" });
  const run = async () => {
    const since = new Date(Date.now() - Number(hours.value) * 3600 * 1000).toISOString();
    const body = { definition: cleaned(), since, ...editing() };
    if (cluster.value.trim()) body.cluster = cluster.value.trim();
    FG.fill(results, FG.el("p", { class: "muted" }, "Reading events and the execution log…"));
    try {
      FG.fill(results, ...compareResults(await FG.api("POST", "/api/rehearse", body)));
    } catch (e) { FG.fill(results, FG.problemList(e)); }
  };
  return [
    FG.el("p", { class: "muted" }, "Run this draft over real events (nothing is sent) and compare "
      + "its decisions with what the live version decided on the same events. At most 168 "
      + "hours; for longer ranges or a CI gate, use flowguard rehearse."),
    FG.el("div", { class: "grid" },
      FG.el("div", {}, FG.el("label", {}, "The last N hours"), hours),
      FG.el("div", {}, FG.el("label", {}, "Cluster"), cluster)),
    FG.el("p", {}, FG.el("button", { type: "button", onclick: run, "data-testid": "run-compare" },
      "Compare")),
    results,
  ];
}

function signed(n) { return n > 0 ? `+${n}` : String(n); }

function compareResults(r) {
  const example = (d) => `${FG.when(d.at)} ${d.subject}: ${d.verdict}`
    + `${d.actions.length ? ` (${d.actions.join(", ")})` : ""}${d.breaker_opened ? ", breaker opened" : ""}`;
  const list = (name, sign, count, items, text) => (items.length ? [
    FG.el("h3", {}, `${name} (${items.length} of ${count})`),
    FG.el("ul", { "data-testid": `compare-${name}` }, items.map((i) => FG.el("li", {}, `${sign} ${text(i)}`))),
  ] : []);
  return [
    FG.el("p", { "data-testid": "compare-summary" },
      `${r.workflow_id}, triggers from ${FG.when(r.since)} to ${FG.when(r.until)}: `,
      FG.el("b", {}, `${r.added} added, ${r.removed} removed, ${r.changed} changed`),
      `, ${r.unchanged} unchanged`),
    FG.el("table", { "data-testid": "compare-totals" },
      FG.el("thead", {}, FG.el("tr", {}, ["", "Live", "Draft", "Diff"].map((h) => FG.el("th", {}, h)))),
      FG.el("tbody", {}, TOTALS.map(([key, label]) => FG.el("tr", { "data-total": key },
        FG.el("td", {}, label), FG.el("td", {}, String(r.live[key])),
        FG.el("td", {}, String(r.draft[key])), FG.el("td", {}, signed(r.draft[key] - r.live[key])))))),
    r.hours.length ? FG.el("h3", {}, "Per hour (live → draft)") : null,
    r.hours.length ? FG.el("table", { "data-testid": "compare-hours-table" },
      FG.el("thead", {}, FG.el("tr", {}, ["Hour", "Executions", "Added", "Removed", "Changed",
        "Retries", "Notifications", "Pages", "Breaker openings"].map((h) => FG.el("th", {}, h)))),
      FG.el("tbody", {}, r.hours.map((h) => FG.el("tr", { "data-hour": h.hour },
        FG.el("td", {}, FG.when(h.hour)),
        FG.el("td", {}, `${h.live.executions} → ${h.draft.executions}`),
        FG.el("td", {}, String(h.added)), FG.el("td", {}, String(h.removed)),
        FG.el("td", {}, String(h.changed)),
        ...["retries", "notifications", "pages", "breaker_openings"].map((k) =>
          FG.el("td", {}, `${h.live[k]} → ${h.draft[k]}`)))))) : null,
    ...list("added", "+", r.added, r.examples.added, example),
    ...list("removed", "−", r.removed, r.examples.removed, example),
    ...list("changed", "~", r.changed, r.examples.changed,
      (c) => `${example(c.live)} ⇒ ${c.draft.verdict}${c.draft.actions.length ? ` (${c.draft.actions.join(", ")})` : ""} [${c.fields.join(", ")}]`),
  ];
}

function editorPage(title) {
  return [
    FG.el("h1", {}, title),
    FG.el("div", { class: "split" },
      FG.el("div", { class: "card", id: "form", "data-testid": "form" }),
      FG.el("div", { class: "card" },
        FG.el("h2", {}, "YAML"),
        FG.el("textarea", { id: "yaml", rows: 30, "data-testid": "yaml", oninput: yamlEdited }),
        FG.el("p", { id: "yaml-status", class: "problems" }),
        FG.el("div", { id: "validation" }),
        FG.el("label", {}, "Comment (kept with the version)"),
        FG.el("input", { id: "comment", style: "width:100%" }),
        FG.el("div", { class: "row" },
          FG.el("button", { id: "save", type: "button", class: "secondary", onclick: () => save(false) }, "Save"),
          FG.el("button", { id: "save-enable", type: "button", onclick: () => save(true) }, "Save and Enable")),
        FG.el("p", { class: "muted", "data-testid": "save-note" }, state.workflowId
          ? `Save keeps it ${state.enabled ? "enabled" : "disabled"}; Save and Enable starts it.`
          : "Save keeps the new workflow disabled; Save and Enable starts it at once."))),
    FG.el("div", { class: "card", "data-testid": "draft-test" },
      FG.el("h2", {}, "Test Workflow (this draft, before saving or enabling it)"),
      ...FG.testPanel(() => ({ definition: cleaned(), ...editing() }))),
    FG.el("div", { class: "card", "data-testid": "compare" },
      FG.el("h2", {}, "Compare with live"), ...comparePanel()),
  ];
}

function start(def, title) {
  state.def = normalize(def);
  FG.fill(document.getElementById("main"), ...editorPage(title));
  renderForm();
  changed();
}

async function pickTemplate() {
  const templates = await FG.api("GET", "/api/templates");
  const main = document.getElementById("main");
  FG.fill(main, FG.el("h1", {}, "Create Workflow"),
    FG.el("p", { class: "muted" }, "Start from one of the product page's templates, or blank."),
    FG.el("div", { class: "grid" },
      templates.map((t) => FG.el("div", { class: "card", "data-template": t.slug },
        FG.el("h2", {}, t.name), FG.el("pre", {}, t.yaml),
        FG.el("button", { type: "button", onclick: () => start(t.definition, `New: ${t.name}`) },
          "Use this template"))),
      FG.el("div", { class: "card", "data-template": "blank" }, FG.el("h2", {}, "Blank"),
        FG.el("button", { type: "button", onclick: () => start({
          name: "", trigger: { event: "task.failed" }, actions: [{ ...NEW_ACTION.retry }],
        }, "New workflow") }, "Start blank"))));
}

(async () => {
  const me = await FG.header();
  if (!me) return;
  const match = location.pathname.match(/^\/ui\/workflows\/([^/]+)\/edit$/);
  if (match) {
    const detail = await FG.api("GET", `/api/workflows/${match[1]}`);
    state.workflowId = detail.id;
    state.version = detail.version;
    state.enabled = detail.enabled;
    start(detail.definition, `Edit: ${detail.name} (v${detail.version})`);
  } else {
    await pickTemplate();
  }
})();
