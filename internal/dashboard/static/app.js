// Tasker dashboard. Plain ES module, no dependencies: it talks to the REST
// API of the server that serves it, with the token the user signs in with
// (kept in sessionStorage, so only for this tab).

const TOKEN_KEY = "tasker.token";
const SVG = "http://www.w3.org/2000/svg";
const TASK_STATES = ["pending", "in_progress", "complete", "error", "cancelled", "resolved_manually"];
const STEP_STATES = ["pending", "in_progress", "waiting_for_retry", "complete", "error", "cancelled", "resolved_manually"];
const TERMINAL_STEP = new Set(["complete", "cancelled", "resolved_manually"]);

let me = null; // the signed-in principal (GET /v1/me)
let pageAbort = null; // aborts the current page's requests and streams

// ---------- DOM helpers ----------

// h builds an element: h("a", {href: "#"}, "text", child). Strings are
// text nodes, never HTML.
function h(tag, attrs, ...children) {
  const el = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.setAttribute("class", v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const $ = (id) => document.getElementById(id);
const view = () => $("view");

function badge(state) {
  return h("span", { class: `badge s-${state}`, "data-state": state }, state.replaceAll("_", " "));
}
function when(t) {
  if (!t) return "";
  const d = new Date(t);
  return isNaN(d) ? "" : d.toLocaleString();
}
function ago(t) {
  if (!t) return "";
  const s = Math.round((Date.now() - new Date(t)) / 1000);
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}
function duration(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)}m ${Math.round((ms % 60000) / 1000)}s`;
}
function json(v) {
  return h("pre", {}, v === undefined ? "" : JSON.stringify(v, null, 2));
}
function short(id) {
  return id ? id.slice(0, 8) + "…" + id.slice(-4) : "";
}
let statusTimer;
function say(msg, isError) {
  const el = $("status");
  el.textContent = msg;
  el.classList.toggle("error", !!isError);
  el.classList.add("show");
  clearTimeout(statusTimer);
  statusTimer = setTimeout(() => el.classList.remove("show"), 4000);
}

// ---------- API ----------

class APIError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.code = problem?.code;
  }
}

async function api(path, opts = {}) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) || ""}` };
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, {
    method: opts.method || "GET",
    headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    signal: opts.signal,
  });
  let data = null;
  const text = await res.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (res.status === 401 && !opts.noSignOut) {
    signOut("Your token is no longer accepted; sign in again.");
    throw new APIError(401, data);
  }
  if (!res.ok) throw new APIError(res.status, data);
  return data;
}

function can(perm) {
  return !!me && me.permissions.includes(perm);
}

// stream follows /v1/events/stream with fetch (EventSource cannot send the
// Authorization header), calling onEvent(event) for each event, and
// reconnects from the last event id until signal aborts.
async function stream(query, onEvent, signal) {
  let last = null;
  while (!signal.aborted) {
    try {
      const headers = { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) || ""}`, Accept: "text/event-stream" };
      if (last !== null) headers["Last-Event-ID"] = String(last);
      const res = await fetch(`/v1/events/stream${query}`, { headers, signal });
      if (res.status === 401) { signOut("Your token is no longer accepted; sign in again."); return; }
      if (!res.ok || !res.body) throw new Error(`stream: HTTP ${res.status}`);
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let id = null, data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("id: ")) id = line.slice(4);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (id !== null) last = id;
          if (data && id !== null) {
            try { onEvent(JSON.parse(data)); } catch (e) { console.error(e); }
          }
        }
      }
    } catch (e) {
      if (signal.aborted) return;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

// debounce runs fn at most once per ms, after the last call.
function debounce(fn, ms) {
  let t;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}

// ---------- confirmation ----------

// confirmAction asks before an action; with reason set, it asks for one
// (required when reason === "required"). It resolves to the reason, or
// null when cancelled.
function confirmAction(title, text, reason) {
  const dlg = $("confirm");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  const input = $("confirm-reason");
  input.value = "";
  input.required = reason === "required";
  input.hidden = !reason;
  $("confirm-reason-label").hidden = !reason;
  return new Promise((resolve) => {
    const done = (v) => {
      dlg.removeEventListener("close", onClose);
      $("confirm-cancel").removeEventListener("click", onCancel);
      resolve(v);
    };
    const onClose = () => done(dlg.returnValue === "ok" ? input.value.trim() : null);
    const onCancel = () => dlg.close("cancel");
    dlg.addEventListener("close", onClose);
    $("confirm-cancel").addEventListener("click", onCancel);
    dlg.returnValue = "";
    dlg.showModal();
    (reason ? input : $("confirm-ok")).focus();
  });
}

async function act(title, text, reason, call) {
  const r = await confirmAction(title, text, reason);
  if (r === null) return false;
  try {
    await call(r);
    say(`${title}: done`);
    return true;
  } catch (e) {
    say(`${title}: ${e.message}`, true);
    return false;
  }
}

// ---------- sign-in ----------

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  me = null;
  if (pageAbort) pageAbort.abort();
  $("top").hidden = true;
  view().replaceChildren();
  $("signin").hidden = false;
  $("signin-error").textContent = message || "";
  $("token").focus();
}

async function signIn(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
  try {
    me = await api("/v1/me", { noSignOut: true });
  } catch (e) {
    sessionStorage.removeItem(TOKEN_KEY);
    throw e;
  }
  $("signin").hidden = true;
  $("top").hidden = false;
  $("who").textContent = `${me.name} · ${me.role}${me.namespace ? " · " + me.namespace : ""}`;
}

// ---------- router ----------

const routes = [
  [/^#?\/?$/, overviewPage, "overview"],
  [/^#\/tasks\/([^/?]+)$/, taskPage, "tasks"],
  [/^#\/tasks(\?.*)?$/, tasksPage, "tasks"],
  [/^#\/templates\/([^/]+)\/([^/]+)\/([^/]+)$/, templatePage, "templates"],
  [/^#\/templates$/, templatesPage, "templates"],
  [/^#\/events(\?.*)?$/, eventsPage, "events"],
];

async function route() {
  if (!me) return;
  if (pageAbort) pageAbort.abort();
  pageAbort = new AbortController();
  $("status").classList.remove("show");
  const hash = location.hash || "#/";
  for (const [re, page, nav] of routes) {
    const m = hash.match(re);
    if (!m) continue;
    for (const a of document.querySelectorAll("nav a")) {
      if (a.dataset.nav === nav) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    view().replaceChildren(h("p", { class: "muted" }, "Loading…"));
    try {
      await page(pageAbort.signal, ...m.slice(1));
    } catch (e) {
      if (pageAbort.signal.aborted || e.name === "AbortError") return;
      view().replaceChildren(h("div", { class: "panel error", role: "alert" }, e.message));
    }
    return;
  }
  view().replaceChildren(h("div", { class: "panel" }, "No such page. ", h("a", { href: "#/" }, "Overview")));
}

function params(q) {
  return new URLSearchParams((q || "").replace(/^\?/, ""));
}

// ---------- overview ----------

async function overviewPage(signal) {
  const root = h("div", {});
  view().replaceChildren(h("h1", {}, "Overview"), root);
  const refresh = async () => {
    const [o, a, failed] = await Promise.all([
      api("/v1/overview", { signal }),
      api("/v1/analytics?window=24h&slowest=0", { signal }),
      api("/v1/tasks?state=error&limit=10", { signal }),
    ]);
    const card = (label, n, state) => h("div", { class: "card", "data-count": label }, h("div", { class: "n" }, n ?? 0),
      h("div", { class: "l" }, state ? badge(state) : label));
    root.replaceChildren(
      h("div", { class: "grid" },
        h("section", { class: "panel", "aria-labelledby": "h-tasks" }, h("h2", { id: "h-tasks" }, "Tasks by state"),
          h("div", { class: "cards", "data-testid": "task-counts" }, TASK_STATES.map((s) => card(s, o.tasks[s], s)))),
        h("section", { class: "panel", "aria-labelledby": "h-steps" }, h("h2", { id: "h-steps" }, "Steps by state"),
          h("div", { class: "cards" }, STEP_STATES.map((s) => card(s, o.steps[s], s)))),
        h("section", { class: "panel", "aria-labelledby": "h-queue" }, h("h2", { id: "h-queue" }, "Workers"),
          h("div", { class: "cards" },
            o.ready_steps !== undefined ? card("ready to run now", o.ready_steps) : null,
            card("leases rescued in the last hour", o.rescued_last_hour)))),
      h("section", { class: "panel chart", "aria-labelledby": "h-chart" },
        h("h2", { id: "h-chart" }, "Finished tasks, last 24 hours"), throughputChart(a.throughput),
        h("div", { class: "legend" }, h("span", {}, h("i", { class: "bar-ok" }), "completed"),
          h("span", {}, h("i", { class: "bar-failed" }), "failed"), h("span", {}, h("i", { class: "bar-cancelled" }), "cancelled"),
          h("span", {}, "— failure rate"))),
      h("section", { class: "panel", "aria-labelledby": "h-failed" }, h("h2", { id: "h-failed" }, "Recent failures"),
        failed.tasks.length === 0 ? h("p", { class: "muted" }, "No task is in error.") : taskTable(failed.tasks)),
    );
    for (const i of root.querySelectorAll(".legend i")) {
      i.style.background = getComputedStyle(document.documentElement).getPropertyValue(
        i.classList.contains("bar-ok") ? "--complete" : i.classList.contains("bar-failed") ? "--error" : "--cancelled");
    }
  };
  await refresh();
  const again = debounce(() => refresh().catch(() => {}), 1000);
  const timer = setInterval(again, 5000);
  signal.addEventListener("abort", () => clearInterval(timer));
  stream("?event=task.*", again, signal);
}

function throughputChart(buckets) {
  const W = 900, H = 200, pad = 28;
  const max = Math.max(1, ...buckets.map((b) => b.completed + b.failed + b.cancelled));
  const bw = (W - pad * 2) / Math.max(1, buckets.length);
  const svg = h("svg:svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img",
    "aria-label": `Tasks finished per ${buckets.length ? "bucket" : ""}: ${buckets.reduce((n, b) => n + b.completed, 0)} completed, ${buckets.reduce((n, b) => n + b.failed, 0)} failed` });
  svg.append(h("svg:line", { class: "axis", x1: pad, y1: H - pad, x2: W - pad, y2: H - pad }));
  svg.append(h("svg:text", { x: 2, y: pad }, String(max)));
  svg.append(h("svg:text", { x: 2, y: H - pad }, "0"));
  const rate = [];
  buckets.forEach((b, i) => {
    const x = pad + i * bw;
    let y = H - pad;
    for (const [n, cls] of [[b.completed, "bar-ok"], [b.failed, "bar-failed"], [b.cancelled, "bar-cancelled"]]) {
      const bh = (n / max) * (H - pad * 2);
      if (bh > 0) {
        y -= bh;
        svg.append(h("svg:rect", { class: cls, x: x + 1, y, width: Math.max(1, bw - 2), height: bh },
          h("svg:title", {}, `${new Date(b.start).toLocaleTimeString()}: ${n} ${cls.slice(4)}`)));
      }
    }
    const total = b.completed + b.failed;
    rate.push([x + bw / 2, H - pad - (total ? b.failed / total : 0) * (H - pad * 2)]);
    if (i % Math.ceil(buckets.length / 6) === 0) {
      svg.append(h("svg:text", { x, y: H - 8 }, new Date(b.start).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })));
    }
  });
  if (rate.length) svg.append(h("svg:polyline", { class: "rate", points: rate.map((p) => p.join(",")).join(" ") }));
  return svg;
}

function taskTable(tasks) {
  return h("div", { class: "scroll" }, h("table", { "data-testid": "task-table" },
    h("thead", {}, h("tr", {}, h("th", {}, "Task"), h("th", {}, "Template"), h("th", {}, "State"), h("th", {}, "Steps"),
      h("th", { class: "hide-narrow" }, "Created"))),
    h("tbody", {}, tasks.map((t) => h("tr", { "data-task": t.id },
      h("td", { class: "mono" }, h("a", { href: `#/tasks/${t.id}` }, short(t.id))),
      h("td", {}, `${t.namespace}/${t.name}@${t.version}`),
      h("td", {}, badge(t.state)),
      h("td", {}, `${t.steps_done}/${t.steps_total}`),
      h("td", { class: "hide-narrow", title: when(t.created_at) }, ago(t.created_at)))))));
}

// ---------- tasks ----------

async function tasksPage(signal, query) {
  const p = params(query);
  const form = h("form", { class: "filters", role: "search" },
    h("label", {}, "State", h("select", { name: "state" }, h("option", { value: "" }, "any"),
      TASK_STATES.map((s) => h("option", { value: s, selected: p.get("state") === s }, s.replaceAll("_", " "))))),
    h("label", {}, "Namespace", h("input", { name: "namespace", value: p.get("namespace") || "", size: 12 })),
    h("label", {}, "Template", h("input", { name: "name", value: p.get("name") || "", size: 12 })),
    h("label", {}, "Search", h("input", { name: "q", type: "search", value: p.get("q") || "", placeholder: "id, template, context", size: 18 })),
    h("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) q.set(k, v);
    location.hash = `#/tasks${q.toString() ? "?" + q : ""}`;
  });
  const list = h("div", {});
  view().replaceChildren(h("h1", {}, "Tasks"), h("div", { class: "panel" }, form, list));
  const load = async () => {
    const q = new URLSearchParams(p);
    q.set("limit", "25");
    const page = await api(`/v1/tasks?${q}`, { signal });
    const pager = h("div", { class: "pager" });
    if (p.get("cursor")) {
      const first = new URLSearchParams(p);
      first.delete("cursor");
      pager.append(h("a", { href: `#/tasks?${first}` }, "First page"));
    }
    if (page.next_cursor) {
      const next = new URLSearchParams(p);
      next.set("cursor", page.next_cursor);
      pager.append(h("a", { href: `#/tasks?${next}` }, "Next page"));
    }
    list.replaceChildren(page.tasks.length ? taskTable(page.tasks) : h("p", { class: "muted" }, "No task matches."), pager);
  };
  const ov = await api("/v1/overview", { signal }); // before the list: no change falls in between
  await load();
  const again = debounce(() => load().catch(() => {}), 500);
  stream(`?event=task.*&after=${ov.event_cursor}`, again, signal);
}

// ---------- task ----------

async function taskPage(signal, id) {
  // The audit trail first, then the task: the task is then at least as new
  // as the trail, and the stream below starts after the trail's last entry,
  // so no change falls between the two.
  let transitions = (await api(`/v1/tasks/${encodeURIComponent(id)}/transitions`, { signal })).transitions;
  let { task, summary } = await api(`/v1/tasks/${encodeURIComponent(id)}`, { signal });
  const { template } = await api(`/v1/templates/${task.namespace}/${task.name}/${task.version}`, { signal });
  let selected = null;

  const head = h("div", {});
  const dagBox = h("div", { class: "dag", "data-testid": "dag" });
  const stepBox = h("div", {});
  const timelineBox = h("div", { class: "timeline" });
  const auditBox = h("div", { class: "scroll" });
  view().replaceChildren(head,
    h("div", { class: "grid" },
      h("section", { class: "panel", "aria-labelledby": "h-dag" }, h("h2", { id: "h-dag" }, "Steps"), dagBox,
        h("p", { class: "hint" }, "Select a step (click, or Tab and Enter) to see its result, error and actions.")),
      h("section", { class: "panel", "aria-labelledby": "h-step" }, h("h2", { id: "h-step" }, "Step"), stepBox)),
    h("section", { class: "panel", "aria-labelledby": "h-time" }, h("h2", { id: "h-time" }, "Attempts"), timelineBox),
    h("section", { class: "panel", "aria-labelledby": "h-audit" }, h("h2", { id: "h-audit" }, "Audit trail"), auditBox),
    h("section", { class: "panel", "aria-labelledby": "h-ctx" }, h("h2", { id: "h-ctx" }, "Context"), json(task.context)));

  const dag = drawDAG(template, (name) => { selected = name; renderStep(); dag.select(name); });

  const renderHead = () => {
    const actions = h("div", { class: "actions", "data-testid": "task-actions" });
    const reload = () => refresh();
    if (can("tasks:cancel") && (task.state === "pending" || task.state === "in_progress")) {
      actions.append(h("button", { class: "danger", "data-action": "cancel-task", onclick: () =>
        act("Cancel task", `Cancel task ${task.id} and its unfinished steps?`, "optional",
          (r) => api(`/v1/tasks/${task.id}/cancel`, { method: "POST", body: r ? { reason: r } : {} })).then(reload) }, "Cancel task"));
    }
    if (can("tasks:retry") && task.state === "error") {
      actions.append(h("button", { "data-action": "retry-task", onclick: () =>
        act("Retry task", "Reset every failed step with a fresh retry budget and run the task again?", "optional",
          (r) => api(`/v1/tasks/${task.id}/retry`, { method: "POST", body: r ? { reason: r } : {} })).then(reload) }, "Retry failed steps"));
    }
    if (can("tasks:resolve") && task.state === "error") {
      actions.append(h("button", { class: "secondary", "data-action": "resolve-task", onclick: () =>
        act("Resolve task", "Close this task as resolved by hand? Nothing runs again.", "required",
          (r) => api(`/v1/tasks/${task.id}/resolve`, { method: "POST", body: { reason: r } })).then(reload) }, "Resolve task by hand"));
    }
    head.replaceChildren(
      h("h1", {}, `${task.namespace}/${task.name}@${task.version} `, badge(task.state)),
      h("dl", { class: "kv" },
        h("dt", {}, "Task"), h("dd", { class: "mono" }, task.id),
        h("dt", {}, "Progress"), h("dd", { "data-testid": "progress" }, `${task.steps_done} of ${task.steps_total} steps done (${summary.completion_percent}%)`),
        h("dt", {}, "Created"), h("dd", {}, when(task.created_at)),
        task.finished_at ? [h("dt", {}, "Finished"), h("dd", {}, when(task.finished_at))] : null,
        task.idempotency_key ? [h("dt", {}, "Idempotency key"), h("dd", { class: "mono" }, task.idempotency_key)] : null),
      actions);
  };

  const renderStep = () => {
    const st = task.steps.find((s) => s.name === selected);
    if (!st) { stepBox.replaceChildren(h("p", { class: "muted" }, "No step selected.")); return; }
    const def = template.step_list.find((s) => s.name === st.name);
    const actions = h("div", { class: "actions", "data-testid": "step-actions" });
    if (can("steps:reset") && st.state === "error") {
      actions.append(h("button", { "data-action": "reset-step", onclick: () =>
        act("Reset step", `Give step ${st.name} a fresh retry budget and run it again?`, "optional",
          (r) => api(`/v1/steps/${st.id}/reset`, { method: "POST", body: r ? { reason: r } : {} })).then(() => refresh()) }, "Reset step"));
    }
    if (can("steps:resolve") && ["error", "pending", "waiting_for_retry"].includes(st.state)) {
      actions.append(h("button", { class: "secondary", "data-action": "resolve-step", onclick: () =>
        act("Resolve step", `Mark step ${st.name} as done by hand, so that its dependents run?`, "required",
          (r) => api(`/v1/steps/${st.id}/resolve`, { method: "POST", body: { reason: r } })).then(() => refresh()) }, "Resolve step by hand"));
    }
    if (can("steps:cancel") && !TERMINAL_STEP.has(st.state) && st.state !== "error") {
      actions.append(h("button", { class: "danger", "data-action": "cancel-step", onclick: () =>
        act("Cancel step", `Cancel step ${st.name}?`, "optional",
          (r) => api(`/v1/steps/${st.id}/cancel`, { method: "POST", body: r ? { reason: r } : {} })).then(() => refresh()) }, "Cancel step"));
    }
    stepBox.replaceChildren(h("div", { "data-testid": "step", "data-step": st.name },
      h("h3", {}, st.name, " ", badge(st.state)),
      h("dl", { class: "kv" },
        h("dt", {}, "Handler"), h("dd", {}, st.handler),
        h("dt", {}, "Attempts"), h("dd", {}, `${st.attempts} of ${st.retry_limit}`),
        def ? [h("dt", {}, "Retry"), h("dd", {}, `limit ${def.retry.limit}, backoff ${def.retry.initial} ×${def.retry.multiplier} up to ${def.retry.max}; timeout ${def.timeout}`)] : null,
        st.next_attempt_at ? [h("dt", {}, "Next attempt"), h("dd", {}, when(st.next_attempt_at))] : null,
        st.lease_owner ? [h("dt", {}, "Running on"), h("dd", { class: "mono" }, st.lease_owner)] : null),
      actions,
      st.last_error ? [h("h4", {}, `Last error (${st.error_class || "error"})`), h("pre", { class: "error" }, st.last_error)] : null,
      st.results !== undefined ? [h("h4", {}, "Result"), json(st.results)] : null));
  };

  const renderTimeline = () => timelineBox.replaceChildren(drawTimeline(task, transitions));
  const renderAudit = () => auditBox.replaceChildren(h("table", { "data-testid": "audit" },
    h("thead", {}, h("tr", {}, h("th", {}, "Time"), h("th", {}, "Entity"), h("th", {}, "Transition"), h("th", {}, "Event"), h("th", {}, "Details"))),
    h("tbody", {}, transitions.map((tr) => h("tr", {},
      h("td", { class: "mono" }, new Date(tr.occurred_at).toLocaleTimeString([], { hour12: false }) + "." + String(new Date(tr.occurred_at).getMilliseconds()).padStart(3, "0")),
      h("td", {}, tr.step_name || "task"),
      h("td", {}, `${tr.from_state || "(new)"} → ${tr.to_state}`),
      h("td", { class: "mono" }, tr.event),
      h("td", {}, details(tr.metadata)))))));

  const render = () => {
    renderHead();
    dag.update(task.steps);
    renderStep();
    renderTimeline();
    renderAudit();
  };
  const refresh = async () => {
    const tr = await api(`/v1/tasks/${task.id}/transitions`, { signal });
    const r = await api(`/v1/tasks/${task.id}`, { signal });
    transitions = tr.transitions;
    task = r.task; summary = r.summary;
    render();
  };
  dagBox.append(dag.svg);
  render();
  const again = debounce(() => refresh().catch(() => {}), 150);
  const cursor = transitions.length ? Math.max(...transitions.map((t) => t.cursor)) : 0;
  stream(`?task_id=${task.id}&after=${cursor}`, again, signal);
}

function details(m) {
  if (!m) return "";
  const parts = [];
  if (m.attempt) parts.push(`attempt ${m.attempt}${m.retry_limit ? "/" + m.retry_limit : ""}`);
  if (m.worker) parts.push(`on ${m.worker}`);
  if (m.duration_ms !== undefined && m.duration_ms !== 0) parts.push(duration(m.duration_ms));
  if (m.actor) parts.push(`by ${m.actor}`);
  if (m.reason) parts.push(`reason: ${m.reason}`);
  if (m.error) parts.push(`${m.error_class || "error"}: ${m.error.split("\n")[0].slice(0, 160)}`);
  return parts.join("; ");
}

// drawDAG lays the template's steps out by level (columns) and returns
// {svg, update(steps), select(name)}. Nodes carry data-step and
// data-state.
function drawDAG(template, onSelect) {
  const colW = 190, rowH = 64, nodeW = 150, nodeH = 44, pad = 16;
  const pos = {};
  template.levels.forEach((names, lvl) => names.forEach((n, i) => { pos[n] = { x: pad + lvl * colW, y: pad + i * rowH }; }));
  const W = pad * 2 + Math.max(1, template.levels.length) * colW - (colW - nodeW);
  const H = pad * 2 + Math.max(1, ...template.levels.map((l) => l.length)) * rowH - (rowH - nodeH);
  const svg = h("svg:svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "group", "aria-label": "Steps and their dependencies" });
  for (const s of template.step_list) {
    for (const d of s.depends_on) {
      const a = pos[d], b = pos[s.name];
      const x1 = a.x + nodeW, y1 = a.y + nodeH / 2, x2 = b.x, y2 = b.y + nodeH / 2, mx = (x1 + x2) / 2;
      svg.append(h("svg:path", { class: "edge", d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}` }));
    }
  }
  const nodes = {};
  for (const s of template.step_list) {
    const p = pos[s.name];
    const label = s.name.length > 20 ? s.name.slice(0, 19) + "…" : s.name;
    const rect = h("svg:rect", { x: p.x, y: p.y, width: nodeW, height: nodeH, class: "fill-template" });
    const state = h("svg:text", { x: p.x + 10, y: p.y + 36, class: "state" }, s.handler);
    const g = h("svg:g", { class: "node", tabindex: onSelect ? 0 : undefined, role: onSelect ? "button" : undefined, "data-step": s.name,
      "aria-label": `step ${s.name}` },
      h("svg:title", {}, `${s.name} (${s.handler})`), rect, h("svg:text", { x: p.x + 10, y: p.y + 19 }, label), state);
    if (onSelect) {
      g.addEventListener("click", () => onSelect(s.name));
      g.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); onSelect(s.name); } });
    }
    nodes[s.name] = { g, rect, state };
    svg.append(g);
  }
  return {
    svg,
    update(steps) {
      for (const st of steps) {
        const n = nodes[st.name];
        if (!n) continue;
        n.rect.setAttribute("class", `fill-${st.state}`);
        n.g.setAttribute("data-state", st.state);
        n.g.setAttribute("aria-label", `step ${st.name}: ${st.state.replaceAll("_", " ")}`);
        n.state.textContent = st.state.replaceAll("_", " ") + (st.attempts > 1 ? ` · ${st.attempts} attempts` : "");
      }
    },
    select(name) {
      for (const [k, n] of Object.entries(nodes)) n.g.classList.toggle("selected", k === name);
    },
  };
}

// drawTimeline draws, per step, the time spent in each state from the
// audit trail: waiting (pending), running, backing off before a retry.
function drawTimeline(task, transitions) {
  const colors = { pending: "--pending", in_progress: "--running", waiting_for_retry: "--retry" };
  const css = getComputedStyle(document.documentElement);
  const t0 = new Date(task.created_at).getTime();
  const end = task.finished_at ? new Date(task.finished_at).getTime() : Date.now();
  const span = Math.max(1, end - t0);
  const byStep = new Map(task.steps.map((s) => [s.name, []]));
  for (const tr of transitions) if (tr.step_name && byStep.has(tr.step_name)) byStep.get(tr.step_name).push(tr);
  const labelW = 150, W = 900, rowH = 22, pad = 6;
  const H = pad * 2 + byStep.size * rowH + 20;
  const svg = h("svg:svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img", "aria-label": `Attempts of each step over ${duration(span)}` });
  let row = 0;
  for (const [name, trs] of byStep) {
    const y = pad + row * rowH;
    svg.append(h("svg:text", { x: 0, y: y + 14 }, name.length > 22 ? name.slice(0, 21) + "…" : name));
    trs.forEach((tr, i) => {
      const color = colors[tr.to_state];
      if (!color) return;
      const from = new Date(tr.occurred_at).getTime();
      const to = i + 1 < trs.length ? new Date(trs[i + 1].occurred_at).getTime() : end;
      const x = labelW + ((from - t0) / span) * (W - labelW - 4);
      const w = Math.max(2, ((to - from) / span) * (W - labelW - 4));
      svg.append(h("svg:rect", { x, y: y + 3, width: w, height: rowH - 8, rx: 3, fill: css.getPropertyValue(color).trim() },
        h("svg:title", {}, `${name}: ${tr.to_state.replaceAll("_", " ")} for ${duration(to - from)}${tr.metadata?.attempt ? ", attempt " + tr.metadata.attempt : ""}`)));
    });
    row++;
  }
  svg.append(h("svg:line", { class: "axis", x1: labelW, y1: H - 18, x2: W - 4, y2: H - 18 }));
  svg.append(h("svg:text", { x: labelW, y: H - 4 }, "0"));
  svg.append(h("svg:text", { x: W - 80, y: H - 4 }, duration(span)));
  const legend = h("div", { class: "legend" }, Object.entries({ waiting: "--pending", running: "--running", "backing off": "--retry" })
    .map(([l, c]) => h("span", {}, h("i", {}), l)));
  legend.querySelectorAll("i").forEach((i, k) => { i.style.background = css.getPropertyValue(["--pending", "--running", "--retry"][k]); });
  return h("div", {}, svg, legend);
}

// ---------- templates ----------

async function templatesPage(signal) {
  const { templates } = await api("/v1/templates", { signal });
  view().replaceChildren(h("h1", {}, "Templates"), h("div", { class: "panel scroll" },
    templates.length === 0 ? h("p", { class: "muted" }, "No template is registered.") :
      h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Template"), h("th", {}, "Version"), h("th", {}, "Steps"), h("th", { class: "hide-narrow" }, "Description"))),
        h("tbody", {}, templates.map((t) => h("tr", {},
          h("td", {}, h("a", { href: `#/templates/${t.namespace}/${t.name}/${t.version}` }, `${t.namespace}/${t.name}`)),
          h("td", {}, t.version), h("td", {}, t.steps), h("td", { class: "hide-narrow" }, t.description || "")))))));
}

async function templatePage(signal, ns, name, version) {
  const { template } = await api(`/v1/templates/${ns}/${name}/${version}`, { signal });
  const dag = drawDAG(template, null);
  view().replaceChildren(h("div", {},
    h("h1", {}, `${template.namespace}/${template.name}@${template.version}`),
    template.description ? h("p", {}, template.description) : null,
    h("section", { class: "panel" }, h("h2", {}, "DAG"), h("div", { class: "dag" }, dag.svg)),
    h("section", { class: "panel scroll" }, h("h2", {}, "Steps"), h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "Step"), h("th", {}, "Handler"), h("th", {}, "Depends on"), h("th", {}, "Retry"), h("th", {}, "Timeout"))),
      h("tbody", {}, template.step_list.map((s) => h("tr", {},
        h("td", {}, s.name), h("td", {}, s.handler), h("td", {}, s.depends_on.join(", ") || "—"),
        h("td", {}, s.retryable ? `${s.retry.limit} attempts, ${s.retry.initial} ×${s.retry.multiplier} ≤ ${s.retry.max}, jitter ${s.retry.jitter}` : "not retryable"),
        h("td", {}, s.timeout)))))),
    template.context_schema ? h("section", { class: "panel" }, h("h2", {}, "Context schema"), json(template.context_schema)) : null,
    template.events.length ? h("section", { class: "panel" }, h("h2", {}, "Custom events"),
      h("ul", {}, template.events.map((e) => h("li", {}, h("code", {}, e.name), e.description ? ` — ${e.description}` : "")))) : null));
}

// ---------- events ----------

async function eventsPage(signal, query) {
  const p = params(query);
  const form = h("form", { class: "filters", role: "search" },
    h("label", {}, "Events", h("input", { name: "event", value: p.get("event") || "", placeholder: "task.*,step.failed", size: 20 })),
    h("label", {}, "Namespace", h("input", { name: "namespace", value: p.get("namespace") || "", size: 12 })),
    h("label", {}, "Task id", h("input", { name: "task_id", value: p.get("task_id") || "", size: 20 })),
    h("button", { type: "submit" }, "Follow"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) q.set(k, v.trim());
    location.hash = `#/events${q.toString() ? "?" + q : ""}`;
  });
  const body = h("tbody", {});
  const count = h("span", { class: "muted" }, "Waiting for events…");
  view().replaceChildren(h("h1", {}, "Events"), h("div", { class: "panel" }, form, count,
    h("div", { class: "tail scroll" }, h("table", { "data-testid": "events" },
      h("thead", {}, h("tr", {}, h("th", {}, "Cursor"), h("th", {}, "Time"), h("th", {}, "Event"), h("th", {}, "Task"), h("th", {}, "Step"), h("th", {}, "Details"))),
      body))));
  const ov = await api("/v1/overview", { signal });
  const q = new URLSearchParams();
  for (const k of ["event", "namespace", "task_id"]) if (p.get(k)) q.set(k, p.get(k));
  q.set("after", String(Math.max(0, ov.event_cursor - 50)));
  let n = 0;
  stream(`?${q}`, (ev) => {
    n++;
    count.textContent = `${n} events`;
    body.prepend(h("tr", {},
      h("td", { class: "mono" }, ev.cursor),
      h("td", {}, new Date(ev.occurred_at).toLocaleTimeString([], { hour12: false })),
      h("td", { class: "mono" }, ev.name),
      h("td", { class: "mono" }, h("a", { href: `#/tasks/${ev.task_id}` }, short(ev.task_id))),
      h("td", {}, ev.step_name || ""),
      h("td", {}, [ev.to_state ? `${ev.from_state || "(new)"} → ${ev.to_state}` : "", ev.error_message ? ` ${ev.error_message.slice(0, 120)}` : "",
        ev.data && !ev.to_state ? JSON.stringify(ev.data).slice(0, 160) : ""].join(""))));
    while (body.children.length > 500) body.lastChild.remove();
  }, signal);
}

// ---------- start ----------

$("signin-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const token = $("token").value.trim();
  try {
    await signIn(token);
    $("token").value = "";
    route();
  } catch (err) {
    $("signin-error").textContent = err.status === 401 ? "This token is not accepted." : err.message;
  }
});
$("signout").addEventListener("click", () => signOut(""));
window.addEventListener("hashchange", route);

(async () => {
  if (sessionStorage.getItem(TOKEN_KEY)) {
    try {
      await signIn(sessionStorage.getItem(TOKEN_KEY));
      route();
      return;
    } catch { /* fall through to the sign-in form */ }
  }
  signOut("");
})();
