// Draws every <canvas data-chart="ID"> from the JSON in <script id="ID" type="application/json">
// (written by Django's json_script in metrics/views.py). No framework, Chart.js from static/vendor.
(function () {
  "use strict";

  if (typeof window.Chart === "undefined") {
    return; // the tables below each chart still carry every number
  }

  var COLORS = {
    cost: "#2563eb",
    baseline: "#9ca3af",
    savings: "#15803d",
    ok: "#16a34a",
    bad: "#dc2626",
    prompt: "#6366f1",
    completion: "#f59e0b",
    p50: "#2563eb",
    p95: "#f59e0b",
    p99: "#dc2626",
    target: "#b91c1c"
  };

  var usd = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD", maximumFractionDigits: 2 });
  var usdSmall = new Intl.NumberFormat("en-US", {
    style: "currency", currency: "USD", minimumFractionDigits: 4, maximumFractionDigits: 4
  });
  // The rule of core.formatting.money (the pages' own text), so a tooltip reads like the table beside it:
  // cents from a dollar up, four places below, "<$0.0001" for a real charge smaller than that.
  function money(v) {
    if (v === 0) { return usd.format(0); }
    if (Math.abs(v) < 0.0001) { return (v < 0 ? "-" : "") + "<$0.0001"; }
    return Math.abs(v) >= 1 ? usd.format(v) : usdSmall.format(v);
  }
  var count = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
  var compact = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 });
  var decimal = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });

  // How a value reads on an axis tick (short) and in a tooltip (exact enough to compare).
  var FORMATS = {
    usd: {
      tick: money,
      tip: money
    },
    pct: { tick: function (v) { return decimal.format(v) + "%"; }, tip: function (v) { return v.toFixed(2) + "%"; } },
    ms: { tick: function (v) { return count.format(v) + " ms"; }, tip: function (v) { return count.format(v) + " ms"; } },
    tps: { tick: function (v) { return decimal.format(v); }, tip: function (v) { return decimal.format(v) + " tokens/s"; } },
    tokens: { tick: function (v) { return compact.format(v); }, tip: function (v) { return count.format(v) + " tokens"; } },
    count: { tick: function (v) { return compact.format(v); }, tip: function (v) { return count.format(v); } }
  };
  var AXIS_TITLES = { usd: "USD", pct: "% of calls", ms: "milliseconds", tps: "tokens per second", tokens: "tokens", count: "calls" };

  function dataset(spec) {
    var color = COLORS[spec.color] || "#2563eb";
    var isLine = spec.type === "line";
    return {
      type: spec.type || "bar",
      label: spec.label,
      data: spec.data,
      borderColor: color,
      backgroundColor: isLine ? color : color + "cc",
      borderWidth: isLine ? 2 : 0,
      borderDash: spec.dashed ? [6, 4] : [],
      pointRadius: isLine && !spec.dashed && spec.data.length <= 62 ? 2 : 0,
      spanGaps: false,
      order: isLine ? 0 : 1 // lines drawn over bars
    };
  }

  function draw(canvas) {
    var source = document.getElementById(canvas.dataset.chart);
    if (!source) {
      return;
    }
    var spec = JSON.parse(source.textContent);
    var format = FORMATS[spec.unit] || FORMATS.count;
    var horizontal = Boolean(spec.horizontal);
    var valueAxis = {
      beginAtZero: true,
      stacked: Boolean(spec.stacked),
      title: { display: true, text: AXIS_TITLES[spec.unit] || "" },
      ticks: { callback: function (v) { return format.tick(v); } }
    };
    if (spec.max !== undefined) {
      valueAxis.max = spec.max;
    }
    // Every breakdown row is named (the box grows to fit); a long time axis skips some dates.
    var categoryAxis = { stacked: Boolean(spec.stacked), ticks: { autoSkip: !horizontal, maxRotation: 0 } };
    if (horizontal && spec.labels.length) {
      // One bar per row: let the box grow so long breakdowns stay legible.
      canvas.parentNode.style.height = Math.max(180, 60 + spec.labels.length * 26) + "px";
    }
    new window.Chart(canvas, {
      data: { labels: spec.labels, datasets: spec.datasets.map(dataset) },
      options: {
        indexAxis: horizontal ? "y" : "x",
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: "index", intersect: false },
        scales: horizontal ? { x: valueAxis, y: categoryAxis } : { x: categoryAxis, y: valueAxis },
        plugins: {
          title: { display: true, text: spec.title, font: { size: 15, weight: "600" }, align: "start" },
          legend: {
            position: "bottom",
            display: spec.datasets.length > 1,
            labels: { sort: function (a, b) { return a.datasetIndex - b.datasetIndex; } } // as listed, not by draw order
          },
          tooltip: {
            callbacks: {
              label: function (item) {
                var v = horizontal ? item.parsed.x : item.parsed.y;
                return " " + item.dataset.label + ": " + (v === null ? "no data" : format.tip(v));
              }
            }
          }
        }
      }
    });
  }

  function drawAll() {
    var canvases = document.querySelectorAll("canvas[data-chart]");
    for (var i = 0; i < canvases.length; i++) {
      draw(canvases[i]);
    }
  }

  // Charts are sized for the screen; redraw them at the paper's width when printing.
  window.addEventListener("beforeprint", function () {
    Object.values(window.Chart.instances).forEach(function (chart) { chart.resize(); });
  });

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", drawAll);
  } else {
    drawAll();
  }
})();
