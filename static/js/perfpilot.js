// Perfpilot page behaviour: draws plotly figures embedded as JSON, also after HTMX swaps.
(function () {
  "use strict";

  function drawCharts(root) {
    if (typeof window.Plotly === "undefined") return;
    root.querySelectorAll("[data-figure]").forEach(function (element) {
      var figure = JSON.parse(element.getAttribute("data-figure"));
      var config = { displaylogo: false, responsive: true };
      window.Plotly.react(element, figure.data, figure.layout || {}, config);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawCharts(document);
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    drawCharts(document);  // outerHTML swaps replace the element the event names
  });
})();
