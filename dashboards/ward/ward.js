// vitaltwin ward dashboard: plain JavaScript, no build step, no dependencies.
//
// Data comes from the API (/api/v1/...) with the bearer token the user gives (login form, or
// a "#token=..." URL fragment, which is removed from the address bar at once). The token is
// kept in sessionStorage: it lives as long as the tab. Live updates arrive as Server-Sent
// Events read with fetch(), because EventSource cannot send an Authorization header.
// Every value is inserted as text (never as HTML): alert texts and ids come from the server.
"use strict";

(function () {
  const API = "/api/v1";
  const SVG = "http://www.w3.org/2000/svg";
  const BANDS = { high: "High", medium: "Medium", low_medium: "Low–medium", low: "Low", routine: "Routine" };
  const BAND_RANK = { high: 4, medium: 3, low_medium: 2, low: 1, routine: 0 };
  const TILE_VITALS = [
    ["heart_rate", "HR", 0], ["respiratory_rate", "RR", 0], ["spo2", "SpO₂", 0],
    ["systolic_bp", "SBP", 0], ["temperature", "Temp", 1],
  ];
  const CHANNELS = [
    ["heart_rate", "Heart rate", "/min"], ["respiratory_rate", "Respiratory rate", "/min"],
    ["spo2", "SpO₂", "%"], ["systolic_bp", "Systolic BP", "mmHg"],
    ["temperature", "Temperature", "°C"],
  ];
  const LAB_SIGNALS = ["lactate", "wbc", "creatinine", "glucose_lab", "crp"];
  const RULES = {
    news2_high: "NEWS2 high", news2_medium: "NEWS2 medium", news2_single_parameter: "NEWS2 red score",
    qsofa: "qSOFA ≥ 2", spo2_below_target: "SpO₂ below target",
    forecast_deterioration_12h: "Forecast: deterioration 12 h",
  };
  const ruleName = (rule) => RULES[rule] || rule.replaceAll("_", " ");
  const HOUR = 3600 * 1000;

  const state = { token: null, patients: new Map(), route: null, stream: null, twin: null };
  const $ = (id) => document.getElementById(id);

  // ---- small DOM helpers ------------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined) el.setAttribute(k, String(v));
    }
    for (const c of children.flat()) if (c) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return el;
  }

  const hhmm = (ms) => new Date(ms).toISOString().slice(11, 16);
  const when = (ms) => new Date(ms).toISOString().slice(0, 16).replace("T", " ") + " UTC";
  const short = (pid) => (pid.length > 12 ? pid.slice(0, 11) + "…" : pid);
  const fmt = (v, d) => (v === null || v === undefined ? "–" : Number(v).toFixed(d));
  const pct = (p) => Math.round(p * 100) + " %";

  function toast(text) {
    const t = $("toast");
    t.textContent = text;
    t.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { t.hidden = true; }, 4000);
  }

  // ---- API ----------------------------------------------------------------------------------

  class Unauthorized extends Error {}

  async function api(path, options) {
    const res = await fetch(API + path, {
      ...(options || {}),
      headers: { Authorization: "Bearer " + state.token, Accept: "application/json",
                 ...((options && options.headers) || {}) },
      cache: "no-store",
    });
    if (res.status === 401) throw new Unauthorized("token refused");
    const body = res.headers.get("content-type")?.includes("json") ? await res.json() : null;
    if (!res.ok) {
      const err = new Error(body?.error?.message || res.statusText);
      err.status = res.status;
      throw err;
    }
    return body;
  }

  // ---- token and routing --------------------------------------------------------------------

  function takeToken() {
    const m = /(?:^|&)token=([^&]+)/.exec(location.hash.slice(1));
    if (m) {
      sessionStorage.setItem("vitaltwin.token", decodeURIComponent(m[1]));
      history.replaceState(null, "", location.pathname + location.search);
    }
    state.token = sessionStorage.getItem("vitaltwin.token");
  }

  function showLogin(message) {
    stopStream();
    $("ward").hidden = true;
    $("patient").hidden = true;
    $("login").hidden = false;
    $("logout").hidden = true;
    $("login-error").hidden = !message;
    $("login-error").textContent = message || "";
    $("token-input").focus();
  }

  function route() {
    const m = /^\/patients\/([^/]+)$/.exec(location.pathname);
    return m ? { view: "patient", pid: decodeURIComponent(m[1]) } : { view: "ward" };
  }

  function go(path) {
    history.pushState(null, "", path);
    start();
  }

  async function start() {
    if (!state.token) return showLogin();
    $("login").hidden = true;
    $("logout").hidden = false;
    state.route = route();
    try {
      if (state.route.view === "ward") await showWard();
      else await showPatient(state.route.pid);
      startStream();
    } catch (e) {
      if (e instanceof Unauthorized) {
        sessionStorage.removeItem("vitaltwin.token");
        state.token = null;
        showLogin("That token was not accepted.");
      } else {
        toast("Could not load: " + e.message);
      }
    }
  }

  // ---- ward view ----------------------------------------------------------------------------

  async function showWard() {
    $("patient").hidden = true;
    $("ward").hidden = false;
    $("crumb").textContent = "Ward overview";
    document.title = "vitaltwin · ward";
    const page = await api("/patients?limit=500");
    state.patients = new Map(page.items.map((p) => [p.patient_id, p]));
    renderWard();
  }

  function riskOrder(a, b) {
    return (BAND_RANK[b.news2_band] || 0) - (BAND_RANK[a.news2_band] || 0)
      || b.news2_total - a.news2_total
      || (b.forecast_risk ?? -1) - (a.forecast_risk ?? -1)
      || (a.patient_id < b.patient_id ? -1 : 1);
  }

  // Rebuild the tiles of the patients in ``changed`` (all when omitted), then put every tile in
  // risk order; unchanged tiles are moved, not rebuilt.
  function renderWard(changed) {
    const items = [...state.patients.values()].sort(riskOrder);
    const tiles = $("tiles");
    const existing = new Map([...tiles.children].map((el) => [el.dataset.patientId, el]));
    items.forEach((p, i) => {
      const old = existing.get(p.patient_id);
      let el = old;
      if (!old || !changed || changed.has(p.patient_id)) {
        el = tile(p);
        if (old) {
          if (old.dataset.watermark !== el.dataset.watermark) el.classList.add("flash");
          old.replaceWith(el);
        }
      }
      const at = tiles.children[i];
      if (at !== el) tiles.insertBefore(el, at || null);
    });
    for (const [pid, el] of existing) if (!state.patients.has(pid)) el.remove();
    $("ward-empty").hidden = items.length > 0;
    const counts = {};
    let firing = 0;
    for (const p of items) {
      counts[p.news2_band] = (counts[p.news2_band] || 0) + 1;
      firing += p.alerts.filter((a) => a.status === "firing").length;
    }
    const newest = Math.max(0, ...items.map((p) => p.watermark_ms));
    if (newest > 0) $("clock").textContent = when(newest);
    const summary = $("ward-summary");
    summary.replaceChildren(
      h("span", { class: "count" }, `${items.length} patients`),
      ...["high", "medium", "low_medium", "low", "routine"]
        .filter((b) => counts[b])
        .map((b) => h("span", { class: "chip band-" + b }, `${counts[b]} ${BANDS[b]}`)),
      h("span", { class: "count alerts-count", "data-firing": firing }, `${firing} alerts firing`),
    );
  }

  function tile(p) {
    const firing = p.alerts.filter((a) => a.status === "firing");
    const el = h("article", {
      class: `tile band-${p.news2_band}` + (firing.length ? " has-firing" : ""),
      "data-patient-id": p.patient_id, "data-watermark": p.watermark_ms,
      "data-news2": p.news2_total, tabindex: 0,
      onclick: (ev) => { if (!ev.target.closest("button")) go("/patients/" + encodeURIComponent(p.patient_id)); },
      onkeydown: (ev) => { if (ev.key === "Enter") go("/patients/" + encodeURIComponent(p.patient_id)); },
    });
    el.append(
      h("div", { class: "tile-head" },
        h("div", { class: "score", title: "NEWS2" },
          h("span", { class: "news2" }, p.news2_total),
          h("span", { class: "band-name" }, BANDS[p.news2_band] || p.news2_band)),
        h("div", { class: "who" },
          h("span", { class: "pid", title: p.patient_id }, short(p.patient_id)),
          h("span", { class: "meta" }, (p.ward ? p.ward + " · " : "") + `qSOFA ${p.qsofa_total} · ${hhmm(p.watermark_ms)}`
            + (p.news2_complete ? "" : " · incomplete")))),
      h("div", { class: "vitals" }, TILE_VITALS.map(([sig, label, d]) => {
        const r = p.vitals[sig];
        return h("div", { class: "vital", "data-signal": sig },
          h("span", { class: "label" }, label), h("span", { class: "value" }, r ? fmt(r.value, d) : "–"));
      })),
      h("div", { class: "trends" },
        h("div", { class: "trend" }, h("span", { class: "label" }, "HR 3 h"), sparkline(p.sparkline)),
        h("div", { class: "trend" }, h("span", { class: "label" }, "Forecast risk"), riskTrajectory(p))),
      alertList(p.alerts, true),
    );
    return el;
  }

  function sparkline(raw) {
    const w = 150, hgt = 34;
    const svg = s("svg", { viewBox: `0 0 ${w} ${hgt}`, class: "spark", role: "img", "aria-label": "heart rate trend" });
    if (!raw) return h("span", { class: "none" }, "no data");
    // Start at the first bin with data (a newly admitted patient has only a few bins).
    const first = raw.values.findIndex((v) => v !== null);
    const sp = { ...raw, values: raw.values.slice(Math.min(first, raw.values.length - 2)) };
    const vals = sp.values.filter((v) => v !== null);
    const lo = Math.min(...vals) - 2, hi = Math.max(...vals) + 2;
    const x = (i) => (i / (sp.values.length - 1)) * (w - 4) + 2;
    const y = (v) => hgt - 3 - ((v - lo) / (hi - lo || 1)) * (hgt - 6);
    let d = "", pen = false;
    sp.values.forEach((v, i) => {
      if (v === null) { pen = false; return; }
      d += (pen ? "L" : "M") + x(i).toFixed(1) + " " + y(v).toFixed(1);
      pen = true;
    });
    svg.append(s("path", { d, class: "spark-line" }));
    const last = sp.values.length - 1 - [...sp.values].reverse().findIndex((v) => v !== null);
    svg.append(s("circle", { cx: x(last), cy: y(sp.values[last]), r: 2.5, class: "spark-dot" }));
    return svg;
  }

  function riskTrajectory(p) {
    const pts = p.risk_trajectory || [];
    if (!pts.length) return h("span", { class: "none no-forecast" }, "no forecast yet");
    const w = 150, hgt = 34, maxH = Math.max(...pts.map((r) => r.horizon_h));
    const x = (hz) => 4 + (hz / maxH) * (w - 8);
    const y = (pr) => hgt - 3 - pr * (hgt - 6);
    const svg = s("svg", { viewBox: `0 0 ${w} ${hgt}`, class: "spark risk", role: "img",
                           "aria-label": "forecast risk by horizon" });
    svg.append(s("line", { x1: 0, x2: w, y1: y(0.3), y2: y(0.3), class: "threshold" }));
    svg.append(s("path", { d: "M" + pts.map((r) => `${x(r.horizon_h).toFixed(1)} ${y(r.probability).toFixed(1)}`).join("L"), class: "risk-line" }));
    for (const r of pts) svg.append(s("circle", { cx: x(r.horizon_h), cy: y(r.probability), r: 2.2, class: "risk-dot" }, s("title", {}, `${r.horizon_h} h: ${pct(r.probability)}`)));
    return h("span", { class: "risk-wrap" }, svg, h("span", { class: "risk-max" }, pct(p.forecast_risk)));
  }

  function alertList(alerts, compact) {
    const active = alerts.filter((a) => a.status === "firing" || a.status === "acknowledged");
    if (!active.length) return compact ? h("div", { class: "alerts-none" }, "No active alerts") : null;
    return h("ul", { class: "alert-list" }, active.map((a) => h("li", {
      class: `alert sev-${a.severity} st-${a.status}`, "data-alert-id": a.alert_id, "data-status": a.status,
    },
      h("span", { class: "rule", title: a.summary }, ruleName(a.rule)),
      a.status === "firing"
        ? h("button", { type: "button", class: "ack", "data-alert-id": a.alert_id,
                        onclick: (ev) => acknowledge(ev, a) }, "Acknowledge")
        : h("span", { class: "acked" }, "ack " + (a.acknowledged_by || "")))));
  }

  async function acknowledge(ev, alert) {
    ev.stopPropagation();
    const btn = ev.currentTarget;
    btn.disabled = true;
    btn.textContent = "…";
    try {
      const got = await api(`/alerts/${encodeURIComponent(alert.alert_id)}/acknowledge`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: "{}",
      });
      await refreshPatient(alert.patient_id);
      toast(`Acknowledged ${ruleName(alert.rule)} (${got.audit_id.slice(0, 11)})`);
    } catch (e) {
      btn.disabled = false;
      btn.textContent = "Acknowledge";
      if (e.status === 403) toast("Your role may not acknowledge alerts (clinician token needed).");
      else if (e.status === 409) { toast(e.message); await refreshPatient(alert.patient_id); }
      else toast("Acknowledge failed: " + e.message);
    }
  }

  async function refreshPatient(pid) {
    const twin = await api("/patients/" + encodeURIComponent(pid));
    if (state.route.view === "ward") {
      state.patients.set(pid, twin);
      renderWard(new Set([pid]));
    } else if (state.route.pid === pid) {
      await showPatient(pid, true);
    }
  }

  // ---- patient view -------------------------------------------------------------------------

  async function showPatient(pid, quiet) {
    const twin = await api("/patients/" + encodeURIComponent(pid));
    state.twin = twin;
    $("ward").hidden = true;
    $("patient").hidden = false;
    $("crumb").textContent = "Patient " + short(pid);
    document.title = "vitaltwin · " + short(pid);
    $("clock").textContent = when(twin.watermark_ms);
    const end = twin.watermark_ms + 60 * 1000;
    const start = end - 6 * HOUR;
    const [histories, labs, alerts] = await Promise.all([
      Promise.all(CHANNELS.map(([sig]) => api(`/patients/${encodeURIComponent(pid)}/history?signal=${sig}&start_ms=${start}&end_ms=${end}&limit=10000`))),
      Promise.all(LAB_SIGNALS.map((sig) => api(`/patients/${encodeURIComponent(pid)}/history?signal=${sig}&start_ms=${start}&end_ms=${end}&limit=1000`))),
      api(`/alerts?patient_id=${encodeURIComponent(pid)}&limit=100`),
    ]);
    const firstSeen = Math.min(...histories.flatMap((hh) => hh.points.slice(0, 1).map((p) => p.t_ms)));
    const from = Number.isFinite(firstSeen) ? Math.max(start, firstSeen - 10 * 60 * 1000) : start;
    renderPatientHead(twin);
    renderCharts(twin, histories, labs, from, end);
    renderForecast(twin.forecast);
    renderExplanation(twin.forecast);
    renderLabs(twin);
    renderAlertHistory(alerts.items);
    if (!quiet) window.scrollTo(0, 0);
  }

  function renderPatientHead(t) {
    const points = Object.entries(t.news2_points).map(([k, v]) =>
      h("span", { class: "pt" + (v >= 3 ? " red" : v > 0 ? " amber" : "") }, `${k.replaceAll("_", " ")} ${v}`));
    $("patient-head").replaceChildren(
      h("a", { href: "/", class: "back", onclick: (ev) => { ev.preventDefault(); go("/"); } }, "← Ward"),
      h("div", { class: `score big band-${t.news2_band}`, "data-news2": t.news2_total },
        h("span", { class: "news2" }, t.news2_total), h("span", { class: "band-name" }, BANDS[t.news2_band])),
      h("div", { class: "who" },
        h("span", { class: "pid" }, t.patient_id),
        h("span", { class: "meta" }, `${t.ward || "no ward"} · qSOFA ${t.qsofa_total} · SpO₂ scale ${t.spo2_scale}`
          + ` · ${t.on_oxygen ? "on oxygen" : "room air"} · event time ${when(t.watermark_ms)}`),
        h("span", { class: "points" }, points,
          t.news2_missing.length ? h("span", { class: "pt missing" }, "missing: " + t.news2_missing.join(", ")) : null)),
      h("div", { class: "head-alerts" }, alertList(t.alerts, false)),
    );
  }

  function renderCharts(twin, histories, labs, start, end) {
    const fc = twin.forecast;
    const fcEnd = fc ? Math.max(end, ...fc.quantiles.flatMap((q) => q.points.map((p) => p.t_ms))) : end;
    $("chart-range").textContent = `${hhmm(start)}–${hhmm(end)} UTC` + (fc ? ` + forecast to ${hhmm(fcEnd)}` : "");
    const events = [];
    labs.forEach((hist) => hist.points.forEach((p) => events.push({ t: p.t_ms, kind: "lab", text: `${hist.signal} ${fmt(p.value, 1)} ${hist.unit}` })));
    for (const m of twin.medications) {
      if (m.first_ms !== null) events.push({ t: m.first_ms, kind: "med", text: `${m.medication} started` });
      events.push({ t: m.last_ms, kind: "med", text: `${m.medication} ${m.action}` });
    }
    $("charts").replaceChildren(...CHANNELS.map(([sig, label, unit], i) =>
      channelChart(sig, label, unit, histories[i].points, fc, start, fcEnd, end, events, i === CHANNELS.length - 1)));
  }

  function channelChart(sig, label, unit, points, fc, start, stop, now, events, axis) {
    const W = 760, H = axis ? 112 : 92, L = 46, R = 8, T = 8, B = axis ? 26 : 8;
    const series = fc ? fc.quantiles.find((q) => q.signal === sig) : null;
    const qpts = series ? series.points : [];
    const q = (pt, lv) => pt.quantiles[lv] ?? null;
    const vals = points.map((p) => p.value).concat(qpts.flatMap((p) => Object.values(p.quantiles)));
    const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", "data-signal": sig, role: "img", "aria-label": label });
    const head = h("div", { class: "chart-head" }, h("span", { class: "label" }, label),
      h("span", { class: "value" }, points.length ? `${fmt(points[points.length - 1].value, sig === "temperature" ? 1 : 0)} ${unit}` : "–"));
    if (!vals.length) return h("div", { class: "chart-row" }, head, h("p", { class: "none" }, "no readings in range"));
    let lo = Math.min(...vals), hi = Math.max(...vals);
    const pad = Math.max((hi - lo) * 0.12, sig === "temperature" ? 0.3 : 2);
    lo -= pad; hi += pad;
    const x = (t) => L + ((t - start) / (stop - start)) * (W - L - R);
    const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
    for (const frac of [0, 0.5, 1]) {
      const v = lo + (hi - lo) * frac;
      svg.append(s("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
      svg.append(s("text", { x: L - 6, y: y(v) + 4, class: "tick", "text-anchor": "end" }, fmt(v, sig === "temperature" ? 1 : 0)));
    }
    if (axis) {
      const step = stop - start > 4 * HOUR ? HOUR : HOUR / 4;
      for (let t = Math.ceil(start / step) * step; t <= stop; t += step) {
        svg.append(s("text", { x: x(t), y: H - 8, class: "tick", "text-anchor": "middle" }, hhmm(t)));
      }
    }
    svg.append(s("line", { x1: x(now), x2: x(now), y1: T, y2: H - B, class: "now" }));
    if (qpts.length) {
      const band = (a, b, cls) => {
        const upper = qpts.filter((p) => q(p, a) !== null && q(p, b) !== null);
        if (!upper.length) return;
        const d = "M" + upper.map((p) => `${x(p.t_ms).toFixed(1)} ${y(q(p, b)).toFixed(1)}`).join("L")
          + "L" + [...upper].reverse().map((p) => `${x(p.t_ms).toFixed(1)} ${y(q(p, a)).toFixed(1)}`).join("L") + "Z";
        svg.append(s("path", { d, class: cls }));
      };
      band("0.1", "0.9", "band80");
      band("0.25", "0.75", "band50");
      const med = qpts.filter((p) => q(p, "0.5") !== null);
      if (med.length) svg.append(s("path", { d: "M" + med.map((p) => `${x(p.t_ms).toFixed(1)} ${y(q(p, "0.5")).toFixed(1)}`).join("L"), class: "median" }));
    }
    let d = "", prev = null;
    for (const p of points) {
      const gap = prev !== null && p.t_ms - prev > 15 * 60 * 1000;
      d += (d && !gap ? "L" : "M") + x(p.t_ms).toFixed(1) + " " + y(p.value).toFixed(1);
      prev = p.t_ms;
    }
    svg.append(s("path", { d, class: "obs" }));
    for (const ev of events) {
      if (ev.t < start || ev.t > stop) continue;
      svg.append(s("line", { x1: x(ev.t), x2: x(ev.t), y1: T, y2: H - B, class: "event " + ev.kind }, s("title", {}, ev.text)));
    }
    return h("div", { class: "chart-row" }, head, svg);
  }

  function renderForecast(fc) {
    const box = $("forecast");
    if (!fc) return box.replaceChildren(h("p", { class: "none no-forecast" }, "No forecast yet."));
    box.replaceChildren(
      h("p", { class: "meta" }, `${fc.model} · ${fc.outcome} · made ${when(fc.made_at_ms)}`),
      h("table", { class: "risk-table" },
        h("tr", {}, h("th", {}, "Within"), h("th", {}, "Probability"), h("th", {}, "")),
        fc.risk.map((r) => h("tr", {},
          h("td", {}, `${r.horizon_h} h`),
          h("td", {}, pct(r.probability) + (r.lower !== null && r.upper !== null ? ` (${pct(r.lower)}–${pct(r.upper)})` : "")),
          h("td", {}, bar(r.probability, r.probability >= 0.3 ? "hot" : ""))))));
  }

  function bar(frac, cls) {
    const svg = s("svg", { viewBox: "0 0 100 8", class: "bar " + (cls || "") });
    svg.append(s("rect", { x: 0, y: 0, width: 100, height: 8, class: "bar-bg" }));
    svg.append(s("rect", { x: 0, y: 0, width: Math.max(1, Math.min(100, frac * 100)), height: 8, class: "bar-fg" }));
    return svg;
  }

  function renderExplanation(fc) {
    const box = $("explanation");
    if (!fc || !fc.explanation.length) return box.replaceChildren(h("p", { class: "none" }, "No explanation available."));
    const top = Math.max(...fc.explanation.map((d) => Math.abs(d.weight)));
    box.replaceChildren(h("table", { class: "drivers" }, fc.explanation.map((d) => h("tr", {},
      h("td", { class: "feature", title: d.detail }, d.feature.replaceAll("_", " ")),
      h("td", {}, bar(Math.abs(d.weight) / (top || 1), d.weight < 0 ? "neg" : "")),
      h("td", { class: "num" }, fmt(d.weight, 2))))));
  }

  function renderLabs(t) {
    const rows = Object.entries(t.labs).map(([sig, r]) => h("tr", {}, h("td", {}, sig.replaceAll("_", " ")),
      h("td", { class: "num" }, `${fmt(r.value, 1)} ${r.unit}`), h("td", { class: "meta" }, when(r.t_ms))));
    const meds = t.medications.map((m) => h("tr", {}, h("td", {}, m.medication.replaceAll("_", " ")),
      h("td", {}, m.action + (m.dose !== null ? ` ${m.dose}` : "")), h("td", { class: "meta" }, when(m.last_ms))));
    const box = $("labs");
    if (!rows.length && !meds.length) return box.replaceChildren(h("p", { class: "none" }, "No labs or medication recorded."));
    box.replaceChildren(h("table", { class: "labs" }, rows, meds),
      t.conditions.length ? h("p", { class: "meta" }, "Conditions: " + t.conditions.join(", ")) : "");
  }

  function renderAlertHistory(items) {
    const table = $("alert-history");
    const head = h("tr", {}, ["Started", "Rule", "Severity", "Status", "Summary", ""].map((c) => h("th", {}, c)));
    if (!items.length) return table.replaceChildren(head, h("tr", {}, h("td", { colspan: 6, class: "none" }, "No alerts.")));
    table.replaceChildren(head, ...items.map((a) => h("tr", { class: `sev-${a.severity} st-${a.status}`, "data-alert-id": a.alert_id, "data-status": a.status },
      h("td", {}, when(a.starts_ms)), h("td", {}, ruleName(a.rule)), h("td", {}, a.severity),
      h("td", {}, a.status + (a.acknowledged_by ? ` by ${a.acknowledged_by}` : "")), h("td", {}, a.summary),
      h("td", {}, a.status === "firing" ? h("button", { type: "button", class: "ack", "data-alert-id": a.alert_id, onclick: (ev) => acknowledge(ev, a) }, "Acknowledge") : ""))));
  }

  // ---- live updates (SSE over fetch) --------------------------------------------------------

  function setLive(stateName, text) {
    const el = $("live");
    el.dataset.state = stateName;
    el.textContent = text;
  }

  function stopStream() {
    if (state.stream) state.stream.abort();
    state.stream = null;
    setLive("off", "offline");
  }

  function startStream() {
    if (state.stream) return;
    const ctrl = new AbortController();
    state.stream = ctrl;
    let delay = 1000;
    (async function loop() {
      while (!ctrl.signal.aborted) {
        try {
          const res = await fetch(API + "/stream", {
            headers: { Authorization: "Bearer " + state.token, Accept: "text/event-stream" },
            signal: ctrl.signal, cache: "no-store",
          });
          if (res.status === 401) { stopStream(); return showLogin("Your token is no longer accepted."); }
          if (!res.ok || !res.body) throw new Error("stream " + res.status);
          setLive("on", "live");
          delay = 1000;
          const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
          let buf = "";
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buf += value;
            let cut;
            while ((cut = buf.indexOf("\n\n")) >= 0) {
              handleEvent(buf.slice(0, cut));
              buf = buf.slice(cut + 2);
            }
          }
        } catch (e) {
          if (ctrl.signal.aborted) return;
        }
        setLive("wait", "reconnecting");
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 15000);
      }
    })();
  }

  let pendingRefresh = null;

  function handleEvent(block) {
    let event = "message", data = "";
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data += line.slice(5).trim();
    }
    if (!data) return;
    const body = JSON.parse(data);
    if (event === "patients") {
      if (state.route.view === "ward") {
        for (const p of body.items) state.patients.set(p.patient_id, p);
        renderWard(new Set(body.items.map((p) => p.patient_id)));
      } else if (body.items.some((p) => p.patient_id === state.route.pid)) {
        scheduleRefresh(state.route.pid);
      }
    } else if (event === "alerts") {
      const ids = state.route.view === "ward"
        ? body.patient_ids.filter((pid) => state.patients.has(pid))
        : body.patient_ids.filter((pid) => pid === state.route.pid);
      for (const pid of ids) scheduleRefresh(pid);
    } else if (event === "resync") {
      start();
    }
  }

  // Coalesce refreshes: at most one round of requests per second, whatever the event rate.
  const dirty = new Set();
  function scheduleRefresh(pid) {
    dirty.add(pid);
    if (pendingRefresh) return;
    pendingRefresh = setTimeout(async () => {
      const ids = [...dirty];
      dirty.clear();
      pendingRefresh = null;
      for (const id of ids) {
        try { await refreshPatient(id); } catch (e) { /* the next event retries */ }
      }
    }, 1000);
  }

  // ---- boot ---------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      state.token = $("token-input").value.trim();
      sessionStorage.setItem("vitaltwin.token", state.token);
      $("token-input").value = "";
      start();
    });
    $("logout").addEventListener("click", () => {
      sessionStorage.removeItem("vitaltwin.token");
      state.token = null;
      showLogin();
    });
    $("home-link").addEventListener("click", (ev) => { ev.preventDefault(); go("/"); });
    window.addEventListener("popstate", start);
    window.addEventListener("hashchange", () => { takeToken(); start(); });
    takeToken();
    start();
  });
})();
