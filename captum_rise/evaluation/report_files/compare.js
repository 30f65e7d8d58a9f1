// The comparison report of captum_rise (captum-rise compare): draws data/comparison.js, loaded
// after this file. Plain script, no library: it opens from file://, like the run report.
"use strict";

(function () {
  const PAGE_SIZE = 50;
  const number = (digits) => (v) => (v === null || v === undefined ? "" : v.toFixed(digits));
  const signed = (digits) => (v) => (v === null || v === undefined ? "" : (v > 0 ? "+" : "") + v.toFixed(digits));
  const COLUMNS = [
    // key, header, how a row's value is read, how it is shown
    { key: "thumbnail", label: "", sortable: false },
    { key: "image", label: "image", value: (r) => r.imageId, text: (v) => v },
    { key: "target", label: "target", value: (r) => r.targetLabel, text: (v) => v },
    { key: "spearman", label: "Spearman", value: (r) => r.spearman, text: number(4), number: true },
    { key: "top_overlap", label: "top 10 % overlap", value: (r) => r.top_overlap, text: number(4), number: true },
    { key: "deletion_a", label: "deletion A", value: (r) => r.deletion_a, text: number(4), number: true },
    { key: "deletion_b", label: "deletion B", value: (r) => r.deletion_b, text: number(4), number: true },
    { key: "deletion_change", label: "deletion change", value: (r) => r.deletion_change, text: signed(4), number: true },
    { key: "insertion_a", label: "insertion A", value: (r) => r.insertion_a, text: number(4), number: true },
    { key: "insertion_b", label: "insertion B", value: (r) => r.insertion_b, text: number(4), number: true },
    { key: "insertion_change", label: "insertion change", value: (r) => r.insertion_change, text: signed(4), number: true },
    { key: "classes", label: "top class A → B", value: (r) => r.classes, text: (v) => v },
  ];

  const state = {
    data: null,
    rows: [],
    pair: 0,
    search: "",
    sort: { key: "spearman", descending: false }, // the maps that changed most first
    page: 0,
  };

  // ---------------------------------------------------------------- helpers

  const {
    element, assetPath, compare, setColourScale, isSigned, colourLegend, showView, whenDataMissing,
  } = window.captumRiseCommon;

  function interval(values, digits, withSign) {
    const show = withSign ? signed(digits) : number(digits);
    return show(values[0]) + " (" + show(values[1]) + " to " + show(values[2]) + ")";
  }

  function className(index) {
    if (index === null) return "?";
    const name = state.data.class_names[index];
    return name ? name + " (" + index + ")" : String(index);
  }

  function prepare(data) {
    state.data = data;
    const field = (name) => data.row_fields.indexOf(name);
    state.rows = data.rows.map((entry) => {
      const image = data.images[entry[field("image")]];
      const row = { imageId: image.id, key: image.key, photo: image.photo, pair: entry[field("pair")] };
      for (const name of data.row_fields) if (row[name] === undefined) row[name] = entry[field(name)];
      row.targetLabel = image.target_name ? image.target_name + " (" + image.target + ")" : image.target;
      row.classes = row.predicted_a === null || row.predicted_b === null ? ""
        : row.predicted_a === row.predicted_b ? String(row.predicted_a) : row.predicted_a + " → " + row.predicted_b;
      return row;
    });
  }

  // ---------------------------------------------------------------- overview

  function drawOverview() {
    const data = state.data;
    document.getElementById("subtitle").textContent =
      "A: " + data.runs.a.model + " · B: " + data.runs.b.model + " · " + data.images.length + " images";
    const body = document.querySelector("#summary-table tbody");
    for (const s of data.summaries) {
      const cells = [
        s.pair, String(s.images), interval(s.spearman, 4), interval(s.top_overlap, 4),
        s.deletion[0].toFixed(4) + " → " + s.deletion[1].toFixed(4), interval(s.deletion_change, 4, true),
        s.insertion[0].toFixed(4) + " → " + s.insertion[1].toFixed(4), interval(s.insertion_change, 4, true),
        s.predicted ? s.class_changed + " of " + s.predicted : "not recorded",
        s.score_change ? interval(s.score_change, 4, true) : "",
      ];
      body.append(element("tr", { "data-pair": s.pair }, cells.map((text) => element("td", { text }))));
    }
    document.getElementById("summary-note").textContent =
      "Means over the images both runs explained, with " + Math.round(100 * data.confidence) + " % bootstrap intervals (" +
      data.bootstrap_resamples + " resamples, paired). Spearman and top 10 % overlap of the maps on 32x32 blocks " +
      "(1: the same); changes are B minus A.";
    if (data.mismatches.length) {
      const note = document.getElementById("mismatches");
      note.textContent = "Compared anyway, although: " + data.mismatches.join("; ");
      note.hidden = false;
    }
    const runs = document.querySelector("#runs-table tbody");
    for (const side of ["a", "b"]) {
      const run = data.runs[side];
      runs.append(element("tr", {}, [side.toUpperCase(), run.folder, run.model, String(run.seed), String(run.images)]
        .map((text) => element("td", { text }))));
    }
  }

  // ---------------------------------------------------------------- images

  function setUpImages() {
    const filter = document.getElementById("pair-filter");
    state.data.pairs.forEach((pair, i) => filter.append(element("option", { value: String(i), text: pair })));
    filter.addEventListener("change", () => { state.pair = Number(filter.value); state.page = 0; drawImages(); });
    const search = document.getElementById("image-filter");
    search.addEventListener("input", () => { state.search = search.value.toLowerCase(); state.page = 0; drawImages(); });
    const head = document.querySelector("#images-table thead tr");
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
      head.append(th);
    }
    document.getElementById("page-previous").addEventListener("click", () => { state.page -= 1; drawImages(); });
    document.getElementById("page-next").addEventListener("click", () => { state.page += 1; drawImages(); });
  }

  function shownRows() {
    const column = COLUMNS.find((c) => c.key === state.sort.key);
    const rows = state.rows.filter((r) => r.pair === state.pair && r.imageId.toLowerCase().includes(state.search));
    rows.sort((a, b) => {
      const order = compare(column.value(a), column.value(b));
      return (state.sort.descending ? -order : order) || compare(a.imageId, b.imageId);
    });
    return rows;
  }

  function drawImages() {
    const rows = shownRows();
    const pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
    state.page = Math.min(Math.max(state.page, 0), pages - 1);
    document.getElementById("page-info").textContent = "page " + (state.page + 1) + " of " + pages + " · " + rows.length + " images";
    document.getElementById("page-previous").disabled = state.page === 0;
    document.getElementById("page-next").disabled = state.page === pages - 1;
    document.querySelectorAll("#images-table th").forEach((th) => {
      if (th.dataset.column === state.sort.key) th.setAttribute("aria-sort", state.sort.descending ? "descending" : "ascending");
      else th.removeAttribute("aria-sort");
    });
    const body = document.querySelector("#images-table tbody");
    body.textContent = "";
    for (const row of rows.slice(state.page * PAGE_SIZE, (state.page + 1) * PAGE_SIZE)) {
      const tr = element("tr", { "data-image": row.imageId, "data-pair": state.data.pairs[row.pair] });
      for (const column of COLUMNS) {
        if (column.key === "thumbnail") {
          tr.append(element("td", {}, row.photo ? [element("img", { src: assetPath(row.key, ".jpg"), alt: "", loading: "lazy" })] : []));
        } else {
          tr.append(element("td", { "data-column": column.key, class: column.number ? "number" : "",
                                    text: column.text(column.value(row)) }));
        }
      }
      tr.addEventListener("click", () => { location.hash = "image=" + row.key + "/" + row.pair; });
      body.append(tr);
    }
  }

  // ---------------------------------------------------------------- one image

  function mapPanel(row, name, title, layers, range, figures) {
    const panel = element("div", { class: "panel", "data-panel": name }, [element("h3", { text: title })]);
    panel.append(element("div", { class: "overlay" }, layers), ...colourLegend(range[0], range[1], state.data));
    panel.append(element("div", { class: "figures", text: figures }));
    return panel;
  }

  function drawImage(route) {
    const [key, pairText] = route.split("/");
    const row = state.rows.find((r) => r.key === key && r.pair === Number(pairText));
    const title = document.getElementById("image-title");
    const panels = document.getElementById("image-panels");
    const facts = document.getElementById("image-facts");
    panels.textContent = "";
    if (!row) {
      title.textContent = "No image " + route + " in this comparison";
      facts.textContent = "";
      return;
    }
    const pair = state.data.pairs[row.pair];
    title.textContent = row.imageId + " · " + pair;
    const score = (v) => (v === null ? "" : " (" + v.toFixed(3) + ")");
    facts.textContent = "Target: " + row.targetLabel + " · Spearman " + row.spearman.toFixed(4) +
      " · top 10 % overlap " + row.top_overlap.toFixed(4) +
      " · top class A: " + className(row.predicted_a) + score(row.predicted_score_a) +
      ", B: " + className(row.predicted_b) + score(row.predicted_score_b);
    const opacity = document.getElementById("opacity").value;
    const photo = () => (row.photo ? [element("img", { src: assetPath(key, ".jpg"), alt: "" })] : []);
    const map = (suffix, signedScale, alt, overPhoto) => element("img", {
      class: signedScale ? "map signed" : "map", src: assetPath(key, "." + pair + "." + suffix + ".png"), alt,
      style: "opacity:" + (overPhoto && row.photo ? opacity : 1) });
    panels.append(element("div", { class: "panel", "data-panel": "photo" }, [
      element("h3", { text: "photo" }), element("div", { class: "overlay" }, photo())]));
    const [rangeA, rangeB, rangeDifference] = row.ranges;
    panels.append(mapPanel(row, "a", "A · " + state.data.summaries[row.pair].method_a,
      [...photo(), map("a", isSigned(...rangeA), "map A", true)], rangeA,
      "deletion AUC " + row.deletion_a.toFixed(4) + " · insertion AUC " + row.insertion_a.toFixed(4)));
    panels.append(mapPanel(row, "b", "B · " + state.data.summaries[row.pair].method_b,
      [...photo(), map("b", isSigned(...rangeB), "map B", true)], rangeB,
      "deletion AUC " + row.deletion_b.toFixed(4) + " · insertion AUC " + row.insertion_b.toFixed(4)));
    panels.append(mapPanel(row, "difference", "B − A",
      [map("difference", true, "difference", false)], rangeDifference,
      "each map over its own range · deletion change " + signed(4)(row.deletion_change) +
      " · insertion change " + signed(4)(row.insertion_change)));
  }

  // ---------------------------------------------------------------- routes

  function route() {
    const hash = decodeURIComponent(location.hash.slice(1));
    let view = "overview";
    if (hash.startsWith("image=")) {
      view = "image-view";
      drawImage(hash.slice("image=".length));
    } else if (hash === "images") {
      view = "images";
    }
    showView(view);
  }

  window.captumRiseComparison = function (data) {
    prepare(data);
    setColourScale("colour-scale", data.colour_map);
    setColourScale("colour-scale-diverging", data.diverging_colour_map);
    drawOverview();
    setUpImages();
    drawImages();
    document.getElementById("opacity").addEventListener("input", (event) => {
      document.querySelectorAll("#image-panels img.map").forEach((img) => {
        if (!img.closest("[data-panel=difference]")) img.style.opacity = event.target.value;
      });
    });
    window.addEventListener("hashchange", route);
    route();
    document.body.dataset.ready = "true";
  };

  whenDataMissing(() => state.data !== null, "data/comparison.js did not load: write this report again with `captum-rise compare`.");
})();
