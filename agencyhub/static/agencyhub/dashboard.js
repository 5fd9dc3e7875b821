// Charts of the admin dashboard. Data: the "dashboard-charts" JSON script (agencyhub/dashboard.py chart_data).
(function () {
  "use strict";
  function draw() {
    var node = document.getElementById("dashboard-charts");
    if (!node || typeof Chart === "undefined") { return; }
    var data = JSON.parse(node.textContent);
    var style = getComputedStyle(document.documentElement);
    var fg = style.getPropertyValue("--body-fg").trim() || "#333";
    var grid = style.getPropertyValue("--hairline-color").trim() || "#ddd";
    Chart.defaults.color = fg;
    Chart.defaults.borderColor = grid;
    Chart.defaults.maintainAspectRatio = false;
    Chart.defaults.animation = false;
    var blue = "#417690", amber = "#c77c02", red = "#ba2121", green = "#2e7d32";

    function bar(id, config) {
      var canvas = document.getElementById(id);
      if (!canvas) { return; }
      if (!config.data.labels.length) {
        canvas.parentNode.appendChild(Object.assign(document.createElement("p"), {className: "quiet", textContent: "No data yet."}));
        canvas.remove();
        return;
      }
      canvas.chart = new Chart(canvas, Object.assign({type: "bar"}, config));
    }

    if (data.spend) {
      bar("chart-spend", {
        data: {labels: data.spend.labels, datasets: [
          {label: "billed this month", data: data.spend.billed_month, backgroundColor: blue},
          {label: "monthly cap", data: data.spend.cap, backgroundColor: grid, borderColor: fg, borderWidth: 1}
        ]},
        options: {indexAxis: "y"}
      });
    }
    if (data.budget) {
      bar("chart-budget", {
        data: {labels: data.budget.labels, datasets: [{
          label: "% of daily token budget", data: data.budget.used_percent,
          backgroundColor: data.budget.used_percent.map(function (v) { return v >= 100 ? red : v >= 80 ? amber : green; })
        }]},
        options: {indexAxis: "y", plugins: {legend: {display: false}}, scales: {x: {suggestedMax: 100}}}
      });
    }
    if (data.savings) {
      bar("chart-savings", {
        data: {labels: data.savings.labels, datasets: [{label: "USD", data: data.savings.values, backgroundColor: [green, amber]}]},
        options: {plugins: {legend: {display: false}}}
      });
    } else {
      bar("chart-savings", {data: {labels: [], datasets: []}});
    }
    bar("chart-latency", {
      data: {labels: data.latency.labels, datasets: [
        {label: "p50 (ms)", data: data.latency.p50, backgroundColor: blue, yAxisID: "y"},
        {label: "p95 (ms)", data: data.latency.p95, backgroundColor: amber, yAxisID: "y"},
        {type: "line", label: "error rate (%)", data: data.latency.error_rate, borderColor: red, backgroundColor: red, yAxisID: "errors"}
      ]},
      options: {scales: {y: {beginAtZero: true, title: {display: true, text: "ms"}},
                         errors: {position: "right", beginAtZero: true, suggestedMax: 10, grid: {drawOnChartArea: false}, title: {display: true, text: "%"}}}}
    });
    document.documentElement.dataset.dashboardCharts = "drawn";
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", draw); } else { draw(); }
})();
