// Draws every `.chart[data-url]` element from its JSON endpoint (plotly figure dicts built server-side).
// The modebar offers PNG (the camera button) and an extra SVG download. Clicking a heatmap cell opens its transcripts.
(function () {
  "use strict";

  function config(name) {
    return {
      responsive: true,
      displaylogo: false,
      toImageButtonOptions: { format: "png", filename: name, scale: 2 },
      modeBarButtonsToAdd: [{
        name: "downloadSvg",
        title: "Download plot as SVG",
        icon: Plotly.Icons.disk,
        click: function (gd) { Plotly.downloadImage(gd, { format: "svg", filename: name }); },
      }],
    };
  }

  var webglAvailable = null;
  function webgl() {
    if (webglAvailable === null) {
      var canvas = document.createElement("canvas");
      webglAvailable = !!(window.WebGLRenderingContext && (canvas.getContext("webgl") || canvas.getContext("experimental-webgl")));
    }
    return webglAvailable;
  }

  function draw(el) {
    var name = el.id.replace(/^chart-/, "");
    fetch(el.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (figure) {
        if (figure.empty) {
          // No axes to a chart without points: a 0–100 % frame would read as a measured zero.
          var note = document.createElement("p");
          note.className = "chart-empty muted";
          note.textContent = figure.empty;
          el.replaceChildren(note);
          el.dataset.rendered = "empty";
          return null;
        }
        figure.layout.margin = figure.layout.margin || { t: 50, r: 20, b: 60, l: 60 };
        if (!webgl()) {
          // Without WebGL (a remote desktop, a locked-down browser) plotly draws a WebGL trace as an error
          // message: the same points as SVG are slower but drawn.
          figure.data.forEach(function (trace) { if (trace.type === "scattergl") { trace.type = "scatter"; } });
        }
        return Plotly.newPlot(el, figure.data, figure.layout, config(name));
      })
      .then(function (drawn) {
        if (drawn === null) { return; }
        // A point whose customdata is a same-site path (the heatmap's cells) opens those transcripts.
        el.on("plotly_click", function (event) {
          var link = event.points.length ? event.points[0].customdata : null;
          if (typeof link === "string" && link.charAt(0) === "/" && link.charAt(1) !== "/") {
            window.location.assign(link);
          }
        });
        el.dataset.rendered = "true";
      })
      .catch(function (error) {
        el.textContent = "Could not load this chart (" + error.message + ").";
      });
  }

  function drawNew() {
    document.querySelectorAll(".chart[data-url]:not([data-drawing])").forEach(function (el) {
      el.dataset.drawing = "true";
      draw(el);
    });
  }

  document.addEventListener("DOMContentLoaded", drawNew);
  // Charts that arrive with a report swapped in by htmx (judging/report_state.html) are drawn then.
  document.addEventListener("htmx:afterSettle", drawNew);
})();
