// Perfpilot page behaviour: draws plotly figures embedded as JSON, also after HTMX swaps.
(function () {
  "use strict";

  // The chart toolbar: save as PNG, zoom and reset, nothing else. Every button that could send a
  // figure away (plotly's "Edit in Chart Studio" / send to cloud) is impossible: the buttons are
  // listed explicitly, the cloud options are off and there is no server URL to send to.
  var CHART_CONFIG = {
    displaylogo: false,
    responsive: true,
    displayModeBar: "hover", // shown while the pointer is over the chart or the chart holds focus
    modeBarButtons: [["toImage", "zoom2d", "zoomIn2d", "zoomOut2d", "resetScale2d"]],
    showLink: false,
    showSendToCloud: false,
    showEditInChartStudio: false,
    plotlyServerURL: "",
    toImageButtonOptions: { format: "png", scale: 2 },
  };

  // core.charts.FIGURE_TEMPLATE, sent once per page by {% figure_template %}.
  var sharedTemplate;
  function figureTemplate() {
    if (sharedTemplate === undefined) {
      var element = document.getElementById("figure-template");
      sharedTemplate = element ? JSON.parse(element.textContent) : null;
    }
    return sharedTemplate;
  }

  function chartTitle(element, layout) {
    if (layout.title && layout.title.text) return layout.title.text;
    var card = element.closest("article, section");
    var heading = card && card.querySelector("h2, h3");
    return heading ? heading.textContent.trim() : "Chart";
  }

  var SI_PREFIXES = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"], [1, ""], [1e-3, "m"], [1e-6, "µ"]];

  // A value as the axis shows it: three significant digits, SI prefixes where the axis uses them.
  function formatValue(value, axis) {
    axis = axis || {};
    var suffix = axis.ticksuffix || "";
    if (axis.exponentformat === "SI" && value !== 0) {
      for (var i = 0; i < SI_PREFIXES.length; i++) {
        if (Math.abs(value) >= SI_PREFIXES[i][0]) {
          return Number((value / SI_PREFIXES[i][0]).toPrecision(3)) + SI_PREFIXES[i][1] + suffix;
        }
      }
    }
    return Number(value.toPrecision(3)) + suffix;
  }

  // Screen readers read the chart as one image whose name carries the latest value of each line,
  // instead of stepping through plotly's SVG.
  function describe(element, figure) {
    var layout = figure.layout || {};
    var latest = [];
    (figure.data || []).forEach(function (trace) {
      if (trace.type === "bar") {
        // Bars are categories, not time: every bar is named with its value.
        var horizontal = trace.orientation === "h";
        var labels = (horizontal ? trace.y : trace.x) || [];
        var values = (horizontal ? trace.x : trace.y) || [];
        var axis = horizontal ? layout.xaxis : layout.yaxis;
        var bars = labels.map(function (label, i) { return label + " " + formatValue(values[i], axis); });
        latest.push((trace.name ? trace.name + ": " : "") + bars.join(", "));
        return;
      }
      var ys = trace.y || [];
      if (trace.showlegend === false || trace.hoverinfo === "skip" || !ys.length) return;
      var value = ys[ys.length - 1];
      var axis = trace.yaxis === "y2" ? layout.yaxis2 : layout.yaxis;
      var name = trace.name || "value";
      latest.push(name + " latest " + (typeof value === "number" ? formatValue(value, axis) : value));
    });
    var summary = latest.length ? latest.join("; ") : "no data in this range yet";
    if (latest.length === 1 && figure.data.length === 1) summary = summary.replace(/^.* latest /, "latest ");
    // "figure", not "img": an image may hold nothing interactive, and the toolbar stays usable by pointer.
    element.setAttribute("role", "figure");
    element.setAttribute("aria-label", chartTitle(element, layout) + ", chart; " + summary);
  }

  // Each chart's toolbar is one Tab stop (the ARIA toolbar pattern): its first button is in the tab
  // order, the arrow keys move between its buttons. A page of charts is then one stop per chart, not
  // five, and every button still works from the keyboard.
  function makeToolbarOneTabStop(element) {
    var bar = element.querySelector(".modebar");
    if (!bar) return;
    var buttons = Array.prototype.slice.call(bar.querySelectorAll(".modebar-btn"));
    bar.setAttribute("role", "toolbar");
    bar.setAttribute("aria-label", "Chart tools: " + chartTitle(element, {}));
    buttons.forEach(function (button, index) {
      button.setAttribute("tabindex", index === 0 ? "0" : "-1");
    });
    if (bar.dataset.keys) return;
    bar.dataset.keys = "1";
    bar.addEventListener("keydown", function (event) {
      var all = Array.prototype.slice.call(bar.querySelectorAll(".modebar-btn"));
      var at = all.indexOf(document.activeElement);
      if (at < 0) return;
      var to = { ArrowRight: at + 1, ArrowDown: at + 1, ArrowLeft: at - 1, ArrowUp: at - 1, Home: 0, End: all.length - 1 }[event.key];
      if (to === undefined) return;
      event.preventDefault();
      to = (to + all.length) % all.length;
      all[at].setAttribute("tabindex", "-1");
      all[to].setAttribute("tabindex", "0");
      all[to].focus();
    });
  }

  // A legend wraps to more rows on a narrow screen. Plotly makes room for it inside the figure's height,
  // which would squash the plot; instead the chart grows by the rows beyond the first.
  var ONE_LEGEND_ROW = 24;
  // Live refreshes swap in new chart elements: the room each chart's legend took is remembered by the
  // chart's place (its target panel and title), so a refreshed chart is drawn at its height at once.
  var legendExtraByChart = {};
  function chartKey(element) {
    var panel = element.closest("[data-target]");
    return (panel ? panel.getAttribute("data-target") : "") + "|" + chartTitle(element, {});
  }

  function fitLegend(element) {
    var baseHeight = Number(element.dataset.baseHeight);
    var legend = element.querySelector(".legend");
    if (!baseHeight || !legend) return;
    var extra = Math.max(0, Math.round(legend.getBoundingClientRect().height - ONE_LEGEND_ROW));
    legendExtraByChart[chartKey(element)] = extra;
    if (Math.abs(element._fullLayout.height - (baseHeight + extra)) > 2) {
      window.Plotly.relayout(element, { height: baseHeight + extra });
    }
  }

  function drawCharts(root) {
    if (typeof window.Plotly === "undefined") return;
    var template = figureTemplate();
    root.querySelectorAll("[data-figure]").forEach(function (element) {
      var figure = JSON.parse(element.getAttribute("data-figure"));
      var layout = figure.layout || {};
      if (template && !layout.template) layout.template = template;
      if (layout.height && layout.showlegend !== false) {
        element.dataset.baseHeight = String(layout.height);
        layout.height += legendExtraByChart[chartKey(element)] || 0; // as tall as last time: no jump on refresh
      }
      describe(element, figure);
      window.Plotly.react(element, figure.data, layout, CHART_CONFIG).then(function () {
        makeToolbarOneTabStop(element);
        fitLegend(element);
        if (!element.dataset.watched) {
          // plotly rebuilds the toolbar and reflows the legend on some redraws (zoom, resize).
          element.dataset.watched = "1";
          element.on("plotly_afterplot", function () {
            makeToolbarOneTabStop(element);
            fitLegend(element);
          });
        }
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (window.htmx) {
      // Forms answer 422 with their field errors; swap those in like a success, keep other
      // errors out of the page.
      // A 503 (PostgreSQL or Redis down) is a notice retargeted into #outage-notice, never into
      // the element that asked.
      window.htmx.config.responseHandling = [
        { code: "204", swap: false },
        { code: "[23]..", swap: true },
        { code: "422", swap: true },
        { code: "503", swap: true, error: true },
        { code: "[45]..", swap: false, error: true },
      ];
      // The next answer that succeeds means it is back: take the notice down.
      document.body.addEventListener("htmx:afterRequest", function (event) {
        var notice = document.getElementById("outage-notice");
        if (notice && event.detail.successful && notice.firstChild) notice.replaceChildren();
      });
    }
    drawCharts(document);
  });
  // A 503 fragment that explains itself (e.g. "the task queue is unavailable; nothing was queued")
  // is shown where the button was; other 5xx answers stay out of the page.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var xhr = event.detail.xhr;
    if (xhr.status === 503 && xhr.getResponseHeader("X-Perfpilot-Fragment") === "error") {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    drawCharts(document);  // outerHTML swaps replace the element the event names
  });
})();
