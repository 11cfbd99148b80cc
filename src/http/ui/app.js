// Warren's management UI: one ES module, no framework, no build step. Talks only to the
// management API (/api/...), renders with DOM calls (never innerHTML, so no name from the broker
// can inject markup), routes on the hash like RabbitMQ's UI (#/queues/%2F/name).

import { renderChart } from "./chart.js";

const REFRESH_MS = 5000;
const HISTORY_MS = 10 * 60 * 1000;
const AUTH_KEY = "warren-auth";
const MANAGEMENT_TAGS = ["management", "policymaker", "monitoring", "administrator"];

// ---------- small DOM helpers ----------

function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

const enc = encodeURIComponent;
const main = () => document.getElementById("main");

let flashedAt = 0;

function flash(message, kind) {
  const box = document.getElementById("flash");
  box.className = kind || "error";
  box.textContent = message;
  flashedAt = Date.now();
}
function clearFlash() {
  flash("", "");
}

function fmtNum(v) {
  if (v === undefined || v === null) return "";
  if (typeof v !== "number") return String(v);
  return Number.isInteger(v) ? v.toLocaleString("en") : v.toFixed(1);
}
function get(obj, path) {
  return path.split(".").reduce((o, k) => (o == null ? undefined : o[k]), obj);
}
function rate(obj, key) {
  const v = get(obj, `message_stats.${key}_details.rate`);
  return v === undefined ? "" : `${v.toFixed(1)}/s`;
}

// ---------- the API ----------

class ApiError extends Error {
  constructor(status, reason) {
    super(`${status}: ${reason}`);
    this.status = status;
    this.reason = reason;
  }
}

function credentials() {
  return sessionStorage.getItem(AUTH_KEY);
}

async function api(method, path, body, extraHeaders) {
  const headers = { "X-Requested-With": "XMLHttpRequest", ...(extraHeaders || {}) };
  const auth = credentials();
  if (auth) headers.Authorization = `Basic ${auth}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  // Absolute, from the origin: a page opened as http://user:pass@host/ has those credentials in
  // its base URL, and fetch refuses a URL that carries credentials.
  const response = await fetch(new URL(`/api/${path}`, location.origin), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    let reason = response.statusText || "request failed";
    if (data && (data.reason || data.error)) reason = data.reason || data.error;
    if (response.status === 401 && method === "GET" && path === "whoami") throw new ApiError(401, reason);
    throw new ApiError(`${response.status} ${response.statusText}`.trim(), reason);
  }
  return data;
}

// Runs an action from a button or form; shows its error (the API's reason) or its success.
async function act(what, success) {
  try {
    const result = await what();
    if (success) flash(typeof success === "function" ? success(result) : success, "ok");
    return result;
  } catch (e) {
    flash(e.message || String(e), "error");
    return undefined;
  }
}

// ---------- login ----------

let me = null;

function base64(text) {
  const bytes = new TextEncoder().encode(text);
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

function isManagementUser(user) {
  return (user.tags || []).some((t) => MANAGEMENT_TAGS.includes(t));
}

function showLogin(message) {
  me = null;
  stopRefresh();
  document.getElementById("nav").hidden = true;
  document.getElementById("who").hidden = true;
  // This browser logs in with the form from now on: the page stops asking for Basic credentials.
  document.cookie = "warren_ui=form; path=/; SameSite=Strict";
  const error = h("p", { class: "error-text", role: "alert", id: "login-error" }, message || "");
  const form = h(
    "form",
    { class: "box login", id: "login-form" },
    h("h1", {}, "Log in"),
    h("label", {}, h("span", {}, "Username"), h("input", { type: "text", name: "username", id: "login-username", autocomplete: "username", required: true })),
    h("label", {}, h("span", {}, "Password"), h("input", { type: "password", name: "password", id: "login-password", autocomplete: "current-password" })),
    error,
    h("button", { type: "submit", class: "primary", id: "login-submit" }, "Log in"),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const user = form.username.value;
    const auth = base64(`${user}:${form.password.value}`);
    sessionStorage.setItem(AUTH_KEY, auth);
    try {
      const who = await api("GET", "whoami");
      if (!isManagementUser(who)) throw new Error("Not management user");
      loggedIn(who);
    } catch (e) {
      sessionStorage.removeItem(AUTH_KEY);
      // The API's reason: "Login failed", or "Not management user" for a user without a tag.
      error.textContent = e.reason || e.message;
    }
  });
  main().replaceChildren(form);
  form.username.focus();
}

function loggedIn(who) {
  me = who;
  document.getElementById("nav").hidden = false;
  document.getElementById("who").hidden = false;
  document.getElementById("who-name").textContent = `User: ${who.name}`;
  route();
}

async function boot() {
  document.getElementById("logout").addEventListener("click", () => {
    sessionStorage.removeItem(AUTH_KEY);
    clearFlash();
    showLogin();
  });
  window.addEventListener("hashchange", () => {
    if (me) route();
  });
  // Opened as http://user:pass@host/: the server handed those credentials over in a cookie.
  const handed = document.cookie
    .split(";")
    .map((c) => c.trim())
    .find((c) => c.startsWith("warren_ui_auth="));
  if (handed) {
    document.cookie = "warren_ui_auth=; path=/; max-age=0; SameSite=Strict";
    sessionStorage.setItem(AUTH_KEY, handed.slice("warren_ui_auth=".length));
  }
  if (!credentials()) return showLogin();
  try {
    const who = await api("GET", "whoami");
    if (!isManagementUser(who)) return showLogin("Not management user");
    loggedIn(who);
  } catch {
    sessionStorage.removeItem(AUTH_KEY);
    showLogin();
  }
}

// ---------- routing and refresh ----------

let refreshTimer = null;
let generation = 0;

function stopRefresh() {
  if (refreshTimer) clearInterval(refreshTimer);
  refreshTimer = null;
  generation += 1;
}

// Calls `update` now and every REFRESH_MS while the page is shown; a failed refresh shows its error.
function every(update) {
  const mine = generation;
  let busy = false;
  const tick = async () => {
    if (busy || mine !== generation) return;
    busy = true;
    try {
      await update(() => mine === generation);
    } catch (e) {
      if (e.status === 401) return showLogin("Session expired: log in again");
      if (mine === generation) flash(e.message || String(e), "error");
    } finally {
      busy = false;
    }
  };
  tick();
  refreshTimer = setInterval(tick, REFRESH_MS);
}

function route() {
  stopRefresh();
  // A message stays on the next page only when what led there just said it ("Queue deleted.").
  if (Date.now() - flashedAt > 1500) clearFlash();
  const hash = location.hash.replace(/^#\/?/, "");
  const parts = hash === "" ? [] : hash.split("/").map((p) => decodeURIComponent(p));
  const section = parts[0] || "";
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.section === section) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const pages = {
    "": overviewPage,
    queues: parts.length >= 3 ? () => queuePage(parts[1], parts.slice(2).join("/")) : queuesPage,
    exchanges: parts.length >= 3 ? () => exchangePage(parts[1], parts.slice(2).join("/")) : exchangesPage,
    connections: parts.length >= 2 ? () => connectionPage(parts.slice(1).join("/")) : connectionsPage,
    channels: channelsPage,
    consumers: consumersPage,
    users: usersPage,
    vhosts: vhostsPage,
    policies: policiesPage,
  };
  const page = pages[section];
  main().replaceChildren();
  if (!page) {
    main().append(h("h1", {}, "Not found"), h("p", {}, "No such page. ", h("a", { href: "#/" }, "Overview")));
    return;
  }
  page();
}

// ---------- reusable pieces ----------

function table(columns, rows, empty) {
  if (!rows.length) return h("p", { class: "muted" }, empty || "Nothing to show.");
  return h(
    "div",
    { class: "tablewrap" },
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.num ? "num" : "" }, c.label)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, columns.map((c) => h("td", { class: c.num ? "num" : "" }, c.render ? c.render(r) : fmtNum(get(r, c.key))))))),
    ),
  );
}

function props(pairs) {
  return h("dl", { class: "props" }, pairs.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function parseJsonField(text, what) {
  if (!text.trim()) return {};
  try {
    const v = JSON.parse(text);
    if (typeof v !== "object" || Array.isArray(v) || v === null) throw new Error();
    return v;
  } catch {
    throw new Error(`${what} must be a JSON object, e.g. {"x-max-length": 10}`);
  }
}

// A delete button that asks once more, inline (no browser dialog), before acting.
function confirmButton(label, id, action) {
  const wrap = h("span", {});
  const first = h("button", { type: "button", class: "danger", id }, label);
  first.addEventListener("click", () => {
    const yes = h("button", { type: "button", class: "danger", id: `${id}-confirm` }, `Yes, ${label.toLowerCase()}`);
    const no = h("button", { type: "button" }, "Cancel");
    yes.addEventListener("click", action);
    no.addEventListener("click", () => wrap.replaceChildren(first));
    wrap.replaceChildren(yes, " ", no);
    yes.focus();
  });
  wrap.append(first);
  return wrap;
}

function field(label, input) {
  return h("label", {}, h("span", {}, label), input);
}

async function vhostOptions(select) {
  const vhosts = await api("GET", "vhosts?columns=name");
  select.replaceChildren(...vhosts.map((v) => h("option", { value: v.name }, v.name)));
}

function link(section, vhost, name) {
  return h("a", { href: `#/${section}/${enc(vhost)}/${enc(name)}` }, name === "" ? "(AMQP default)" : name);
}

// A list backed by the API's paging: sort, filter (name + regex) and page happen on the server,
// so 10,000 objects stay quick.
function pagedList(container, options) {
  const state = { page: 1, page_size: 100, name: "", use_regex: false, sort: options.defaultSort || "", sort_reverse: false };
  const filter = h("input", { type: "text", id: `${options.id}-filter`, "aria-label": "Filter by name", placeholder: "Filter by name" });
  const regex = h("input", { type: "checkbox", id: `${options.id}-regex` });
  const size = h("select", { "aria-label": "Page size" }, [20, 100, 500].map((n) => h("option", { value: n, selected: n === 100 }, `${n} per page`)));
  const body = h("div", { id: `${options.id}-table` });
  const pager = h("div", { class: "pager" });
  let timer = null;
  filter.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      state.name = filter.value;
      state.page = 1;
      load();
    }, 250);
  });
  regex.addEventListener("change", () => {
    state.use_regex = regex.checked;
    state.page = 1;
    load();
  });
  size.addEventListener("change", () => {
    state.page_size = Number(size.value);
    state.page = 1;
    load();
  });
  container.append(
    h("div", { class: "toolbar" }, filter, h("label", {}, regex, " Regex"), size),
    body,
    pager,
  );

  async function load(alive) {
    const q = new URLSearchParams({ page: state.page, page_size: state.page_size, name: state.name, use_regex: state.use_regex, pagination: true });
    if (state.sort) {
      q.set("sort", state.sort);
      q.set("sort_reverse", state.sort_reverse);
    }
    if (options.columns) q.set("columns", options.columns.join(","));
    let data;
    try {
      data = await api("GET", `${options.path}?${q}`);
    } catch (e) {
      // A bad regex or a page past the end: say so and keep the last table.
      if (String(e.status).startsWith("400")) {
        if (state.page > 1) {
          state.page = 1;
          return load(alive);
        }
        flash(e.message, "error");
        return;
      }
      throw e;
    }
    if (alive && !alive()) return;
    if (data.page_count > 0 && state.page > data.page_count) {
      state.page = data.page_count;
      return load(alive);
    }
    const head = options.fields.map((f) => {
      const sorted = f.sort && f.sort === state.sort;
      const label = f.sort
        ? h("button", { type: "button", onclick: () => sortBy(f.sort) }, f.label)
        : f.label;
      return h("th", { class: f.num ? "num" : "", "aria-sort": sorted ? (state.sort_reverse ? "descending" : "ascending") : undefined }, label);
    });
    const rows = data.items.map((r) => h("tr", {}, options.fields.map((f) => h("td", { class: f.num ? "num" : "" }, f.render ? f.render(r) : fmtNum(get(r, f.key))))));
    body.replaceChildren(
      data.items.length
        ? h("div", { class: "tablewrap" }, h("table", {}, h("thead", {}, h("tr", {}, head)), h("tbody", {}, rows)))
        : h("p", { class: "muted" }, state.name ? "Nothing matches the filter." : "None yet."),
    );
    const prev = h("button", { type: "button", disabled: state.page <= 1 }, "‹ Previous");
    const next = h("button", { type: "button", disabled: state.page >= data.page_count }, "Next ›");
    prev.addEventListener("click", () => {
      state.page -= 1;
      load();
    });
    next.addEventListener("click", () => {
      state.page += 1;
      load();
    });
    pager.replaceChildren(
      prev,
      next,
      h("span", { id: `${options.id}-count` }, `Page ${data.page} of ${Math.max(data.page_count, 1)} · ${data.filtered_count} shown of ${data.total_count}`),
    );
  }
  function sortBy(key) {
    if (state.sort === key) state.sort_reverse = !state.sort_reverse;
    else {
      state.sort = key;
      state.sort_reverse = false;
    }
    load();
  }
  return load;
}

// ---------- overview ----------

const history = { rates: [], queued: [], objects: [] };

function remember(list, at, values) {
  list.push([at, values]);
  while (list.length && list[0][0] < at - HISTORY_MS) list.shift();
}
function series(list, keys) {
  return keys.map(([label, key]) => ({ label, points: list.map(([t, v]) => [t, v[key]]) }));
}

function overviewPage() {
  const m = main();
  const cards = h("div", { class: "cards", id: "overview-totals" });
  const charts = h("div", { class: "charts" });
  const queued = h("div", { class: "chart", id: "chart-queued" });
  const rates = h("div", { class: "chart", id: "chart-rates" });
  const objects = h("div", { class: "chart", id: "chart-objects" });
  charts.append(queued, rates, objects);
  const node = h("div", { class: "box", id: "overview-node" });
  m.append(h("h1", {}, "Overview"), cards, h("h2", {}, "Live (every 5 s)"), charts, h("h2", {}, "Node"), node, definitionsBox());
  every(async (alive) => {
    const o = await api("GET", "overview");
    if (!alive()) return;
    const t = Date.now();
    const qt = o.queue_totals || {};
    const ot = o.object_totals || {};
    const ms = o.message_stats || {};
    const r = (k) => (ms[`${k}_details`] ? ms[`${k}_details`].rate : 0);
    remember(history.rates, t, { publish: r("publish"), deliver: r("deliver_get"), ack: r("ack") });
    remember(history.queued, t, { ready: qt.messages_ready || 0, unacked: qt.messages_unacknowledged || 0 });
    remember(history.objects, t, { connections: ot.connections || 0, channels: ot.channels || 0 });
    const card = (n, l) => h("div", { class: "card" }, h("div", { class: "n" }, fmtNum(n || 0)), h("div", { class: "l" }, l));
    cards.replaceChildren(
      card(qt.messages_ready, "Ready"),
      card(qt.messages_unacknowledged, "Unacked"),
      card(qt.messages, "Total messages"),
      card(ot.connections, "Connections"),
      card(ot.channels, "Channels"),
      card(ot.exchanges, "Exchanges"),
      card(ot.queues, "Queues"),
      card(ot.consumers, "Consumers"),
    );
    renderChart(queued, "Queued messages", series(history.queued, [["Ready", "ready"], ["Unacked", "unacked"]]), HISTORY_MS);
    renderChart(rates, "Message rates", series(history.rates, [["Publish", "publish"], ["Deliver / get", "deliver"], ["Ack", "ack"]]), HISTORY_MS, "/s");
    renderChart(objects, "Connections and channels", series(history.objects, [["Connections", "connections"], ["Channels", "channels"]]), HISTORY_MS);
    node.replaceChildren(
      props([
        ["Node", o.node || ""],
        ["Cluster", o.cluster_name || ""],
        ["RabbitMQ version (compatible)", o.rabbitmq_version || ""],
        ["Warren version", o.product_version || ""],
        ["Listeners", (o.listeners || []).map((l) => `${l.protocol} ${l.ip_address}:${l.port}`).join(", ")],
      ]),
    );
  });
}

// Export and import of definitions (users, vhosts, permissions, policies, queues, exchanges,
// bindings) in RabbitMQ's JSON format.
function definitionsBox() {
  const download = h("button", { type: "button", id: "definitions-download" }, "Download broker definitions");
  download.addEventListener("click", () =>
    act(async () => {
      const defs = await api("GET", "definitions");
      const blob = new Blob([JSON.stringify(defs, null, 2)], { type: "application/json" });
      const a = h("a", { href: URL.createObjectURL(blob), download: `warren-definitions-${new Date().toISOString().slice(0, 10)}.json` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    }),
  );
  const file = h("input", { type: "file", accept: "application/json,.json", id: "definitions-file", "aria-label": "Definitions file" });
  const upload = h("form", { class: "toolbar" }, file, h("button", { type: "submit" }, "Upload definitions"));
  upload.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(async () => {
      if (!file.files.length) throw new Error("Choose a definitions file first.");
      let defs;
      try {
        defs = JSON.parse(await file.files[0].text());
      } catch {
        throw new Error("The file is not JSON.");
      }
      await api("POST", "definitions", defs);
    }, "Definitions imported.");
  });
  return h("div", { class: "box" }, h("h2", {}, "Definitions"), download, upload);
}

// ---------- queues ----------

function queuesPage() {
  const m = main();
  const list = h("div", {});
  m.append(h("h1", {}, "Queues"), list);
  const load = pagedList(list, {
    id: "queues",
    path: "queues",
    defaultSort: "name",
    columns: ["vhost", "name", "type", "durable", "auto_delete", "exclusive", "state", "messages_ready", "messages_unacknowledged", "messages", "consumers", "message_stats"],
    fields: [
      { label: "Virtual host", key: "vhost", sort: "vhost" },
      { label: "Name", sort: "name", render: (q) => link("queues", q.vhost, q.name) },
      { label: "Type", key: "type" },
      { label: "Features", render: (q) => [q.durable ? "D" : "", q.auto_delete ? "AD" : "", q.exclusive ? "Excl" : ""].filter(Boolean).join(" ") },
      { label: "State", key: "state" },
      { label: "Ready", key: "messages_ready", sort: "messages_ready", num: true },
      { label: "Unacked", key: "messages_unacknowledged", sort: "messages_unacknowledged", num: true },
      { label: "Total", key: "messages", sort: "messages", num: true },
      { label: "Consumers", key: "consumers", sort: "consumers", num: true },
      { label: "Incoming", render: (q) => rate(q, "publish"), num: true },
      { label: "Deliver / get", render: (q) => rate(q, "deliver_get"), num: true },
      { label: "Ack", render: (q) => rate(q, "ack"), num: true },
    ],
  });
  every(load);
  m.append(addQueueForm(load));
}

function addQueueForm(reload) {
  const vhost = h("select", { name: "vhost", id: "add-queue-vhost" });
  const form = h(
    "form",
    { class: "box", id: "add-queue" },
    h("h2", {}, "Add a queue"),
    field("Virtual host", vhost),
    field("Name", h("input", { type: "text", name: "name", id: "add-queue-name", required: true })),
    field("Durability", h("select", { name: "durable" }, h("option", { value: "true" }, "Durable"), h("option", { value: "false" }, "Transient"))),
    field("Auto delete", h("select", { name: "auto_delete" }, h("option", { value: "false" }, "No"), h("option", { value: "true" }, "Yes"))),
    field("Arguments (JSON)", h("textarea", { name: "arguments", placeholder: '{"x-max-length": 1000}' })),
    h("button", { type: "submit", class: "primary", id: "add-queue-submit" }, "Add queue"),
  );
  vhostOptions(vhost).catch((e) => flash(e.message));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const name = form.name.value;
    act(async () => {
      const body = { durable: form.durable.value === "true", auto_delete: form.auto_delete.value === "true", arguments: parseJsonField(form.arguments.value, "Arguments") };
      await api("PUT", `queues/${enc(vhost.value)}/${enc(name)}`, body);
      reload();
    }, `Queue '${name}' declared.`);
  });
  return form;
}

function publishForm(id, vhost, exchange, fixedRoutingKey) {
  const form = h(
    "form",
    { class: "box", id },
    h("h2", {}, "Publish a message"),
    fixedRoutingKey === undefined
      ? field("Routing key", h("input", { type: "text", name: "routing_key" }))
      : h("p", { class: "muted" }, `To this queue, through the default exchange (routing key '${fixedRoutingKey}').`),
    field("Delivery mode", h("select", { name: "delivery_mode" }, h("option", { value: "1" }, "1 - Non-persistent"), h("option", { value: "2" }, "2 - Persistent"))),
    field("Headers (JSON)", h("textarea", { name: "headers", placeholder: '{"x-trace": "1"}' })),
    field("Properties (JSON)", h("textarea", { name: "properties", placeholder: '{"content_type": "text/plain"}' })),
    field("Payload", h("textarea", { name: "payload", id: `${id}-payload` })),
    h("button", { type: "submit", class: "primary", id: `${id}-submit` }, "Publish message"),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(
      async () => {
        const properties = parseJsonField(form.properties.value, "Properties");
        properties.delivery_mode = Number(form.delivery_mode.value);
        const headers = parseJsonField(form.headers.value, "Headers");
        if (Object.keys(headers).length) properties.headers = headers;
        const body = {
          properties,
          routing_key: fixedRoutingKey === undefined ? form.routing_key.value : fixedRoutingKey,
          payload: form.payload.value,
          payload_encoding: "string",
        };
        return api("POST", `exchanges/${enc(vhost)}/${enc(exchange === "" ? "amq.default" : exchange)}/publish`, body);
      },
      (r) => (r.routed ? "Message published." : "Message published, but not routed."),
    );
  });
  return form;
}

function bindingRows(bindings, vhost, sideKey) {
  return table(
    [
      { label: sideKey === "source" ? "From" : "To", render: (b) => (b[sideKey] === "" ? "(AMQP default)" : link(b[sideKey] === b.source || b.destination_type === "exchange" ? "exchanges" : "queues", vhost, b[sideKey])) },
      { label: "Routing key", key: "routing_key" },
      { label: "Arguments", render: (b) => JSON.stringify(b.arguments || {}) },
      {
        label: "",
        render: (b) =>
          b.source === ""
            ? ""
            : h("button", {
                type: "button",
                onclick: () =>
                  act(async () => {
                    const kind = b.destination_type === "queue" ? "q" : "e";
                    await api("DELETE", `bindings/${enc(vhost)}/e/${enc(b.source)}/${kind}/${enc(b.destination)}/${enc(b.properties_key)}`);
                    route();
                  }, "Unbound."),
              }, "Unbind"),
      },
    ],
    bindings,
    "No bindings.",
  );
}

function queuePage(vhost, name) {
  const m = main();
  const path = `queues/${enc(vhost)}/${enc(name)}`;
  const details = h("div", { class: "box", id: "queue-details" });
  const charts = h("div", { class: "charts" });
  const queuedChart = h("div", { class: "chart", id: "queue-chart-queued" });
  const rateChart = h("div", { class: "chart", id: "queue-chart-rates" });
  charts.append(queuedChart, rateChart);
  const consumers = h("div", { id: "queue-consumers" });
  const bindings = h("div", { id: "queue-bindings" });
  const got = h("div", { id: "get-result" });
  const qhist = { queued: [], rates: [] };
  m.append(h("p", {}, h("a", { href: "#/queues" }, "‹ Queues")), h("h1", {}, `Queue ${name}`), h("p", { class: "muted" }, `Virtual host ${vhost}`), details, charts);

  const bindForm = h(
    "form",
    { class: "box", id: "queue-bind" },
    h("h3", {}, "Add a binding to this queue"),
    field("From exchange", h("input", { type: "text", name: "source", required: true })),
    field("Routing key", h("input", { type: "text", name: "routing_key" })),
    h("button", { type: "submit" }, "Bind"),
  );
  bindForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(async () => {
      await api("POST", `bindings/${enc(vhost)}/e/${enc(bindForm.source.value)}/q/${enc(name)}`, { routing_key: bindForm.routing_key.value, arguments: {} });
      route();
    }, "Bound.");
  });

  const getForm = h(
    "form",
    { class: "box", id: "queue-get" },
    h("h2", {}, "Get messages"),
    h("p", { class: "muted" }, "Getting messages is destructive unless they are requeued."),
    field("Ack mode", h("select", { name: "ackmode", id: "get-ackmode" },
      h("option", { value: "ack_requeue_true" }, "Nack message requeue true"),
      h("option", { value: "ack_requeue_false" }, "Automatic ack"),
      h("option", { value: "reject_requeue_true" }, "Reject requeue true"),
      h("option", { value: "reject_requeue_false" }, "Reject requeue false"))),
    field("Encoding", h("select", { name: "encoding" }, h("option", { value: "auto" }, "Auto string / base64"), h("option", { value: "base64" }, "base64"))),
    field("Messages", h("input", { type: "number", name: "count", value: "1", min: "1" })),
    h("button", { type: "submit", id: "get-submit" }, "Get message(s)"),
    got,
  );
  getForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(async () => {
      const msgs = await api("POST", `${path}/get`, { count: Number(getForm.count.value), ackmode: getForm.ackmode.value, encoding: getForm.encoding.value, truncate: 50000 });
      got.replaceChildren(
        msgs.length === 0
          ? h("p", { id: "get-empty" }, "Queue is empty.")
          : h("div", {}, msgs.map((msg, i) =>
              h("div", { class: "box message" },
                h("h3", {}, `Message ${i + 1}`),
                props([
                  ["Exchange", msg.exchange === "" ? "(AMQP default)" : msg.exchange],
                  ["Routing key", msg.routing_key],
                  ["Redelivered", String(msg.redelivered)],
                  ["Remaining", String(msg.message_count)],
                  ["Properties", JSON.stringify(msg.properties)],
                  ["Payload", `${msg.payload_bytes} bytes, encoding ${msg.payload_encoding}`],
                ]),
                h("pre", { class: "payload" }, msg.payload)))),
      );
    });
  });

  const purge = h("button", { type: "button", id: "queue-purge" }, "Purge messages");
  purge.addEventListener("click", () => act(async () => api("DELETE", `${path}/contents`), "Queue purged."));
  const del = confirmButton("Delete queue", "queue-delete", () =>
    act(async () => {
      stopRefresh(); // no refresh may ask for the queue once it is gone
      await api("DELETE", path);
      location.hash = "#/queues";
    }, `Queue '${name}' deleted.`),
  );

  m.append(
    h("h2", {}, "Consumers"), consumers,
    h("h2", {}, "Bindings"), bindings, bindForm,
    publishForm("queue-publish", vhost, "", name),
    getForm,
    h("div", { class: "box" }, h("h2", {}, "Purge and delete"), purge, " ", del),
  );

  every(async (alive) => {
    const [q, b] = await Promise.all([api("GET", path), api("GET", `${path}/bindings`)]);
    if (!alive()) return;
    const t = Date.now();
    const r = (k) => get(q, `message_stats.${k}_details.rate`) || 0;
    remember(qhist.queued, t, { ready: q.messages_ready || 0, unacked: q.messages_unacknowledged || 0 });
    remember(qhist.rates, t, { publish: r("publish"), deliver: r("deliver_get"), ack: r("ack") });
    details.replaceChildren(
      props([
        ["Type", q.type || "classic"],
        ["Features", [q.durable ? "durable" : "transient", q.auto_delete ? "auto-delete" : "", q.exclusive ? "exclusive" : ""].filter(Boolean).join(", ")],
        ["State", q.state || ""],
        ["Ready", h("span", { id: "queue-ready" }, fmtNum(q.messages_ready))],
        ["Unacked", fmtNum(q.messages_unacknowledged)],
        ["Total", h("span", { id: "queue-total" }, fmtNum(q.messages))],
        ["Message body bytes (ready)", fmtNum(q.message_bytes_ready)],
        ["Consumers", fmtNum(q.consumers)],
        ["Memory", `${fmtNum(q.memory)} bytes`],
        ["Arguments", JSON.stringify(q.arguments || {})],
        ["Policy", q.policy || ""],
      ]),
    );
    renderChart(queuedChart, "Queued messages", series(qhist.queued, [["Ready", "ready"], ["Unacked", "unacked"]]), HISTORY_MS);
    renderChart(rateChart, "Message rates", series(qhist.rates, [["Publish", "publish"], ["Deliver / get", "deliver"], ["Ack", "ack"]]), HISTORY_MS, "/s");
    consumers.replaceChildren(
      table(
        [
          { label: "Channel", render: (c) => get(c, "channel_details.name") },
          { label: "Consumer tag", key: "consumer_tag" },
          { label: "Ack required", render: (c) => String(c.ack_required) },
          { label: "Exclusive", render: (c) => String(c.exclusive) },
          { label: "Prefetch", key: "prefetch_count", num: true },
          { label: "Active", render: (c) => String(c.active) },
        ],
        q.consumer_details || [],
        "No consumers.",
      ),
    );
    bindings.replaceChildren(bindingRows(b, vhost, "source"));
  });
}

// ---------- exchanges ----------

function exchangesPage() {
  const m = main();
  const list = h("div", {});
  m.append(h("h1", {}, "Exchanges"), list);
  const load = pagedList(list, {
    id: "exchanges",
    path: "exchanges",
    defaultSort: "name",
    fields: [
      { label: "Virtual host", key: "vhost", sort: "vhost" },
      { label: "Name", sort: "name", render: (x) => link("exchanges", x.vhost, x.name) },
      { label: "Type", key: "type", sort: "type" },
      { label: "Features", render: (x) => [x.durable ? "D" : "", x.auto_delete ? "AD" : "", x.internal ? "I" : ""].filter(Boolean).join(" ") },
      { label: "Rate in", render: (x) => rate(x, "publish_in"), num: true },
      { label: "Rate out", render: (x) => rate(x, "publish_out"), num: true },
    ],
  });
  every(load);
  const vhost = h("select", { name: "vhost" });
  vhostOptions(vhost).catch((e) => flash(e.message));
  const form = h(
    "form",
    { class: "box", id: "add-exchange" },
    h("h2", {}, "Add an exchange"),
    field("Virtual host", vhost),
    field("Name", h("input", { type: "text", name: "name", required: true })),
    field("Type", h("select", { name: "type" }, ["direct", "fanout", "topic", "headers", "x-delayed-message"].map((t) => h("option", { value: t }, t)))),
    field("Durability", h("select", { name: "durable" }, h("option", { value: "true" }, "Durable"), h("option", { value: "false" }, "Transient"))),
    field("Auto delete", h("select", { name: "auto_delete" }, h("option", { value: "false" }, "No"), h("option", { value: "true" }, "Yes"))),
    field("Internal", h("select", { name: "internal" }, h("option", { value: "false" }, "No"), h("option", { value: "true" }, "Yes"))),
    field("Arguments (JSON)", h("textarea", { name: "arguments", placeholder: '{"alternate-exchange": "ae"}' })),
    h("button", { type: "submit", class: "primary" }, "Add exchange"),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const name = form.name.value;
    act(async () => {
      await api("PUT", `exchanges/${enc(vhost.value)}/${enc(name)}`, {
        type: form.type.value,
        durable: form.durable.value === "true",
        auto_delete: form.auto_delete.value === "true",
        internal: form.internal.value === "true",
        arguments: parseJsonField(form.arguments.value, "Arguments"),
      });
      load();
    }, `Exchange '${name}' declared.`);
  });
  m.append(form);
}

function exchangePage(vhost, name) {
  const m = main();
  const pathName = name === "" ? "amq.default" : name;
  const path = `exchanges/${enc(vhost)}/${enc(pathName)}`;
  const details = h("div", { class: "box", id: "exchange-details" });
  const outgoing = h("div", { id: "exchange-bindings-source" });
  const incoming = h("div", { id: "exchange-bindings-destination" });
  m.append(h("p", {}, h("a", { href: "#/exchanges" }, "‹ Exchanges")), h("h1", {}, `Exchange ${name === "" ? "(AMQP default)" : name}`), h("p", { class: "muted" }, `Virtual host ${vhost}`), details);
  const bindForm = h(
    "form",
    { class: "box" },
    h("h3", {}, "Add a binding from this exchange"),
    field("To", h("select", { name: "kind" }, h("option", { value: "q" }, "Queue"), h("option", { value: "e" }, "Exchange"))),
    field("Name", h("input", { type: "text", name: "destination", required: true })),
    field("Routing key", h("input", { type: "text", name: "routing_key" })),
    h("button", { type: "submit" }, "Bind"),
  );
  bindForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(async () => {
      await api("POST", `bindings/${enc(vhost)}/e/${enc(pathName)}/${bindForm.kind.value}/${enc(bindForm.destination.value)}`, { routing_key: bindForm.routing_key.value, arguments: {} });
      route();
    }, "Bound.");
  });
  m.append(h("h2", {}, "Bindings from this exchange"), outgoing);
  if (name !== "") m.append(bindForm);
  m.append(h("h2", {}, "Bindings to this exchange"), incoming, publishForm("exchange-publish", vhost, name));
  if (name !== "" && !name.startsWith("amq.")) {
    m.append(h("div", { class: "box" }, h("h2", {}, "Delete"), confirmButton("Delete exchange", "exchange-delete", () =>
      act(async () => {
        stopRefresh();
        await api("DELETE", path);
        location.hash = "#/exchanges";
      }, `Exchange '${name}' deleted.`))));
  }
  every(async (alive) => {
    const [x, src, dst] = await Promise.all([api("GET", path), api("GET", `${path}/bindings/source`), api("GET", `${path}/bindings/destination`)]);
    if (!alive()) return;
    details.replaceChildren(
      props([
        ["Type", x.type],
        ["Features", [x.durable ? "durable" : "transient", x.auto_delete ? "auto-delete" : "", x.internal ? "internal" : ""].filter(Boolean).join(", ")],
        ["Arguments", JSON.stringify(x.arguments || {})],
        ["Policy", x.policy || ""],
      ]),
    );
    outgoing.replaceChildren(bindingRows(src, vhost, "destination"));
    incoming.replaceChildren(bindingRows(dst, vhost, "source"));
  });
}

// ---------- connections, channels, consumers ----------

function clientName(c) {
  const p = c.client_properties || {};
  return [p.product, p.version].filter(Boolean).join(" ");
}

function connectionsPage() {
  const m = main();
  const list = h("div", {});
  m.append(h("h1", {}, "Connections"), list);
  every(
    pagedList(list, {
      id: "connections",
      path: "connections",
      fields: [
        { label: "Virtual host", key: "vhost", sort: "vhost" },
        { label: "Name", sort: "name", render: (c) => h("a", { href: `#/connections/${enc(c.name)}` }, c.name) },
        { label: "Client-provided name", key: "user_provided_name" },
        { label: "User", key: "user", sort: "user" },
        { label: "State", key: "state" },
        { label: "Client", render: clientName },
        { label: "Channels", key: "channels", sort: "channels", num: true },
        { label: "Heartbeat", render: (c) => `${c.timeout}s` },
        { label: "Connected", render: (c) => new Date(c.connected_at).toLocaleString() },
      ],
    }),
  );
}

function connectionPage(name) {
  const m = main();
  const path = `connections/${enc(name)}`;
  const details = h("div", { class: "box", id: "connection-details" });
  const channels = h("div", { id: "connection-channels" });
  const form = h(
    "form",
    { class: "box", id: "connection-close" },
    h("h2", {}, "Close this connection"),
    field("Reason", h("input", { type: "text", name: "reason", value: "Closed via management plugin" })),
    h("button", { type: "submit", class: "danger", id: "connection-close-submit" }, "Force close"),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(async () => {
      stopRefresh();
      await api("DELETE", path, undefined, { "X-Reason": form.reason.value });
      location.hash = "#/connections";
    }, "Connection closed.");
  });
  m.append(h("p", {}, h("a", { href: "#/connections" }, "‹ Connections")), h("h1", {}, `Connection ${name}`), details, h("h2", {}, "Channels"), channels, form);
  every(async (alive) => {
    const [c, chs] = await Promise.all([api("GET", path), api("GET", `${path}/channels`)]);
    if (!alive()) return;
    details.replaceChildren(
      props([
        ["User", c.user],
        ["Virtual host", c.vhost],
        ["Client", clientName(c)],
        ["Client-provided name", c.user_provided_name || ""],
        ["Peer", `${c.peer_host}:${c.peer_port}`],
        ["Auth mechanism", c.auth_mechanism],
        ["Heartbeat", `${c.timeout}s`],
        ["Frame max", fmtNum(c.frame_max)],
        ["Channel max", fmtNum(c.channel_max)],
        ["State", c.state],
      ]),
    );
    channels.replaceChildren(channelTable(chs));
  });
}

function channelFields() {
  return [
    { label: "Channel", key: "name", sort: "name" },
    { label: "Virtual host", key: "vhost", sort: "vhost" },
    { label: "User", key: "user", sort: "user" },
    { label: "State", key: "state" },
    { label: "Consumers", key: "consumer_count", sort: "consumer_count", num: true },
    { label: "Prefetch", key: "prefetch_count", num: true },
    { label: "Unacked", key: "messages_unacknowledged", sort: "messages_unacknowledged", num: true },
    { label: "Publish", render: (c) => rate(c, "publish"), num: true },
    { label: "Deliver / get", render: (c) => rate(c, "deliver_get"), num: true },
    { label: "Ack", render: (c) => rate(c, "ack"), num: true },
  ];
}

function channelTable(rows) {
  return table(channelFields(), rows, "No channels.");
}

function channelsPage() {
  const m = main();
  const list = h("div", {});
  m.append(h("h1", {}, "Channels"), list);
  every(pagedList(list, { id: "channels", path: "channels", fields: channelFields() }));
}

function consumersPage() {
  const m = main();
  const body = h("div", { id: "consumers-table" });
  m.append(h("h1", {}, "Consumers"), body);
  every(async (alive) => {
    const rows = await api("GET", "consumers");
    if (!alive()) return;
    body.replaceChildren(
      table(
        [
          { label: "Virtual host", render: (c) => get(c, "queue.vhost") },
          { label: "Queue", render: (c) => link("queues", get(c, "queue.vhost"), get(c, "queue.name")) },
          { label: "Channel", render: (c) => get(c, "channel_details.name") },
          { label: "Consumer tag", key: "consumer_tag" },
          { label: "Ack required", render: (c) => String(c.ack_required) },
          { label: "Prefetch", key: "prefetch_count", num: true },
          { label: "Active", render: (c) => String(c.active) },
        ],
        rows,
        "No consumers.",
      ),
    );
  });
}

// ---------- users, vhosts, permissions, policies ----------

function usersPage() {
  const m = main();
  const body = h("div", { id: "users-table" });
  const perms = h("div", { id: "permissions-table" });
  m.append(h("h1", {}, "Users"), body);
  const reload = async () => {
    const [users, permissions] = await Promise.all([api("GET", "users"), api("GET", "permissions")]);
    body.replaceChildren(
      table(
        [
          { label: "Name", key: "name" },
          { label: "Tags", render: (u) => (Array.isArray(u.tags) ? u.tags.join(", ") : u.tags) },
          { label: "Can access virtual hosts", render: (u) => permissions.filter((p) => p.user === u.name).map((p) => p.vhost).join(", ") || "No access" },
          { label: "", render: (u) => confirmButton("Delete", `delete-user-${u.name}`, () => act(async () => { await api("DELETE", `users/${enc(u.name)}`); reload(); }, `User '${u.name}' deleted.`)) },
        ],
        users,
      ),
    );
    perms.replaceChildren(
      table(
        [
          { label: "User", key: "user" },
          { label: "Virtual host", key: "vhost" },
          { label: "Configure", key: "configure" },
          { label: "Write", key: "write" },
          { label: "Read", key: "read" },
          { label: "", render: (p) => h("button", { type: "button", onclick: () => act(async () => { await api("DELETE", `permissions/${enc(p.vhost)}/${enc(p.user)}`); reload(); }, "Permissions cleared.") }, "Clear") },
        ],
        permissions,
      ),
    );
  };
  const add = h(
    "form",
    { class: "box", id: "add-user" },
    h("h2", {}, "Add or update a user"),
    field("Username", h("input", { type: "text", name: "name", required: true })),
    field("Password", h("input", { type: "password", name: "password", autocomplete: "new-password" })),
    field("Tags (comma separated)", h("input", { type: "text", name: "tags", placeholder: "management, monitoring, policymaker, administrator" })),
    h("button", { type: "submit", class: "primary" }, "Save user"),
  );
  add.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const name = add.name.value;
    act(async () => {
      await api("PUT", `users/${enc(name)}`, { password: add.password.value, tags: add.tags.value });
      await reload();
    }, `User '${name}' saved.`);
  });
  const vhost = h("select", { name: "vhost" });
  const perm = h(
    "form",
    { class: "box", id: "set-permission" },
    h("h2", {}, "Set permissions"),
    field("User", h("input", { type: "text", name: "user", required: true })),
    field("Virtual host", vhost),
    field("Configure regexp", h("input", { type: "text", name: "configure", value: ".*" })),
    field("Write regexp", h("input", { type: "text", name: "write", value: ".*" })),
    field("Read regexp", h("input", { type: "text", name: "read", value: ".*" })),
    h("button", { type: "submit", class: "primary" }, "Set permissions"),
  );
  perm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(async () => {
      await api("PUT", `permissions/${enc(vhost.value)}/${enc(perm.user.value)}`, { configure: perm.configure.value, write: perm.write.value, read: perm.read.value });
      await reload();
    }, "Permissions set.");
  });
  m.append(add, h("h2", {}, "Permissions"), perms, perm);
  act(() => Promise.all([reload(), vhostOptions(vhost)]));
}

function vhostsPage() {
  const m = main();
  const body = h("div", { id: "vhosts-table" });
  m.append(h("h1", {}, "Virtual hosts"), body);
  every(async (alive) => {
    const rows = await api("GET", "vhosts");
    if (!alive()) return;
    body.replaceChildren(
      table(
        [
          { label: "Name", key: "name" },
          { label: "Description", key: "description" },
          { label: "Ready", key: "messages_ready", num: true },
          { label: "Unacked", key: "messages_unacknowledged", num: true },
          { label: "Total", key: "messages", num: true },
          { label: "Publish", render: (v) => rate(v, "publish"), num: true },
          { label: "Deliver / get", render: (v) => rate(v, "deliver_get"), num: true },
          { label: "", render: (v) => confirmButton("Delete", `delete-vhost-${v.name}`, () => act(async () => { await api("DELETE", `vhosts/${enc(v.name)}`); route(); }, `Virtual host '${v.name}' deleted.`)) },
        ],
        rows,
      ),
    );
  });
  const add = h(
    "form",
    { class: "box", id: "add-vhost" },
    h("h2", {}, "Add a virtual host"),
    field("Name", h("input", { type: "text", name: "name", required: true })),
    field("Description", h("input", { type: "text", name: "description" })),
    h("button", { type: "submit", class: "primary" }, "Add virtual host"),
  );
  add.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const name = add.name.value;
    act(async () => {
      await api("PUT", `vhosts/${enc(name)}`, { description: add.description.value });
      route();
    }, `Virtual host '${name}' added.`);
  });
  m.append(add);
}

function policiesPage() {
  const m = main();
  const body = h("div", { id: "policies-table" });
  m.append(h("h1", {}, "Policies"), body);
  every(async (alive) => {
    const rows = await api("GET", "policies");
    if (!alive()) return;
    body.replaceChildren(
      table(
        [
          { label: "Virtual host", key: "vhost" },
          { label: "Name", key: "name" },
          { label: "Pattern", key: "pattern" },
          { label: "Apply to", key: "apply-to" },
          { label: "Definition", render: (p) => JSON.stringify(p.definition) },
          { label: "Priority", key: "priority", num: true },
          { label: "", render: (p) => confirmButton("Delete", `delete-policy-${p.name}`, () => act(async () => { await api("DELETE", `policies/${enc(p.vhost)}/${enc(p.name)}`); route(); }, `Policy '${p.name}' deleted.`)) },
        ],
        rows,
        "No policies.",
      ),
    );
  });
  const vhost = h("select", { name: "vhost" });
  vhostOptions(vhost).catch((e) => flash(e.message));
  const add = h(
    "form",
    { class: "box", id: "add-policy" },
    h("h2", {}, "Add or update a policy"),
    field("Virtual host", vhost),
    field("Name", h("input", { type: "text", name: "name", required: true })),
    field("Pattern", h("input", { type: "text", name: "pattern", required: true, placeholder: "^amq." })),
    field("Apply to", h("select", { name: "apply_to" }, ["queues", "exchanges", "all", "classic_queues", "quorum_queues", "streams"].map((t) => h("option", { value: t }, t)))),
    field("Priority", h("input", { type: "number", name: "priority", value: "0" })),
    field("Definition (JSON)", h("textarea", { name: "definition", placeholder: '{"max-length": 1000}' })),
    h("button", { type: "submit", class: "primary" }, "Save policy"),
  );
  add.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const name = add.name.value;
    act(async () => {
      await api("PUT", `policies/${enc(vhost.value)}/${enc(name)}`, {
        pattern: add.pattern.value,
        "apply-to": add.apply_to.value,
        priority: Number(add.priority.value),
        definition: parseJsonField(add.definition.value, "Definition"),
      });
      route();
    }, `Policy '${name}' saved.`);
  });
  m.append(add);
}

boot();
