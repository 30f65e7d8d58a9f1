// The evaluation report of captum_rise: draws data/run.js (loaded after this file) and, when an
// image is opened, data/images/<shard>/<key>.js. Plain scripts, no library: it opens from file://.
"use strict";

(function () {
  const PAGE_SIZE = 50;
  const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                   "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  const COLUMNS = [
    // key, header, how a row's value is read, how it is shown
    { key: "thumbnail", label: "", sortable: false },
    { key: "image", label: "image", value: (r) => r.imageId, text: (v) => v },
    { key: "method", label: "method", value: (r) => r.method, text: (v) => v },
    { key: "target", label: "target", value: (r) => r.targetLabel, text: (v) => v },
    { key: "score", label: "score", value: (r) => r.score, text: (v) => fixed(v, 3), number: true },
    { key: "deletion_auc", label: "deletion AUC ↓", value: (r) => r.deletion, text: (v) => fixed(v, 4), number: true },
    { key: "insertion_auc", label: "insertion AUC ↑", value: (r) => r.insertion, text: (v) => fixed(v, 4), number: true },
    { key: "pointing_hit", label: "pointing", value: (r) => r.hit, text: (v) => (v === null ? "" : v ? "hit" : "miss") },
    { key: "seconds", label: "seconds", value: (r) => r.seconds, text: (v) => fixed(v, 2), number: true },
    { key: "disagreement", label: "disagreement", value: (r) => r.disagreement, text: (v) => fixed(v, 3), number: true },
  ];

  const state = {
    run: null,
    rows: [],          // one per (image, method) that succeeded
    failures: [],      // one per (image, method) that failed
    byKey: new Map(),  // image key -> image index
    method: "",        // the method filter ("" for all)
    search: "",
    sort: { key: "image", descending: false },
    page: 0,
    curves: new Map(), // image key -> curves, once loaded
    waiting: new Map(),
  };

  // ---------------------------------------------------------------- helpers

  const {
    element, shardedPath, assetPath, compare, setColourScale, isSigned, colourLegend, showView,
    whenDataMissing,
  } = window.captumRiseCommon;

  function fixed(value, digits) {
    return value === null || value === undefined ? "" : value.toFixed(digits);
  }

  function svgElement(tag, attributes) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
    return node;
  }

  function colourOf(method) {
    return COLOURS[state.run.methods.indexOf(method) % COLOURS.length];
  }

  // Math.min(...values) overflows the stack for a large run's values
  function least(values, start) { return values.reduce((a, b) => Math.min(a, b), start); }
  function most(values, start) { return values.reduce((a, b) => Math.max(a, b), start); }

  // ---------------------------------------------------------------- data

  function prepare(run) {
    state.run = run;
    const field = Object.fromEntries(run.row_fields.map((name, i) => [name, i]));
    run.images.forEach((image, i) => state.byKey.set(image.key, i));
    for (const entry of run.rows) {
      const image = run.images[entry[field.image]];
      const row = {
        imageIndex: entry[field.image],
        imageId: image.id,
        key: image.key,
        method: run.methods[entry[field.method]],
        targetLabel: targetLabel(image),
        score: image.score,
        deletion: entry[field.deletion_auc],
        insertion: entry[field.insertion_auc],
        hit: entry[field.pointing_hit],
        seconds: entry[field.seconds],
        low: entry[field.map_low],
        high: entry[field.map_high],
        error: entry[field.error],
        disagreement: image.disagreement,
      };
      (row.error === null ? state.rows : state.failures).push(row);
    }
  }

  function targetLabel(image) {
    if (image.target === null) return "";
    return image.target_name ? image.target_name + " (" + image.target + ")" : String(image.target);
  }

  // ---------------------------------------------------------------- overview

  function drawOverview() {
    const run = state.run;
    document.getElementById("subtitle").textContent =
      run.run.model + " · " + run.run.images + " images · " + run.methods.join(", ");
    const body = document.querySelector("#methods-table tbody");
    for (const s of run.summaries) {
      const interval = (f) => f[0].toFixed(4) + " [" + f[1].toFixed(4) + ", " + f[2].toFixed(4) + "]";
      const swatch = element("span", { class: "swatch", style: "background:" + colourOf(s.method) });
      body.append(element("tr", { "data-method": s.method }, [
        element("td", {}, [swatch, s.method]),
        element("td", { class: "number", text: String(s.images) }),
        element("td", { class: "number", text: String(s.failed) }),
        element("td", { class: "number", text: interval(s.deletion) }),
        element("td", { class: "number", text: interval(s.insertion) }),
        element("td", { class: "number", text: s.pointing === null ? "–" : s.pointing.toFixed(3) }),
        element("td", { class: "number", text: s.seconds_per_image.toFixed(2) }),
        element("td", { class: "number", text: s.seconds.toFixed(1) }),
      ]));
    }
    document.getElementById("methods-note").textContent =
      "Mean over the images each method succeeded on, with " + Math.round(run.run.confidence * 100) +
      "% bootstrap intervals (" + run.run.bootstrap_resamples + " resamples), as in summary.md. " +
      "Seconds: the attribution alone.";
    const legend = document.getElementById("legend");
    for (const method of run.methods) {
      legend.append(element("span", {}, [
        element("span", { class: "swatch", style: "background:" + colourOf(method) }), method]));
    }
    drawScatter();
    lineChart(document.getElementById("mean-curves"), run.summaries.flatMap((s) => [
      { colour: colourOf(s.method), dashed: false, values: s.deletion_curve, label: s.method + " deletion" },
      { colour: colourOf(s.method), dashed: true, values: s.insertion_curve, label: s.method + " insertion" },
    ]));
    const facts = [
      ["model", run.run.model],
      ["images", String(run.run.images)],
      ["seed", run.run.seed === null || run.run.seed === undefined ? "" : String(run.run.seed)],
      ["curve steps", run.run.curve_steps === null || run.run.curve_steps === undefined
        ? "one row of pixels per step" : String(run.run.curve_steps)],
      ["failed rows", String(run.run.failed_rows)],
      ["versions", Object.entries(run.run.versions).map(([k, v]) => k + " " + v).join(", ")],
    ];
    for (const s of run.summaries) facts.push([s.method + " settings", JSON.stringify(s.settings)]);
    const runBody = document.querySelector("#run-table tbody");
    for (const [name, value] of facts) {
      runBody.append(element("tr", {}, [element("th", { text: name }), element("td", { text: value })]));
    }
  }

  function drawScatter() {
    const canvas = document.getElementById("scatter");
    const width = 420, height = 340; // drawn while its section may be hidden: no layout to read
    canvas.style.width = width + "px";
    canvas.style.height = height + "px";
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const context = canvas.getContext("2d");
    context.scale(ratio, ratio);
    const margin = { left: 46, right: 12, top: 10, bottom: 36 };
    const xs = state.rows.map((r) => r.deletion), ys = state.rows.map((r) => r.insertion);
    const xMin = least(xs, 0), xMax = most(xs, 1), yMin = least(ys, 0), yMax = most(ys, 1);
    const plotWidth = width - margin.left - margin.right, plotHeight = height - margin.top - margin.bottom;
    const px = (x) => margin.left + ((x - xMin) / (xMax - xMin)) * plotWidth;
    const py = (y) => margin.top + (1 - (y - yMin) / (yMax - yMin)) * plotHeight;
    Object.assign(canvas.dataset, { xMin, xMax, yMin, yMax, left: margin.left, top: margin.top,
                                    plotWidth, plotHeight });
    context.strokeStyle = "#999";
    context.strokeRect(margin.left, margin.top, plotWidth, plotHeight);
    context.fillStyle = "#444";
    context.font = "11px sans-serif";
    context.textAlign = "center";
    for (let i = 0; i <= 4; i++) {
      const x = xMin + ((xMax - xMin) * i) / 4, y = yMin + ((yMax - yMin) * i) / 4;
      context.fillText(x.toFixed(2), px(x), margin.top + plotHeight + 14);
      context.textAlign = "right";
      context.fillText(y.toFixed(2), margin.left - 4, py(y) + 4);
      context.textAlign = "center";
    }
    context.fillText("deletion AUC (lower is better)", margin.left + plotWidth / 2, height - 4);
    context.save();
    context.translate(12, margin.top + plotHeight / 2);
    context.rotate(-Math.PI / 2);
    context.fillText("insertion AUC (higher is better)", 0, 0);
    context.restore();
    const points = state.rows.map((r) => ({ x: px(r.deletion), y: py(r.insertion), row: r }));
    context.globalAlpha = state.rows.length > 2000 ? 0.35 : 0.8;
    for (const p of points) {
      context.fillStyle = colourOf(p.row.method);
      context.beginPath();
      context.arc(p.x, p.y, 3, 0, 2 * Math.PI);
      context.fill();
    }
    context.globalAlpha = 1;
    const nearest = (event) => {
      const box = canvas.getBoundingClientRect();
      const x = event.clientX - box.left, y = event.clientY - box.top;
      let best = null, distance = 64; // within 8 px
      for (const p of points) {
        const d = (p.x - x) ** 2 + (p.y - y) ** 2;
        if (d < distance) { best = p; distance = d; }
      }
      return best;
    };
    const tip = document.getElementById("scatter-tip");
    canvas.addEventListener("mousemove", (event) => {
      const p = nearest(event);
      tip.textContent = p ? p.row.imageId + " · " + p.row.method + " · deletion " +
        p.row.deletion.toFixed(4) + " · insertion " + p.row.insertion.toFixed(4) : "\u00a0";
    });
    canvas.addEventListener("click", (event) => {
      const p = nearest(event);
      if (p) location.hash = "image=" + p.row.key;
    });
  }

  // One pair of axes: x from 0 to 1 (fraction of pixels), y over the values.
  function lineChart(container, series) {
    container.textContent = "";
    const width = 460, height = 300, left = 46, right = 18, top = 10, bottom = 36;
    const values = series.flatMap((s) => s.values);
    const yMin = least(values, 0);
    const yMax = yMin >= 0 && most(values, 0) <= 1 ? 1 : most(values, 1e-9); // probabilities: 0 to 1
    const px = (x) => left + x * (width - left - right);
    const py = (y) => top + (1 - (y - yMin) / (yMax - yMin)) * (height - top - bottom);
    const svg = svgElement("svg", { class: "chart", width, height, viewBox: "0 0 " + width + " " + height });
    svg.append(svgElement("rect", { x: left, y: top, width: width - left - right,
                                    height: height - top - bottom, fill: "none", stroke: "#999" }));
    for (let i = 0; i <= 4; i++) {
      const x = i / 4, y = yMin + ((yMax - yMin) * i) / 4;
      const xLabel = svgElement("text", { x: px(x), y: height - bottom + 14, "text-anchor": "middle" });
      xLabel.textContent = x.toFixed(2);
      const yLabel = svgElement("text", { x: left - 4, y: py(y) + 4, "text-anchor": "end" });
      yLabel.textContent = y.toFixed(2);
      svg.append(xLabel, yLabel);
    }
    const caption = svgElement("text", { x: left + (width - left - right) / 2, y: height - 4, "text-anchor": "middle" });
    caption.textContent = "fraction of pixels deleted / inserted";
    svg.append(caption);
    for (const s of series) {
      const n = s.values.length;
      const d = s.values.map((v, i) => (i ? "L" : "M") + px(i / (n - 1)).toFixed(1) + "," + py(v).toFixed(1)).join("");
      const path = svgElement("path", { d, fill: "none", stroke: s.colour, "stroke-width": 1.6,
                                        "data-series": s.label });
      if (s.dashed) path.setAttribute("stroke-dasharray", "5 3");
      const title = svgElement("title");
      title.textContent = s.label;
      path.append(title);
      svg.append(path);
    }
    container.append(svg);
  }

  // ---------------------------------------------------------------- images table

  function setUpImages() {
    const filter = document.getElementById("method-filter");
    filter.append(element("option", { value: "", text: "all methods" }));
    for (const method of state.run.methods) filter.append(element("option", { value: method, text: method }));
    filter.addEventListener("change", () => { state.method = filter.value; state.page = 0; drawImages(); });
    const search = document.getElementById("image-filter");
    search.addEventListener("input", () => { state.search = search.value.toLowerCase(); state.page = 0; drawImages(); });
    document.getElementById("sort-disagreement").addEventListener("click", () => {
      sortByDisagreement(); // at once: the hash's route runs later, and does the same
      location.hash = "images/disagreement";
    });
    document.getElementById("page-previous").addEventListener("click", () => { state.page -= 1; drawImages(); });
    document.getElementById("page-next").addEventListener("click", () => { state.page += 1; drawImages(); });
    const header = document.querySelector("#images-table thead tr");
    for (const column of COLUMNS) {
      const th = element("th", { text: column.label, "data-column": column.key });
      if (column.sortable !== false) {
        th.addEventListener("click", () => {
          const same = state.sort.key === column.key;
          state.sort = { key: column.key, descending: same ? !state.sort.descending : false };
          state.page = 0;
          drawImages();
        });
      }
      header.append(th);
    }
  }

  function sortByDisagreement() {
    state.sort = { key: "disagreement", descending: true };
    state.page = 0;
    drawImages();
  }

  function shownRows() {
    const column = COLUMNS.find((c) => c.key === state.sort.key);
    const rows = state.rows.filter((r) =>
      (!state.method || r.method === state.method) &&
      (!state.search || r.imageId.toLowerCase().includes(state.search)));
    const sign = state.sort.descending ? -1 : 1;
    rows.sort((a, b) => {
      const va = column.value(a), vb = column.value(b);
      if (va === null || va === undefined || vb === null || vb === undefined) return compare(va, vb);
      return sign * compare(va, vb) || compare(a.imageId, b.imageId) || compare(a.method, b.method);
    });
    return rows;
  }

  function drawImages() {
    const rows = shownRows();
    const pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
    state.page = Math.min(Math.max(state.page, 0), pages - 1);
    const first = state.page * PAGE_SIZE;
    const body = document.querySelector("#images-table tbody");
    body.textContent = "";
    for (const row of rows.slice(first, first + PAGE_SIZE)) {
      const image = state.run.images[row.imageIndex];
      const tr = element("tr", { "data-image": row.imageId, "data-method": row.method, "data-key": row.key });
      for (const column of COLUMNS) {
        if (column.key === "thumbnail") {
          const cell = element("td");
          if (image.photo) cell.append(element("img", { src: assetPath(row.key, ".jpg"), loading: "lazy", alt: "" }));
          tr.append(cell);
          continue;
        }
        tr.append(element("td", { class: column.number ? "number" : "", "data-column": column.key,
                                  text: column.text(column.value(row)) }));
      }
      tr.addEventListener("click", () => { location.hash = "image=" + row.key; });
      body.append(tr);
    }
    document.getElementById("page-info").textContent = rows.length
      ? "rows " + (first + 1) + "–" + Math.min(first + PAGE_SIZE, rows.length) + " of " + rows.length
      : "no rows";
    document.getElementById("page-previous").disabled = state.page === 0;
    document.getElementById("page-next").disabled = state.page >= pages - 1;
    document.querySelectorAll("#images-table th").forEach((th) => {
      if (th.dataset.column === state.sort.key) {
        th.setAttribute("aria-sort", state.sort.descending ? "descending" : "ascending");
      } else {
        th.removeAttribute("aria-sort");
      }
    });
  }

  // ---------------------------------------------------------------- failures

  function drawFailures() {
    const n = state.failures.length;
    document.getElementById("nav-failures").textContent = "Failures (" + n + ")";
    document.getElementById("failures-count").textContent = n
      ? n + " image and method pairs failed; the run went on without them."
      : "No failures.";
    const body = document.querySelector("#failures-table tbody");
    for (const row of state.failures) {
      body.append(element("tr", { "data-image": row.imageId, "data-method": row.method }, [
        element("td", { text: row.imageId }),
        element("td", { text: row.method }),
        element("td", { class: "error", text: row.error }),
      ]));
    }
  }

  // ---------------------------------------------------------------- one image

  function drawImage(key) {
    const index = state.byKey.get(key);
    const title = document.getElementById("image-title");
    const panels = document.getElementById("image-panels");
    const curves = document.getElementById("image-curves");
    panels.textContent = "";
    curves.textContent = "";
    if (index === undefined) {
      title.textContent = "No image with key " + key + " in this report";
      document.getElementById("image-target").textContent = "";
      return;
    }
    const image = state.run.images[index];
    title.textContent = image.id;
    const score = image.score === null ? "" : ", score " + image.score.toFixed(3);
    document.getElementById("image-target").textContent = image.target === null
      ? "The image could not be explained."
      : "Target: " + targetLabel(image) + score +
        (image.disagreement === null ? "" : " · disagreement of the maps " + image.disagreement.toFixed(3));
    const photoPanel = element("div", { class: "panel", "data-panel": "photo" }, [
      element("h3", { text: "photo" }),
      element("div", { class: "overlay" }, image.photo ? [element("img", { src: assetPath(key, ".jpg"), alt: image.id })] : []),
    ]);
    panels.append(photoPanel);
    const opacity = document.getElementById("opacity").value;
    const rows = state.rows.concat(state.failures).filter((r) => r.key === key);
    rows.sort((a, b) => state.run.methods.indexOf(a.method) - state.run.methods.indexOf(b.method));
    for (const row of rows) {
      const panel = element("div", { class: "panel", "data-panel": row.method }, [
        element("h3", {}, [element("span", { class: "swatch", style: "background:" + colourOf(row.method) }), row.method]),
      ]);
      if (row.error !== null) {
        panel.append(element("p", { class: "error", text: row.error }));
      } else {
        const layers = [];
        if (image.photo) layers.push(element("img", { src: assetPath(key, ".jpg"), alt: "" }));
        if (row.low !== null) {
          layers.push(element("img", { class: isSigned(row.low, row.high) ? "map signed" : "map", src: assetPath(key, "." + row.method + ".png"),
                                       alt: row.method + " map", style: "opacity:" + (image.photo ? opacity : 1) }));
        }
        panel.append(element("div", { class: "overlay" }, layers));
        if (row.low !== null) panel.append(...colourLegend(row.low, row.high, state.run));
        panel.append(element("div", { class: "figures", text: "deletion AUC " + row.deletion.toFixed(4) +
          " · insertion AUC " + row.insertion.toFixed(4) + (row.hit === null ? "" : " · pointing " + (row.hit ? "hit" : "miss")) }));
      }
      panels.append(panel);
    }
    withCurves(key, (data) => {
      if (location.hash !== "#image=" + key) return;
      lineChart(curves, rows.filter((r) => data.curves[r.method]).flatMap((r) => [
        { colour: colourOf(r.method), dashed: false, values: data.curves[r.method].deletion, label: r.method + " deletion" },
        { colour: colourOf(r.method), dashed: true, values: data.curves[r.method].insertion, label: r.method + " insertion" },
      ]));
      const legend = element("div", { class: "legend" });
      for (const r of rows.filter((r) => data.curves[r.method])) {
        legend.append(element("span", {}, [element("span", { class: "swatch", style: "background:" + colourOf(r.method) }), r.method]));
      }
      curves.append(legend);
    }, () => { curves.textContent = "The curves of this image are missing from data/images."; });
  }

  function withCurves(key, draw, fail) {
    if (state.curves.has(key)) { draw(state.curves.get(key)); return; }
    state.waiting.set(key, draw);
    const script = element("script", { src: shardedPath("data/images", key, ".js") });
    script.addEventListener("error", () => { state.waiting.delete(key); fail(); });
    document.body.append(script);
  }

  window.captumRiseReportImage = function (data) {
    state.curves.set(data.key, data);
    const draw = state.waiting.get(data.key);
    state.waiting.delete(data.key);
    if (draw) draw(data);
  };

  // ---------------------------------------------------------------- routes

  function route() {
    const hash = decodeURIComponent(location.hash.slice(1));
    let view = "overview";
    if (hash.startsWith("image=")) {
      view = "image-view";
      drawImage(hash.slice("image=".length));
    } else if (hash === "images/disagreement") {
      view = "images";
      sortByDisagreement();
    } else if (hash === "images" || hash === "failures") {
      view = hash;
    }
    showView(view);
  }

  window.captumRiseReportRun = function (run) {
    prepare(run);
    setColourScale("colour-scale", run.colour_map);
    setColourScale("colour-scale-diverging", run.diverging_colour_map);
    drawOverview();
    setUpImages();
    drawImages();
    drawFailures();
    document.getElementById("opacity").addEventListener("input", (event) => {
      document.querySelectorAll("#image-panels img.map").forEach((img) => { img.style.opacity = event.target.value; });
    });
    window.addEventListener("hashchange", route);
    route();
    document.body.dataset.ready = "true";
  };

  whenDataMissing(() => state.run !== null, "data/run.js did not load: rebuild this report with `captum-rise report DIR`.");
})();
