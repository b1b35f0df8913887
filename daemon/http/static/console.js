// watchkeeper console: draws the charts from the JSON each page embeds and submits the
// silence form. No data comes from anywhere but the page itself and same-origin fetches.
(function () {
  "use strict";
  var source = document.getElementById("chart-data");
  var data = source ? JSON.parse(source.textContent) : {};
  var config = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["sendDataToCloud"] };
  var layout = function (title, extra) {
    var base = {
      margin: { l: 60, r: 20, t: 30, b: 60 }, height: 320, title: { text: title, font: { size: 13 } },
      legend: { orientation: "h", y: -0.25 }, hovermode: "closest"
    };
    return Object.assign(base, extra || {});
  };
  var draw = function (id, traces, lay) {
    var node = document.getElementById(id);
    if (!node || typeof Plotly === "undefined") { return; }
    Plotly.newPlot(node, traces, lay, config).then(function () { node.setAttribute("data-drawn", "1"); });
  };
  var threshold = function (s, key, color) {
    var any = s[key].some(function (v) { return v !== null; });
    if (!any) { return null; }
    return {
      x: s.x, y: s[key], name: key, mode: "lines", line: { dash: "dash", color: color, shape: "hv" },
      hoverinfo: "name+y", meta: "threshold"
    };
  };
  if (data.series && document.getElementById("timeline-chart")) {
    var traces = [];
    data.series.forEach(function (s, i) {
      traces.push({ x: s.x, y: s.value, name: (s.feature || data.metric), mode: "lines+markers", marker: { size: 5 } });
      if (i === 0) {
        [["warn", "#d98c00"], ["critical", "#c62828"], ["resolve", "#2e7d32"]].forEach(function (p) {
          var t = threshold(s, p[0], p[1]);
          if (t) { traces.push(t); }
        });
      }
    });
    draw("timeline-chart", traces, layout(data.metric, { xaxis: { type: "date" } }));
  }
  (data.distributions || []).forEach(function (d, i) {
    draw("distribution-" + i, [
      { x: d.labels, y: d.reference, name: "reference", type: "bar", marker: { color: "#90a4ae" } },
      { x: d.labels, y: d.current, name: "current", type: "bar", marker: { color: "#1565c0" } }
    ], layout(d.feature + (d.kind === "numeric" ? " on the reference's bins" : " by category"),
      { barmode: "group", yaxis: { title: { text: "share" }, tickformat: ".0%" } }));
  });
  (data.heatmaps || []).forEach(function (h, i) {
    draw("heatmap-" + i, [{ x: h.x, y: h.y, z: h.z, type: "heatmap", colorscale: "YlOrRd", reversescale: true, hoverongaps: false }],
      // automargin: the left margin grows to the longest feature name, so bill_length_mm
      // and flipper_length_mm are not both cut to "…ength_mm"
      layout(h.metric + " per feature", {
        height: Math.max(240, 40 + 24 * h.y.length), xaxis: { type: "date" }, yaxis: { automargin: true }
      }));
  });
  if (data.latency && data.latency.x && data.latency.x.length) {
    draw("latency-chart", (data.latency.percentiles || []).map(function (p) {
      return { x: data.latency.x, y: data.latency[p], name: p + " (ms)", mode: "lines+markers", marker: { size: 4 } };
    }), layout("latency", { xaxis: { type: "date" } }));
  }
  if (data.series && document.getElementById("series-chart")) {
    draw("series-chart", data.series.map(function (s) {
      return { x: s.x, y: s.y, name: s.name, mode: "lines+markers", marker: { size: 4 } };
    }), layout("metrics", { xaxis: { type: "date" } }));
  }

  var form = document.getElementById("silence-form");
  if (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var out = document.getElementById("silence-result");
      var headers = { "Content-Type": "application/json", "X-CSRF-Token": form.getAttribute("data-csrf") };
      if (form.elements.token) { headers.Authorization = "Bearer " + form.elements.token.value; }
      var body = {
        duration: form.elements.duration.value,
        author: form.elements.author.value,
        comment: form.elements.comment.value
      };
      fetch(form.getAttribute("action"), {
        method: "POST", headers: headers, body: JSON.stringify(body), credentials: "same-origin"
      }).then(function (response) {
        return response.json().then(function (answer) { return [response.status, answer]; });
      }).then(function (result) {
        if (result[0] === 201) {
          out.textContent = "Silenced (#" + result[1].silence + ")";
          out.className = "ok";
          form.setAttribute("data-silence", String(result[1].silence));
        } else {
          out.textContent = "Refused (" + result[0] + "): " + (result[1].error || "");
          out.className = "error";
        }
      }).catch(function (err) { out.textContent = "Failed: " + err; out.className = "error"; });
    });
  }
}());
