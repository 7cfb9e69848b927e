// The search page: reads its state from the URL, calls POST v1/search, renders the answer.
// Only `hit.highlighted` (escaped by the server, <em> around matches) is inserted as HTML;
// everything else goes through textContent, so a document's text can never become markup.
"use strict";

(() => {
  const PAGE_SIZE = 10;
  const TYPING_DELAY_MS = 280;

  // Order here is the order of the chips.
  const KIND_LABELS = {
    character: "人物",
    location: "地点",
    faction: "势力",
    item: "物品",
    technique: "功法",
    event: "事件",
    lore: "设定",
    chapter: "章节",
  };

  const MODE_LABELS = { hybrid: "混合", dense: "向量", sparse: "关键词" };

  const META_LABELS = {
    aliases: "别名",
    faction: "势力",
    realm: "境界",
    gender: "性别",
    status: "状态",
    first_chapter: "首次出场",
    type: "类型",
    region: "地区",
    owner: "持有者",
    grade: "品阶",
    year: "年份",
    era: "纪年",
    min_realm: "最低境界",
    category: "分类",
    order: "序号",
    alignment: "立场",
    leader: "首领",
    founded: "创立",
    chapter: "章",
    arc: "篇章",
    location: "地点",
  };

  const CACHE_TIERS = { exact: "精确", semantic: "语义" };

  const TIMING_LABELS = { encode: "编码", dense: "向量", sparse: "BM25", fuse: "融合", route: "路由", cache: "缓存" };

  const EXAMPLES = [
    "断剑客",
    "玄霜城在哪里",
    "流云剑诀",
    "每个月最后一天不许拔剑的门规",
    "能照出人心中所念的镜子",
    "落雁坡之战",
  ];

  const $ = (id) => document.getElementById(id);
  const form = $("search-form");
  const input = $("q");
  const kindsBox = $("kinds");
  const results = $("results");
  const template = $("hit-template");

  let inFlight = null; // AbortController of the request on screen, so a newer query cancels it
  let typingTimer = 0;
  let lastKey = "";

  // ---------- state <-> URL ----------

  function readUrl() {
    const params = new URLSearchParams(location.search);
    const kinds = params
      .getAll("kind")
      .flatMap((k) => k.split(","))
      .map((k) => k.trim())
      .filter(Boolean);
    const mode = params.get("mode");
    const offset = Number.parseInt(params.get("offset") || "0", 10);
    return {
      q: params.get("q") || "",
      kinds: [...new Set(kinds)],
      mode: mode in MODE_LABELS ? mode : "hybrid",
      offset: Number.isFinite(offset) && offset > 0 ? offset : 0,
    };
  }

  function readForm() {
    return {
      q: input.value.trim(),
      kinds: [...kindsBox.querySelectorAll("input[name=kind]:checked")].map((el) => el.value),
      mode: form.querySelector("input[name=mode]:checked").value,
      offset: 0,
    };
  }

  function writeForm(state) {
    input.value = state.q;
    for (const box of kindsBox.querySelectorAll("input[name=kind]")) {
      box.checked = state.kinds.includes(box.value);
    }
    for (const radio of form.querySelectorAll("input[name=mode]")) {
      radio.checked = radio.value === state.mode;
    }
  }

  function toUrl(state) {
    const params = new URLSearchParams();
    if (state.q) params.set("q", state.q);
    for (const kind of state.kinds) params.append("kind", kind);
    if (state.mode !== "hybrid") params.set("mode", state.mode);
    if (state.offset) params.set("offset", String(state.offset));
    const query = params.toString();
    return query ? `?${query}` : location.pathname;
  }

  // ---------- small DOM helpers ----------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function fmt(value, digits) {
    return typeof value === "number" ? value.toFixed(digits) : "–";
  }

  function ms(value) {
    if (typeof value !== "number") return "–";
    return value < 10 ? `${value.toFixed(1)} ms` : `${Math.round(value)} ms`;
  }

  // ---------- kind chips, examples ----------

  function buildKindChips() {
    for (const [kind, label] of Object.entries(KIND_LABELS)) {
      const chip = el("label", `chip kind-${kind}`);
      const box = el("input");
      box.type = "checkbox";
      box.name = "kind";
      box.value = kind;
      chip.append(box, el("span", "dot"), el("span", "", label));
      chip.title = kind;
      kindsBox.append(chip);
    }
    const clear = el("button", "chip chip-clear", "全部");
    clear.type = "button";
    clear.title = "清除类别筛选";
    clear.addEventListener("click", () => {
      for (const box of kindsBox.querySelectorAll("input[name=kind]")) box.checked = false;
      submit({ push: true });
    });
    kindsBox.append(clear);
  }

  function buildExamples() {
    const box = $("examples");
    for (const text of EXAMPLES) {
      const button = el("button", "example", text);
      button.type = "button";
      button.addEventListener("click", () => {
        input.value = text;
        submit({ push: true });
      });
      box.append(button);
    }
  }

  // ---------- engine status ----------

  async function checkEngine() {
    const badge = $("engine");
    const text = $("engine-text");
    try {
      const response = await fetch("v1/ready", { headers: { Accept: "application/json" } });
      const body = await response.json();
      if (response.ok && body.ready) {
        const chunks = body.store && body.store.chunks;
        const model = body.encoder && body.encoder.model_id;
        badge.dataset.state = body.degraded ? "degraded" : "ready";
        text.replaceChildren(
          el("span", "", body.degraded ? "降级 · 仅关键词" : "就绪"),
          el(
            "span",
            "engine-detail",
            body.degraded ? ` · ${chunks ?? "?"} 个片段` : ` · ${model ?? "?"} · ${chunks ?? "?"} 个片段`,
          ),
        );
        badge.title = `知识库版本 ${body.store?.kb_version ?? "?"}`;
        return;
      }
      badge.dataset.state = "starting";
      text.textContent = "引擎启动中…";
      badge.title = body.detail || "";
    } catch {
      badge.dataset.state = "down";
      text.textContent = "无法连接";
    }
    // Poll until ready: the model build and fixture ingest take a while on a first start.
    setTimeout(checkEngine, 2000);
  }

  // ---------- rendering ----------

  function showError(title, message) {
    $("error-title").textContent = title;
    $("error-message").textContent = message;
    $("error").hidden = false;
  }

  function renderKindBadge(node, kind) {
    node.textContent = KIND_LABELS[kind] || kind;
    node.classList.add(`kind-${kind}`);
    node.title = kind;
  }

  function renderMeta(list, metadata) {
    for (const [key, raw] of Object.entries(metadata || {})) {
      let value = raw;
      if (Array.isArray(raw)) value = raw.filter((v) => typeof v !== "object").join("、");
      else if (raw === null || typeof raw === "object") continue;
      if (value === "") continue;
      if (key === "first_chapter" || key === "chapter") value = `第 ${value} 章`;
      const item = el("li");
      item.append(el("span", "meta-key", META_LABELS[key] || key), document.createTextNode(String(value)));
      list.append(item);
    }
  }

  function sourceText(dd, source, scoreLabel) {
    if (!source) {
      dd.append(el("span", "none", "未召回"));
      dd.title = "这一路检索没有返回该片段";
      return;
    }
    dd.append(
      el("b", "", `#${source.rank}`),
      el("span", "", `${scoreLabel} ${fmt(source.score, 3)}`),
      el("span", "k", `+${fmt(source.contribution, 4)}`),
    );
    dd.title = `排名 ${source.rank}，原始分数 ${source.score}，对融合分数的贡献 ${source.contribution}`;
  }

  function renderExplanation(node, explanation, maxFused) {
    const dense = explanation.dense;
    const sparse = explanation.sparse;
    sourceText(node.querySelector(".explain-dense dd"), dense, "相似度");
    sourceText(node.querySelector(".explain-sparse dd"), sparse, "分数");
    const learned = explanation.fusion === "learned";
    node.querySelector(".fused-value").textContent = fmt(explanation.fused_score, 4);
    // The meter's length is the fused score against the best on the page; its colours, each
    // retriever's share, so "why is this here" reads at a glance. Under the learned ranker the
    // shares are RRF's (one of its features), scaled to RRF's largest possible sum.
    const rrfMax = Object.values(explanation.weights || {}).reduce((a, w) => a + w, 0) / (explanation.rrf_k + 1);
    const scale = learned ? (rrfMax > 0 ? 100 / rrfMax : 0) : maxFused > 0 ? 100 / maxFused : 0;
    node.querySelector(".bar-dense").style.width = `${(dense ? dense.contribution : 0) * scale}%`;
    node.querySelector(".bar-sparse").style.width = `${(sparse ? sparse.contribution : 0) * scale}%`;
    const weights = Object.entries(explanation.weights || {})
      .map(([name, w]) => `${name} ×${w}`)
      .join("，");
    node.querySelector(".explain-fused").title = learned
      ? `排序模型分数（LambdaRank）；色条为加权 RRF 份额，k = ${explanation.rrf_k}；权重 ${weights}`
      : `加权 RRF：Σ 权重 ÷ (k + 排名)，k = ${explanation.rrf_k}；权重 ${weights}`;
    node.querySelector(".explain-fused dt").textContent = learned ? "模型" : "融合";
    const ranker = node.querySelector(".explain-ranker");
    const parts = Object.entries(explanation.ranker || {}).filter(([name]) => name !== "bias");
    ranker.hidden = !parts.length;
    if (parts.length) {
      const dd = ranker.querySelector("dd");
      dd.replaceChildren(
        ...parts.map(([name, v]) => el("span", v > 0 ? "up" : "k", `${name} ${v > 0 ? "+" : ""}${fmt(v, 3)}`)),
      );
      dd.title = "对模型分数贡献最大的特征（LightGBM pred_contrib）";
    }
  }

  function renderHit(hit, position, maxFused) {
    const node = template.content.firstElementChild.cloneNode(true);
    node.dataset.docId = hit.doc_id;
    node.querySelector(".hit-rank").textContent = String(position);
    node.classList.toggle("hit-top", position === 1);
    node.querySelector(".hit-title").textContent = hit.title || hit.doc_id;
    renderKindBadge(node.querySelector(".kind-badge"), hit.kind);
    node.querySelector(".hit-doc").textContent = hit.doc_id;
    if (hit.chunk_index > 0) node.querySelector(".hit-chunk").textContent = `片段 ${hit.chunk_index + 1}`;
    const text = node.querySelector(".hit-text");
    text.innerHTML = hit.highlighted; // escaped server-side; the one HTML field
    text.title = "点击展开/收起全文";
    text.addEventListener("click", () => text.classList.toggle("expanded"));
    renderMeta(node.querySelector(".hit-meta"), hit.metadata);
    renderExplanation(node.querySelector(".explain"), hit.explanation, maxFused);
    return node;
  }

  function renderStats(body, state, roundTripMs) {
    const first = state.offset + 1;
    const last = state.offset + body.hits.length;
    $("stat-range").textContent = body.hits.length
      ? `第 ${first}–${last} 条 · ${MODE_LABELS[body.mode] || body.mode}`
      : `无结果 · ${MODE_LABELS[body.mode] || body.mode}`;

    $("took-server").textContent = ms(body.took_ms);
    $("took-roundtrip").textContent = ms(roundTripMs);

    const cache = $("stat-cache");
    cache.replaceChildren();
    const hit = body.cache && body.cache.hit;
    cache.classList.toggle("stat-hit", Boolean(hit));
    cache.append(
      el("span", "stat-label", "缓存"),
      el("b", "", hit ? `命中 · ${CACHE_TIERS[body.cache.tier] || body.cache.tier || "?"}` : "未命中"),
    );

    const route = $("stat-route");
    route.replaceChildren();
    if (body.route) {
      const intent = body.route.intent ?? body.route.name ?? "?";
      route.append(el("span", "stat-label", "路由"), el("b", "", String(intent)));
      if (typeof body.route.confidence === "number") {
        route.append(el("span", "stat-label", `置信度 ${body.route.confidence.toFixed(2)}`));
      }
      route.title = JSON.stringify(body.route);
    }

    const timings = Object.entries(body.timings_ms || {}).map(([key, value]) => {
      const name = key.replace(/_ms$/, "");
      return `${TIMING_LABELS[name] || name} ${ms(value)}`;
    });
    $("stat-timings").textContent = timings.join(" · ");
    $("stat-timings").title = "服务端各阶段耗时";
    $("stats").hidden = false;
  }

  function renderPager(body, state) {
    const hasPrev = state.offset > 0;
    const hasNext = body.hits.length === PAGE_SIZE;
    $("pager").hidden = !hasPrev && !hasNext;
    $("prev").disabled = !hasPrev;
    $("next").disabled = !hasNext;
    $("page-label").textContent = `第 ${Math.floor(state.offset / PAGE_SIZE) + 1} 页`;
  }

  function renderEmpty(state) {
    const box = el("div", "empty");
    box.append(el("strong", "", "没有找到结果"));
    box.append(
      el(
        "span",
        "",
        state.kinds.length ? "试试去掉类别筛选，或换一种说法。" : "换一种说法，或者用人物的别名试试。",
      ),
    );
    results.append(box);
  }

  function reset() {
    $("error").hidden = true;
    $("degraded").hidden = true;
  }

  // ---------- searching ----------

  async function search(state) {
    const key = JSON.stringify(state);
    if (key === lastKey && results.dataset.state !== "error") return;
    lastKey = key;
    document.title = state.q ? `${state.q} · 知识库检索` : "断剑录 · 知识库检索";
    $("welcome").hidden = Boolean(state.q);
    if (inFlight) inFlight.abort();
    if (!state.q) {
      inFlight = null;
      reset();
      results.replaceChildren();
      results.dataset.state = "idle";
      results.dataset.query = "";
      $("stats").hidden = true;
      $("pager").hidden = true;
      return;
    }

    const controller = new AbortController();
    inFlight = controller;
    results.dataset.state = "loading";
    const body = { query: state.q, top_k: PAGE_SIZE, offset: state.offset, mode: state.mode };
    if (state.kinds.length) body.filters = { kind: state.kinds.length === 1 ? state.kinds[0] : state.kinds };

    const started = performance.now();
    let response;
    let payload;
    try {
      response = await fetch("v1/search", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(body),
        signal: controller.signal,
      });
      payload = await response.json().catch(() => null);
    } catch {
      if (controller.signal.aborted) return;
      reset();
      showError("无法连接到搜索服务", "请检查服务是否在运行，然后重试。");
      finish(state, "error");
      return;
    }
    if (controller.signal.aborted) return;
    const roundTripMs = performance.now() - started;
    reset();

    if (!response.ok || !payload || !Array.isArray(payload.hits)) {
      const message = payload && payload.message ? payload.message : `HTTP ${response.status}`;
      const title =
        response.status === 503 ? "搜索服务暂不可用" : response.status >= 500 ? "服务器出错" : "请求有误";
      const field = payload && payload.field ? `（字段 ${payload.field}）` : "";
      showError(title, `${message}${field}`);
      results.replaceChildren();
      $("stats").hidden = true;
      $("pager").hidden = true;
      finish(state, "error");
      return;
    }

    $("degraded").hidden = !payload.degraded;
    const maxFused = Math.max(0, ...payload.hits.map((h) => h.explanation?.fused_score ?? 0));
    const nodes = payload.hits.map((hit, i) => renderHit(hit, state.offset + i + 1, maxFused));
    results.replaceChildren(...nodes);
    if (!nodes.length) renderEmpty(state);
    renderStats(payload, state, roundTripMs);
    renderPager(payload, state);
    finish(state, "done");
  }

  function finish(state, outcome) {
    inFlight = null;
    // Tests and scripts wait on these: which query is on screen, and whether it has arrived.
    results.dataset.query = state.q;
    results.dataset.state = outcome;
  }

  function submit({ push, offset = 0 }) {
    clearTimeout(typingTimer);
    const state = { ...readForm(), offset };
    const url = toUrl(state);
    if (url !== (location.search || location.pathname)) {
      history[push ? "pushState" : "replaceState"](null, "", url);
    }
    search(state);
  }

  // ---------- wiring ----------

  function init() {
    buildKindChips();
    buildExamples();

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      submit({ push: true });
    });
    // Search as you type, but not mid-composition: a pinyin IME sends latin letters first.
    input.addEventListener("input", (event) => {
      if (event.isComposing) return;
      clearTimeout(typingTimer);
      typingTimer = setTimeout(() => submit({ push: false }), TYPING_DELAY_MS);
    });
    input.addEventListener("compositionend", () => {
      clearTimeout(typingTimer);
      typingTimer = setTimeout(() => submit({ push: false }), TYPING_DELAY_MS);
    });
    kindsBox.addEventListener("change", () => submit({ push: true }));
    form.querySelector(".segmented").addEventListener("change", () => submit({ push: true }));

    $("prev").addEventListener("click", () => {
      submit({ push: true, offset: Math.max(0, readUrl().offset - PAGE_SIZE) });
      window.scrollTo({ top: 0 });
    });
    $("next").addEventListener("click", () => {
      submit({ push: true, offset: readUrl().offset + PAGE_SIZE });
      window.scrollTo({ top: 0 });
    });

    window.addEventListener("popstate", () => {
      const state = readUrl();
      writeForm(state);
      search(state);
    });
    document.addEventListener("keydown", (event) => {
      const target = event.target;
      const typing = target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement;
      if (event.key === "/" && !typing) {
        event.preventDefault();
        input.focus();
        input.select();
      }
    });

    checkEngine();
    const state = readUrl();
    writeForm(state);
    search(state);
  }

  init();
})();
