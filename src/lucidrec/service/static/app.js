// lucidrec web page: plain JS, no framework, no CDN. Every text from the server goes in via textContent.
"use strict";

const T = {
  en: {
    tagline: "recommendations that explain themselves",
    queryLabel: "What are you in the mood for?",
    queryPlaceholder: "e.g. a funny animated film for kids",
    userLabel: "User id (their stored history is used)",
    historyLabel: "…or paste a history (item[:rating], oldest first)",
    kLabel: "Results", go: "Recommend", like: "♥ Like", liked: "♥ Liked", whatIf: "What if: ",
    keySummary: "API key (needed for “like” and, unless the server has public reads, for stored users)", remember: "remember in this browser",
    keyHint: "“Like” needs a write key; a read key only shows stored users. Ask the operator, or start the server with lucidrec serve --demo-key, which prints a write key for that run.",
    loading: "Thinking…", empty: "Type a query, pick a user or paste a history.",
    needKey: "“Like” needs a write API key: open the API key box above and paste one.",
    likedItem: (t) => `Liked “${t}”. Refreshing…`,
    summary: (r) => `${r.items.length} results · history: ${r.history_size} items (${r.history_source})`,
    parsed: "Understood as", genres: "genres", exclude: "not", year: "years", like_: "like", text: "text", notes: "notes", soft: "read as", qualifier: "qualifier (read, not matched)", not_applied: "not applied",
    kinds: { history: "your history", history_other: "rest of history", query: "your query", popularity: "popularity",
             interaction: "interaction", other: "other" },
  },
  zh: {
    tagline: "会解释自己的推荐",
    queryLabel: "您想看什么？",
    queryPlaceholder: "例如：适合孩子的搞笑动画片",
    userLabel: "用户 ID（使用其已存储的历史）",
    historyLabel: "…或粘贴历史（物品[:评分]，按时间先后）",
    kLabel: "数量", go: "推荐", like: "♥ 喜欢", liked: "♥ 已喜欢", whatIf: "假如：",
    keySummary: "API 密钥（“喜欢”需要；除非服务器公开读取，查看已存用户也需要）", remember: "在此浏览器中记住",
    keyHint: "“喜欢”需要写入密钥；只读密钥只能查看已存用户。向管理员索取，或用 lucidrec serve --demo-key 启动服务，它会为本次运行打印一个写入密钥。",
    loading: "正在推荐…", empty: "请输入查询、选择用户或粘贴历史。",
    needKey: "“喜欢”需要写入密钥：请在上方的 API 密钥框中粘贴。",
    likedItem: (t) => `已喜欢《${t}》，正在刷新…`,
    summary: (r) => `${r.items.length} 条结果 · 历史：${r.history_size} 个物品（${r.history_source}）`,
    parsed: "理解为", genres: "类型", exclude: "排除", year: "年份", like_: "类似", text: "文本", notes: "说明", soft: "理解为", qualifier: "限定（已理解，不匹配）", not_applied: "未应用",
    kinds: { history: "您的历史", history_other: "其余历史", query: "您的查询", popularity: "热度",
             interaction: "交互项", other: "其他" },
  },
};

const $ = (id) => document.getElementById(id);
const state = { lang: localStorage.getItem("lucidrec.lang") || "en", last: null };

function t(key) { return T[state.lang][key]; }

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function setStatus(msg, isError) {
  $("status").textContent = msg || "";
  $("status").className = isError ? "error" : "";
}

function applyLanguage() {
  document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
  document.querySelectorAll("[data-i18n]").forEach((n) => { n.textContent = t(n.dataset.i18n); });
  $("query").placeholder = t("queryPlaceholder");
  document.querySelectorAll(".lang-btn").forEach((b) => b.classList.toggle("active", b.dataset.lang === state.lang));
}

// ---------------------------------------------------------------- the API key (never put in the page's source)
function apiKey() { return $("apikey").value.trim(); }
function loadKey() {
  const k = localStorage.getItem("lucidrec.key");
  if (k) { $("apikey").value = k; $("remember").checked = true; }
}
function saveKey() {
  if ($("remember").checked && apiKey()) localStorage.setItem("lucidrec.key", apiKey());
  else localStorage.removeItem("lucidrec.key");
}

function headers(withKey) {
  const h = { "Content-Type": "application/json" };
  if (withKey && apiKey()) h["Authorization"] = "Bearer " + apiKey();
  return h;
}

async function call(method, path, body, withKey) {
  const res = await fetch(path, { method, headers: headers(withKey || !!apiKey()), body: body ? JSON.stringify(body) : undefined });
  let data = null;
  try { data = await res.json(); } catch (e) { data = { detail: res.statusText }; }
  if (!res.ok) { const err = new Error(data && data.detail ? data.detail : res.statusText); err.status = res.status; throw err; }
  return data;
}

// ---------------------------------------------------------------- the request
// "50:5, 181:4, 12" (the rating follows the last ':'), or a JSON list for ids that hold ',', ':' or
// spaces: [["team, a", 5], "b:c"]. The server checks every id and rating and names what is wrong.
function parseHistory(text) {
  if (text.startsWith("[")) {
    let list;
    try { list = JSON.parse(text); } catch (e) { throw new Error("history: not valid JSON (" + e.message + ")"); }
    if (!Array.isArray(list)) throw new Error("history: a JSON history must be a list");
    return list.map((e) => {
      if (!Array.isArray(e)) return { item: String(e) };
      const h = { item: String(e[0]) };
      if (e.length > 1 && e[1] !== null) h.rating = e[1];
      return h;
    });
  }
  return text.split(/[,\s]+/).filter(Boolean).map((p) => {
    const cut = p.lastIndexOf(":");
    const rating = cut < 0 ? "" : p.slice(cut + 1).trim();
    // Only a number after the last ':' is a rating; otherwise the ':' belongs to the id ("c:d").
    if (rating === "" || Number.isNaN(Number(rating))) return { item: p.trim() };
    return { item: p.slice(0, cut).trim(), rating: Number(rating) };
  });
}

function currentUser() { return $("user").value.trim(); }

// A visitor who pastes a history has no user id; "like" then stores feedback under a per-browser id.
function browserUser() {
  let u = localStorage.getItem("lucidrec.webuser");
  if (!u) { u = "web-" + Math.random().toString(36).slice(2, 10); localStorage.setItem("lucidrec.webuser", u); }
  return u;
}

function buildRequest() {
  const req = { k: Number($("k").value), lang: state.lang, explain: true, counterfactual: true };
  const q = $("query").value.trim();
  if (q) req.query = q;
  const u = currentUser();
  if (u) req.user = u;
  const h = $("history").value.trim();
  if (h) req.history = parseHistory(h);
  return req;
}

async function recommend() {
  let req;
  try { req = buildRequest(); } catch (e) { setStatus(e.message, true); return; }
  if (!req.query && !req.user && !req.history) { setStatus(t("empty"), true); return; }
  setStatus(t("loading"));
  try {
    const res = await call("POST", "/recommend", req);
    state.last = res;
    render(res);
    setStatus("");
  } catch (e) {
    setStatus(e.message, true);
  }
}

async function like(item, button) {
  if (!apiKey()) { setStatus(t("needKey"), true); $("keybox").open = true; $("apikey").focus(); return; }
  saveKey();
  let user = currentUser();
  if (!user) { user = browserUser(); $("user").value = user; }
  button.disabled = true;
  try {
    await call("POST", "/feedback", { user, item: item.item_id, event: "liked" }, true);
    button.textContent = t("liked");
    setStatus(t("likedItem")(item.title));
    await recommend();
  } catch (e) {
    button.disabled = false;
    setStatus(e.status === 401 ? t("needKey") + " (" + e.message + ")" : e.message, true);
  }
}

// ---------------------------------------------------------------- rendering
function renderParsed(pq) {
  const box = $("parsed");
  box.replaceChildren();
  if (!pq || typeof pq !== "object") { box.hidden = true; return; }
  box.appendChild(el("strong", null, t("parsed") + ": "));
  const add = (label, values, cls) => {
    if (values === null || values === undefined || (Array.isArray(values) && values.length === 0) || values === "") return;
    const list = Array.isArray(values) ? values : [values];
    box.appendChild(el("span", "chip" + (cls ? " " + cls : ""), label + ": " + list.join(label === t("year") ? "–" : ", ")));
  };
  add(t("genres"), pq.genres, "ok");
  add(t("exclude"), pq.exclude_genres, "no");
  add(t("year"), pq.year);
  add(t("like_"), pq.like);
  // What the language model read the request as (soft: ranks, never excludes), with its strength.
  const soft = (Array.isArray(pq.soft) ? pq.soft : []).filter((v) => v && !v.like);
  const name = (v) => (Array.isArray(v) ? v.map(String).join(" & ") : String(v));
  // A value chosen among a broader value's own items says so ("7 of the 10 nearest Vacuums").
  const within = (w) => !w ? "" : state.lang === "zh"
    ? `（最相近的${Number(w.nearest)}件${String(w.value)}中有${Number(w.holding)}件）`
    : ` (${Number(w.holding)} of the ${Number(w.nearest)} nearest ${String(w.value)})`;
  add(t("soft"), soft.map((v) => name(v.value) + " " + Number(v.strength).toFixed(2) + within(v.within)), "ok");
  add(t("qualifier"), pq.qualifier);
  add(t("text"), pq.text);
  const na = Array.isArray(pq.not_applied) ? pq.not_applied : [];
  add(t("not_applied"), na.map((n) => (state.lang === "zh" ? n.reason_zh : n.reason) || String(n.text)), "no");
  // Notes repeat what was not applied; show each once.
  add(t("notes"), (pq.notes || []).filter((n) => !na.some((x) => x.reason === n)));
  box.hidden = false;
}

function kindClass(kind) { return T.en.kinds[kind] ? kind : "other"; }

function evidenceBar(evidence) {
  const parts = (evidence || []).filter((e) => typeof e.contribution === "number" && isFinite(e.contribution) && e.contribution !== 0);
  const total = parts.reduce((s, e) => s + Math.abs(e.contribution), 0);
  const wrap = el("div", "evidence");
  if (!total) return wrap;
  const bar = el("div", "bar");
  const sums = {};
  parts.forEach((e) => {
    const k = kindClass(e.kind);
    const seg = el("div", "seg k-" + k + (e.contribution < 0 ? " neg" : ""));
    seg.style.width = (100 * Math.abs(e.contribution) / total).toFixed(2) + "%";
    seg.title = (t("kinds")[k] || k) + (e.title ? " · " + e.title : "") + ": " + e.contribution.toFixed(3);
    bar.appendChild(seg);
    sums[k] = (sums[k] || 0) + e.contribution;
  });
  wrap.appendChild(bar);
  const legend = el("div", "legend");
  Object.entries(sums).forEach(([k, v]) => {
    const s = el("span");
    s.appendChild(el("span", "dot k-" + k));
    s.appendChild(document.createTextNode((t("kinds")[k] || k) + " " + (v >= 0 ? "+" : "") + v.toFixed(3)));
    legend.appendChild(s);
  });
  wrap.appendChild(legend);
  return wrap;
}

function render(res) {
  renderParsed(res.parsed_query);
  $("summary").textContent = t("summary")(res);
  const list = $("results");
  list.replaceChildren();
  res.items.forEach((item) => {
    const li = el("li", "card");
    li.dataset.itemId = item.item_id;
    const head = el("div", "card-head");
    head.appendChild(el("span", "rank", "#" + item.rank));
    head.appendChild(el("span", "title", item.title));
    head.appendChild(el("span", "score", Number(item.score).toFixed(3)));
    const btn = el("button", "like", t("like"));
    btn.addEventListener("click", () => like(item, btn));
    head.appendChild(btn);
    li.appendChild(head);
    if (item.reason) li.appendChild(el("p", "reason", item.reason));
    // The verified counterfactual: which history items, removed, drop this one out of the list.
    if (item.counterfactual && item.counterfactual.text) li.appendChild(el("p", "whatif", t("whatIf") + item.counterfactual.text));
    if (Array.isArray(item.constraints_met) && item.constraints_met.length) {
      const c = el("div", "constraints");
      item.constraints_met.forEach((s) => c.appendChild(el("span", "chip ok", "✓ " + s)));
      li.appendChild(c);
    }
    li.appendChild(evidenceBar(item.evidence));
    list.appendChild(li);
  });
}

async function loadUsers() {
  try {
    const users = await call("GET", "/users?limit=50");
    const dl = $("users");
    users.forEach((u) => { const o = document.createElement("option"); o.value = u.user; o.label = u.events + " events"; dl.appendChild(o); });
  } catch (e) { /* the picker is a convenience; typing an id still works */ }
}

function init() {
  applyLanguage();
  loadKey();
  $("go").addEventListener("click", recommend);
  $("query").addEventListener("keydown", (e) => { if (e.key === "Enter") recommend(); });
  $("remember").addEventListener("change", saveKey);
  document.querySelectorAll(".lang-btn").forEach((b) => b.addEventListener("click", () => {
    state.lang = b.dataset.lang;
    localStorage.setItem("lucidrec.lang", state.lang);
    applyLanguage();
    if (state.last) recommend();
  }));
  loadUsers();
}

init();
