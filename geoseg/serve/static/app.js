// geoseg serve: the map page.  Everything comes from this server (no CDN).
"use strict";
(function () {
  const params = new URLSearchParams(window.location.search);
  const token = params.get("token");
  const $ = (id) => document.getElementById(id);
  const state = { model: null, scenes: [], scene: null, rgb: null, cells: null, job: null, events: null,
                  classTilesLoaded: 0 };
  window.geoseg = state; // for debugging and the browser test

  function withToken(url) {
    if (!token) return url;
    return url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
  }
  async function api(path, opts) {
    const r = await fetch(withToken("api/" + path), opts);
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    if (!r.ok) throw new Error((body && body.error) || r.status + " " + r.statusText);
    return body;
  }
  function say(msg) { $("message").textContent = msg || ""; }
  function esc(s) { return String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"})[c]); }

  const map = L.map("map", { zoomControl: true, attributionControl: true });
  map.attributionControl.setPrefix("geoseg · Leaflet");

  function legend() {
    const el = $("legend");
    el.innerHTML = "";
    for (const c of state.model.classes) {
      const row = document.createElement("div");
      row.className = "legend-row";
      row.innerHTML = `<span class="swatch" style="background:${esc(c.color)}"></span>${esc(c.name)}`;
      el.appendChild(row);
    }
  }

  function cellLayerName() { return $("confidence").checked ? "confidence" : "classes"; }

  function tileUrl(scene, layer) {
    return withToken(`api/scenes/${scene.id}/tiles/${layer}/{z}/{x}/{y}.png`);
  }

  function showScene(scene) {
    state.scene = scene;
    if (state.rgb) map.removeLayer(state.rgb);
    if (state.cells) map.removeLayer(state.cells);
    const [w, s, e, n] = scene.bounds;
    const bounds = L.latLngBounds([s, w], [n, e]);
    const nz = scene.native_zoom;
    const opts = { bounds: bounds, minZoom: Math.max(0, nz - 6), maxZoom: nz + 4, tileSize: 256,
                   keepBuffer: 1, updateWhenZooming: false };
    state.rgb = L.tileLayer(tileUrl(scene, "rgb"), Object.assign({ attribution: esc(scene.name) }, opts)).addTo(map);
    addCellLayer();
    map.setMinZoom(opts.minZoom);
    map.setMaxZoom(opts.maxZoom);
    map.fitBounds(bounds);
    map.setMaxBounds(bounds.pad(1));
    resetJob();
  }

  function addCellLayer() {
    if (state.cells) map.removeLayer(state.cells);
    const scene = state.scene;
    const nz = scene.native_zoom;
    const [w, s, e, n] = scene.bounds;
    const layer = cellLayerName();
    state.cells = L.tileLayer(tileUrl(scene, layer), {
      bounds: L.latLngBounds([s, w], [n, e]), minZoom: Math.max(0, nz - 6), maxZoom: nz + 4,
      opacity: $("opacity").value / 100, className: "geoseg-" + layer, keepBuffer: 1, updateWhenZooming: false,
    });
    state.cells.on("tileload", () => {
      state.classTilesLoaded += 1;
      document.body.dataset.cellTilesLoaded = String(state.classTilesLoaded);
    });
    state.cells.on("tileerror", () => say("a tile failed to load"));
    state.cells.addTo(map);
  }

  async function loadScenes(selectId) {
    const d = await api("scenes");
    state.scenes = d.scenes;
    const sel = $("scene");
    sel.innerHTML = "";
    for (const s of d.scenes) {
      const o = document.createElement("option");
      o.value = s.id;
      o.textContent = s.name;
      sel.appendChild(o);
    }
    if (!d.scenes.length) { say("No scene: start `geoseg serve` with a scene or folder, or upload one."); return; }
    const pick = d.scenes.find((s) => s.id === selectId) || d.scenes[0];
    sel.value = pick.id;
    showScene(pick);
  }

  map.on("click", async (ev) => {
    if (!state.scene) return;
    const { lat, lng } = ev.latlng;
    const popup = L.popup().setLatLng(ev.latlng).setContent("…").openOn(map);
    try {
      const r = await fetch(withToken(`api/scenes/${state.scene.id}/point?lon=${lng}&lat=${lat}`));
      const d = await r.json();
      if (r.status === 404) { popup.setContent('<div id="geoseg-popup">outside the scene</div>'); return; }
      if (!r.ok) throw new Error(d.error);
      if (d.nodata) { popup.setContent('<div id="geoseg-popup">no data here</div>'); return; }
      const rows = Object.entries(d.probabilities).sort((a, b) => b[1] - a[1]).map(([k, p]) =>
        `<tr class="${k === d.class ? "top" : ""}"><td>${esc(k)}</td><td class="p">${(100 * p).toFixed(1)} %</td></tr>`);
      popup.setContent(`<div id="geoseg-popup" data-class="${esc(d.class)}"><b>${esc(d.class)}</b>` +
        `<table class="probs">${rows.join("")}</table>` +
        `<small>cell ${d.row}, ${d.col} · ${lat.toFixed(5)}, ${lng.toFixed(5)}</small></div>`);
    } catch (e) {
      popup.setContent('<div id="geoseg-popup">error: ' + esc(e.message) + "</div>");
    }
  });

  $("opacity").addEventListener("input", () => {
    $("opacity-value").textContent = $("opacity").value + " %";
    if (state.cells) state.cells.setOpacity($("opacity").value / 100);
  });
  $("confidence").addEventListener("change", () => { if (state.scene) addCellLayer(); });
  $("scene").addEventListener("change", () => {
    const s = state.scenes.find((x) => x.id === $("scene").value);
    if (s) showScene(s);
  });

  $("upload").addEventListener("change", async () => {
    const f = $("upload").files[0];
    if (!f) return;
    say("uploading " + f.name + "…");
    const fd = new FormData();
    fd.append("file", f);
    try {
      const s = await api("uploads", { method: "POST", body: fd });
      say("");
      await loadScenes(s.id);
    } catch (e) { say(e.message); }
    $("upload").value = "";
  });

  function resetJob() {
    if (state.events) { state.events.close(); state.events = null; }
    state.job = null;
    $("progress").hidden = true;
    $("progress").value = 0;
    $("cancel").hidden = true;
    $("classify").disabled = false;
    $("job-status").textContent = "";
    $("downloads").innerHTML = "";
  }

  function showJob(j) {
    $("progress").hidden = false;
    $("progress").value = j.progress;
    const pct = (100 * j.progress).toFixed(0);
    $("job-status").textContent = `job ${j.status}` + (j.total ? ` · ${pct} % (${j.done}/${j.total} patches)` : "") +
      (j.error ? " · " + j.error : "");
    document.body.dataset.jobStatus = j.status;
    if (["done", "failed", "cancelled"].includes(j.status)) {
      $("cancel").hidden = true;
      $("classify").disabled = false;
      if (state.events) { state.events.close(); state.events = null; }
    }
    if (j.status === "done") {
      const ul = $("downloads");
      ul.innerHTML = "";
      for (const k of j.outputs) {
        const li = document.createElement("li");
        const a = document.createElement("a");
        a.href = withToken(`api/jobs/${j.id}/outputs/${k}`);
        a.textContent = k;
        a.className = "download";
        a.setAttribute("download", "");
        li.appendChild(a);
        ul.appendChild(li);
      }
    }
  }

  $("classify").addEventListener("click", async () => {
    if (!state.scene) return;
    resetJob();
    $("classify").disabled = true;
    try {
      const j = await api("jobs", { method: "POST", headers: { "Content-Type": "application/json" },
                                    body: JSON.stringify({ scene: state.scene.id }) });
      state.job = j;
      $("cancel").hidden = false;
      showJob(j);
      const es = new EventSource(withToken(`api/jobs/${j.id}/events`));
      state.events = es;
      const on = (ev) => { const d = JSON.parse(ev.data); state.job = d; showJob(d); };
      es.addEventListener("progress", on);
      es.addEventListener("end", (ev) => { on(ev); es.close(); });
      es.onerror = async () => {  // the stream ended or broke: ask once
        es.close();
        try { showJob(await api(`jobs/${j.id}`)); } catch (e) { say(e.message); }
      };
    } catch (e) {
      say(e.message);
      $("classify").disabled = false;
    }
  });
  $("cancel").addEventListener("click", async () => {
    if (!state.job) return;
    try { showJob(await api(`jobs/${state.job.id}`, { method: "DELETE" })); } catch (e) { say(e.message); }
  });

  (async function init() {
    try {
      state.model = await api("model");
      legend();
      await loadScenes(params.get("scene"));
    } catch (e) { say(e.message); }
  })();
})();
