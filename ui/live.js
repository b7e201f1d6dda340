/* HRF Explorer: the live panel, drawn in the browser from the server's live feed.
 *
 * The server publishes what viewers see once per change (explorer/livefeed.py); every open panel
 * holds one server-sent-events stream (/live/stream) and updates its plots in place (Plotly.react),
 * so an idle viewer costs the server nothing. The same panel replays any finished run
 * (/live/run/<id>, the Runs tab) and is the whole page at /?view=1 (read-only, for a slide).
 * Keyboard shortcuts for the presenter are set up here too.
 *
 * Every address is built relative to where the app is served, found from this script's own address
 * (<root>/live/assets/live.js), so the page works under any path prefix (a reverse proxy at /hrf/,
 * jupyter-server-proxy, GRADIO_ROOT_PATH).
 */
(() => {
  "use strict";
  if (window.hrfLiveLoaded) return;
  window.hrfLiveLoaded = true;
  const ROOT = (() => {
    const src = document.currentScript && document.currentScript.src;
    return src ? new URL("../../", src).href : new URL(".", document.baseURI).href;
  })();
  const url = (path) => new URL(String(path).replace(/^\/+/, ""), ROOT).href;
  const params = new URLSearchParams(location.search);
  const VIEWER = params.get("view") === "1";
  if (VIEWER) document.documentElement.classList.add("hrf-viewer");
  window.hrfLive = { version: 0, lastEpoch: null, panels: [] };

  const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const finite = (v) => typeof v === "number" && isFinite(v);
  const whenPlotly = (fn) => (window.Plotly ? fn() : setTimeout(() => whenPlotly(fn), 100));

  class LivePanel {
    constructor(root, mode) {
      this.root = root;
      this.mode = mode; // "live" | "replay"
      this.state = null;
      this.selected = null; // replay: the chosen epoch of the main run (null = follow the latest)
      root.classList.add("hl");
      root.innerHTML = `
        <div class="hl-status"></div>
        <div class="hl-standing"></div>
        <div class="hl-main">
          <div class="hl-plotbox"><div class="hl-plot-title">Reward vs diversity · goal: up without drifting left</div>
            <div class="hl-plot" id="${mode === "live" ? "trajectory-plot" : "replay-plot"}"></div></div>
          <div class="hl-grids"></div>
        </div>
        <div class="hl-replay">
          <button type="button" class="hl-prev" title="previous evaluated epoch (←)">◀</button>
          <input type="range" class="hl-epoch" min="0" max="0" step="1" value="0" aria-label="epoch">
          <button type="button" class="hl-next" title="next evaluated epoch (→)">▶</button>
          <span class="hl-epoch-label"></span>
          <button type="button" class="hl-follow" title="follow the latest epoch (L)">● latest</button>
          <a class="hl-gif" href="#" download>⬇ GIF</a>
        </div>
        <div class="hl-curves" id="${mode === "live" ? "curves-plot" : "replay-curves"}"></div>`;
      this.q = (s) => root.querySelector(s);
      this.q(".hl-epoch").addEventListener("input", (e) => this.select(Number(e.target.value)));
      this.q(".hl-prev").addEventListener("click", () => this.step(-1));
      this.q(".hl-next").addEventListener("click", () => this.step(1));
      this.q(".hl-follow").addEventListener("click", () => this.follow());
      new ResizeObserver(() => this.resize()).observe(root);
      window.hrfLive.panels.push(this);
    }

    visible() { return this.root.offsetParent !== null; }
    resize() { if (window.Plotly && this.visible()) ["hl-plot", "hl-curves"].forEach((c) => { const el = this.q("." + c); if (el && el.data) Plotly.Plots.resize(el); }); }

    /* --- data ------------------------------------------------------------------------------ */
    apply(message) {
      if (message.kind === "full" || !this.state) {
        const { kind, version, ...state } = message;
        this.state = state;
      } else if (message.kind === "rows") {
        this.state.status = message.status;
        for (const run of this.state.runs) (message.append[run.run_id] || []).forEach((row) => run.rows.push(row));
      } else {
        this.state.status = message.status;
      }
      if (message.version) window.hrfLive.version = message.version;
      this.render(message.kind === "status");
    }

    connect() {
      const open = () => {
        const source = new EventSource(url("live/stream"));
        source.onmessage = (event) => this.apply(JSON.parse(event.data));
        source.onerror = () => { if (source.readyState === EventSource.CLOSED) setTimeout(open, 3000); };
        this.source = source;
      };
      open();
    }

    async replay(runId) {
      if (!runId) return;
      // picks can overlap (the Runs tab picks the newest run, then the viewer picks another): answers may come
      // back in any order, and only the newest pick's answer is drawn
      const ticket = (this.ticket = (this.ticket || 0) + 1);
      const response = await fetch(url(`live/run/${encodeURIComponent(runId)}`));
      if (ticket !== this.ticket) return;
      if (!response.ok) { this.q(".hl-status").textContent = `No replay for ${runId}: ${response.status}`; return; }
      const state = await response.json();
      if (ticket !== this.ticket) return;
      // a new run starts at its latest epoch; the same run fetched again (the page asks once more when a busy
      // server answers the pick late) keeps the epoch the viewer stepped to
      if (this.replayed !== runId) this.selected = null;
      this.replayed = runId;
      this.apply({ kind: "full", ...state });
    }

    /* --- replay ------------------------------------------------------------------------------ */
    points(run) {
      const keys = this.state.keys;
      return run.rows.filter((r) => finite(r.reward_mean) && finite(r[keys.diversity]));
    }
    main() { return this.state && this.state.runs.length ? this.state.runs[0] : null; }
    select(index) { this.selected = index; this.render(); }
    step(delta) {
      const run = this.main(); if (!run) return;
      const n = this.points(run).length;
      const current = this.selected ?? n - 1;
      this.select(Math.max(0, Math.min(n - 1, current + delta)));
    }
    follow() { this.selected = null; this.render(); }

    /* --- drawing ----------------------------------------------------------------------------- */
    render(statusOnly = false) {
      const s = this.state; if (!s) return;
      this.q(".hl-status").innerHTML = s.status.html || "";
      const note = s.status.proxy_note ? `<span class="hl-proxy">${esc(s.status.proxy_note)}</span>` : "";
      this.q(".hl-standing").innerHTML = `${esc(s.status.standing || "")} ${note}`;
      if (this.mode === "live") {
        document.querySelectorAll("#train-status").forEach((el) => { el.innerHTML = s.status.html || ""; });
        document.body.classList.toggle("hrf-running", !!s.status.active); // Stop is lit only while something runs
      }
      const run = this.main();
      if (run) {
        const pts = this.points(run);
        const last = pts[pts.length - 1];
        window.hrfLive.lastEpoch = last ? last.epoch : null;
      }
      if (statusOnly && this.drawn) return;
      this.drawn = true;
      this.drawReplayBar();
      this.drawGrids();
      whenPlotly(() => { this.drawTrajectory(); this.drawCurves(); });
    }

    drawReplayBar() {
      const run = this.main(), bar = this.q(".hl-replay");
      if (!run) { bar.style.visibility = "hidden"; return; }
      bar.style.visibility = "visible";
      const pts = this.points(run), slider = this.q(".hl-epoch");
      slider.max = Math.max(0, pts.length - 1);
      const index = this.selected ?? pts.length - 1;
      slider.value = index;
      const point = pts[index];
      this.q(".hl-epoch-label").textContent = point ? `epoch ${point.epoch} of ${run.epochs}${this.selected === null ? " · latest" : ""}` : "";
      this.q(".hl-follow").disabled = this.selected === null;
      const gif = this.q(".hl-gif");
      gif.href = url(run.animate);
      gif.setAttribute("download", `${run.run_id}.gif`);
      gif.style.display = pts.length ? "" : "none";
    }

    /* A grid with its caption (in its method's colour) and, for a prompted model, each row's prompt. */
    gridFigure(path, caption, cls, color, prompts) {
      if (!path) return "";
      const labels = (prompts || []).length
        ? `<div class="hl-rowlabels">${prompts.map((p) => `<span title="${esc(p)}">${esc(p)}</span>`).join("")}</div>` : "";
      const style = color ? ` style="color:${esc(color)}"` : "";
      return `<figure class="${cls}"><figcaption${style}>${esc(caption)}</figcaption>` +
        `<div class="hl-gridrow">${labels}<img src="${esc(url(path))}" alt="${esc(caption)}"></div></figure>`;
    }

    /* What an empty plot or grid box says: it depends on whether a run is under way or ended early. */
    emptyText(what) {
      const st = this.state.status;
      if (st.active) return what === "plot" ? "Evaluating the base model: its point appears first,<br>then one point per evaluated epoch." : "Evaluating the base model…";
      if (st.run_id) return `The run ${st.state === "failed" ? "failed" : "stopped"} before the base model was evaluated:<br>nothing to ${what === "plot" ? "plot" : "show"}.`;
      return what === "plot" ? "Press Start: the base model's point appears first,<br>then one point per evaluated epoch." : "Samples appear here: the base model's, then the latest epoch's.";
    }

    drawGrids() {
      const s = this.state, box = this.q(".hl-grids");
      const main = s.runs[0], pts = main ? this.points(main) : [];
      let html;
      if (!pts.length) html = `<div class="hl-empty">${this.emptyText("grids")}</div>`;
      else {
        const base = main.rows.find((r) => r.epoch === 0 && r.grid);
        const parts = [this.gridFigure(base && base.grid, "epoch 0 · base model", "hl-grid", "", main.prompts)];
        const pick = (run, index) => { const p = this.points(run); return p[Math.min(index ?? p.length - 1, p.length - 1)]; };
        s.runs.forEach((run) => {
          const row = pick(run, this.selected);
          if (row && row.grid && row.epoch > 0) parts.push(this.gridFigure(row.grid, `${run.label} · epoch ${row.epoch}`, "hl-grid", run.color, run.prompts));
        });
        html = parts.join("");
      }
      if (box.dataset.key !== html) { box.innerHTML = html; box.dataset.key = html; }
      box.classList.toggle("hl-wide", !!(main && (main.prompts || []).length)); // one row per prompt: wide grids, stacked
    }

    drawTrajectory() {
      const s = this.state, el = this.q(".hl-plot"), keys = s.keys, traces = [];
      const ref = s.reference;
      if (ref && ref.band && ref.base_reward !== null) {
        const y = ref.band.gain.map((g) => ref.base_reward + g);
        const keep = (arr) => arr.map((v) => (v === null ? NaN : v));
        traces.push({ x: keep(ref.band.low), y, mode: "lines", line: { width: 0 }, hoverinfo: "skip", showlegend: false });
        traces.push({ x: keep(ref.band.high), y, mode: "lines", line: { width: 0 }, fill: "tonextx", fillcolor: "rgba(0,0,0,0.08)", hoverinfo: "skip", showlegend: false });
        traces.push({ x: keep(ref.band.mean), y, mode: "lines", name: "early-stopped DDPO (reference)", line: { color: "#111", width: 2, dash: "dash" },
          hovertemplate: `DDPO reference<br>%{x:.2f} · reward %{y:.4f}<extra>${esc(ref.source)}</extra>` });
      }
      for (const past of s.history) {
        traces.push({ x: past.points.map((p) => p[0]), y: past.points.map((p) => p[1]), mode: "lines+markers", opacity: 0.3,
          line: { color: past.color, width: 1.5 }, marker: { size: 4, color: past.color },
          name: `${past.label} · ${past.example ? "example" : "earlier run"}`, text: past.points.map((p) => p[2]),
          hovertemplate: `${esc(past.label)} · ${esc(past.run_id)}<br>epoch %{text}<br>%{x:.2f} · reward %{y:.4f}<extra></extra>` });
      }
      s.runs.forEach((run, i) => {
        const pts = this.points(run);
        if (!pts.length) return;
        traces.push({ x: pts.map((r) => r[keys.diversity]), y: pts.map((r) => r.reward_mean), mode: "lines+markers", name: run.label + (run.example ? " · example" : ""),
          line: { color: run.color, width: 3 }, marker: { size: 8, color: run.color }, text: pts.map((r) => r.epoch),
          hovertemplate: `${esc(run.label)}<br>epoch %{text}<br>%{x:.2f} · reward %{y:.4f}<extra></extra>` });
        const index = i === 0 && this.selected !== null ? this.selected : pts.length - 1;
        const at = pts[Math.min(index, pts.length - 1)];
        if (pts.length > 1) traces.push({ x: [at[keys.diversity]], y: [at.reward_mean], mode: "markers+text", showlegend: false, hoverinfo: "skip", cliponaxis: false,
          marker: { size: 16, color: run.color, line: { width: 3, color: "white" } }, text: [`epoch ${at.epoch}`], textposition: "top center" });
      });
      const first = s.runs.length ? this.points(s.runs[0])[0] : null;
      if (first) traces.push({ x: [first[keys.diversity]], y: [first.reward_mean], mode: "markers+text", name: "base model", cliponaxis: false,
        marker: { size: 16, symbol: "star", color: "#ffbf00", line: { width: 1, color: "#333" } }, text: ["base"], textposition: "bottom center", hoverinfo: "skip" });
      const layout = { template: "plotly_white", height: 400, margin: { l: 60, r: 20, t: 30, b: 50 }, hovermode: "closest",
        xaxis: { title: { text: `diversity: ${keys.diversity_label} →` } }, yaxis: { title: { text: `reward: ${s.reward || "mean"} ↑` } },
        legend: { orientation: "h", y: -0.22, x: 0 } };
      if (!traces.length) layout.annotations = [{ text: this.emptyText("plot"), showarrow: false, x: 0.5, y: 0.5, xref: "paper", yref: "paper", font: { size: 14, color: "#666" } }];
      Plotly.react(el, traces, layout, { displaylogo: false, responsive: true });
    }

    drawCurves() {
      const s = this.state, el = this.q(".hl-curves"), keys = s.keys, traces = [];
      const third = keys.inception ? [keys.inception, "Inception Score"] : ["clip_fraction", "PPO clip fraction"];
      s.runs.forEach((run) => {
        const series = (key) => { const rows = run.rows.filter((r) => finite(r[key])); return [rows.map((r) => r.epoch), rows.map((r) => r[key])]; };
        const add = (key, axis, name, extra = {}) => { const [x, y] = series(key); traces.push({ x, y, xaxis: `x${axis}`, yaxis: `y${axis}`, mode: "lines+markers", name, line: { color: run.color }, showlegend: false, ...extra }); };
        const tag = s.runs.length > 1 ? ` · ${run.label}` : "";
        add("reward_mean", "", `eval reward${tag}`);
        add("train_reward_mean", "", `training reward${tag}`, { mode: "lines", line: { color: run.color, dash: "dot", width: 1 }, opacity: 0.6 });
        add(keys.diversity, "2", `Vendi${tag}`);
        add(third[0], "3", `${third[1]}${tag}`);
      });
      const title = (text) => ({ title: { text, font: { size: 12 } } });
      const layout = { template: "plotly_white", height: 260, margin: { l: 50, r: 20, t: 30, b: 40 }, showlegend: false,
        xaxis: { domain: [0, 0.28], anchor: "y", ...title("epoch") }, yaxis: { anchor: "x", ...title("reward") },
        xaxis2: { domain: [0.36, 0.64], anchor: "y2", ...title("epoch") }, yaxis2: { anchor: "x2", ...title(keys.diversity_label) },
        xaxis3: { domain: [0.72, 1], anchor: "y3", ...title("epoch") }, yaxis3: { anchor: "x3", ...title(third[1]) } };
      Plotly.react(el, traces, layout, { displaylogo: false, responsive: true });
    }
  }

  /* --- mounting: the Live tab, the Runs tab's replay, or the whole viewer page ------------------ */
  function mount() {
    const live = document.getElementById("hrf-live");
    if (live && !live.hrfPanel) { live.hrfPanel = new LivePanel(live, "live"); live.hrfPanel.connect(); }
    const replay = document.getElementById("hrf-replay");
    if (replay && !replay.hrfPanel) replay.hrfPanel = new LivePanel(replay, "replay");
    if (VIEWER) { const tab = document.querySelector("#tab-live-button, button[role=tab][id$='live-button']"); if (tab && !tab.hrfClicked) { tab.hrfClicked = true; tab.click(); } }
    return live;
  }
  const watcher = setInterval(() => { if (mount() && document.getElementById("hrf-replay") !== null) clearInterval(watcher); }, 200);
  setTimeout(() => clearInterval(watcher), 60000);
  window.hrfReplay = (runId) => {
    mount();
    const replay = document.getElementById("hrf-replay");
    if (replay && replay.hrfPanel) replay.hrfPanel.replay(runId);
    return runId;
  };

  /* --- keyboard shortcuts for the presenter ------------------------------------------------- */
  const click = (selector) => { const el = [...document.querySelectorAll(selector)].find((e) => e.offsetParent !== null) || document.querySelector(selector); if (el) el.click(); };
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (target && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName))) return;
    const panel = window.hrfLive.panels.find((p) => p.visible());
    const key = event.key;
    if (!VIEWER && (key === "s" || key === "S")) click("#start-btn");
    else if (!VIEWER && (key === "d" || key === "D")) click("#duel-btn");
    else if (!VIEWER && (key === "x" || key === "X")) click("#live-stop-btn, #stop-btn");
    else if (!VIEWER && /^[1-5]$/.test(key)) { const tabs = document.querySelectorAll("button[role=tab]"); if (tabs[Number(key) - 1]) tabs[Number(key) - 1].click(); }
    else if (panel && key === "ArrowLeft") panel.step(-1);
    else if (panel && key === "ArrowRight") panel.step(1);
    else if (panel && (key === "l" || key === "L")) panel.follow();
    else return;
    event.preventDefault();
  });
})();
