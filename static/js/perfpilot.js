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
    if (window.htmx) {
      // Forms answer 422 with their field errors; swap those in like a success, keep other
      // errors out of the page.
      window.htmx.config.responseHandling = [
        { code: "204", swap: false },
        { code: "[23]..", swap: true },
        { code: "422", swap: true },
        { code: "[45]..", swap: false, error: true },
      ];
    }
    drawCharts(document);
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    drawCharts(document);  // outerHTML swaps replace the element the event names
  });
})();
