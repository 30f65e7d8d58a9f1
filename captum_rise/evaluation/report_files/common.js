// What the run report (report.js) and the comparison report (compare.js) of captum_rise share:
// building elements, the assets' paths, the tables' order, and the maps' colour scales. Plain
// script, no library, loaded before either page's own.
"use strict";

window.captumRiseCommon = (function () {
  function element(tag, attributes, children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (name === "text") node.textContent = value;
      else if (name === "class") node.className = value;
      else node.setAttribute(name, value);
    }
    for (const child of children || []) node.append(child);
    return node;
  }

  // folder/<shard>/<key><suffix>, as thumbnails.sharded_path writes them
  function shardedPath(folder, key, suffix) {
    return folder + "/" + key.slice(0, 2) + "/" + key + suffix;
  }

  function assetPath(key, suffix) {
    return shardedPath("assets", key, suffix);
  }

  function compare(a, b) {
    // empty values last, whatever the direction
    if (a === null || a === undefined) return b === null || b === undefined ? 0 : 1;
    if (b === null || b === undefined) return -1;
    if (typeof a === "string") return a.localeCompare(b);
    return a - b;
  }

  function setColourScale(id, stops) {
    const channels = document.querySelectorAll("#" + id + " feComponentTransfer > *");
    channels.forEach((node, c) => node.setAttribute("tableValues", stops.map((s) => s[c]).join(" ")));
  }

  // A map with values on both sides of 0 was saved over a range symmetric about 0: it is drawn
  // on the diverging scale, 0 at its centre; a map of one sign on the sequential scale.
  function isSigned(low, high) {
    return low < 0 && high > 0;
  }

  function gradient(stops) {
    const css = stops.map((s, i) => {
      const rgb = s.map((v) => Math.round(v * 255)).join(",");
      return "rgb(" + rgb + ") " + ((100 * i) / (stops.length - 1)).toFixed(1) + "%";
    });
    return "linear-gradient(to right, " + css.join(", ") + ")";
  }

  // the bar and labels of a map saved over [low, high]; scales: the data's colour_map and
  // diverging_colour_map
  function colourLegend(low, high, scales) {
    const signed = isSigned(low, high);
    const labels = [element("span", { class: "low", text: low.toPrecision(3) })];
    if (signed) labels.push(element("span", { class: "centre", text: "0" }));
    labels.push(element("span", { class: "high", text: high.toPrecision(3) }));
    const stops = signed ? scales.diverging_colour_map : scales.colour_map;
    return [
      element("div", { class: "colour-bar", "data-scale": signed ? "diverging" : "sequential",
                       style: "background:" + gradient(stops) }),
      element("div", { class: "colour-labels" }, labels),
    ];
  }

  // shows the section ``view`` alone (an image's view under the Images tab), from the top
  function showView(view) {
    document.querySelectorAll("section.view").forEach((s) => { s.hidden = s.id !== view; });
    document.querySelectorAll("nav a").forEach((a) => {
      a.classList.toggle("active", a.id === "nav-" + (view === "image-view" ? "images" : view));
    });
    window.scrollTo(0, 0);
  }

  // once the page has loaded, says ``message`` unless ``loaded()``: the data script was missing
  function whenDataMissing(loaded, message) {
    window.addEventListener("load", () => {
      if (loaded()) return;
      const note = document.getElementById("load-error");
      note.textContent = message;
      note.hidden = false;
      document.getElementById("subtitle").textContent = "";
    });
  }

  return {
    element, shardedPath, assetPath, compare, setColourScale, isSigned, colourLegend, showView,
    whenDataMissing,
  };
})();
