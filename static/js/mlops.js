// Live progress for imports, training runs and site calibrations: polls a JSON endpoint
// (no reloads, except once when a calibration ends) and draws the training curves as
// inline SVG (no external libraries).
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";

  function poll(url, render, done) {
    var delay = 1000;
    function tick() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
        .then(function (state) { render(state); delay = 1000; if (done(state)) return; window.setTimeout(tick, delay); })
        .catch(function () { delay = Math.min(delay * 2, 30000); window.setTimeout(tick, delay); });
    }
    tick();
  }
  function setStatus(el, status) { el.textContent = status; el.className = "status " + status; }
  function text(el, value) { if (el) el.textContent = value || ""; }

  // --- imports ---
  var imp = document.getElementById("import-root");
  if (imp) {
    poll(imp.getAttribute("data-status-url"), function (s) {
      setStatus(document.getElementById("import-status"), s.status);
      var bar = document.getElementById("import-progress");
      bar.max = Math.max(s.total, 1); bar.value = s.processed;
      text(document.getElementById("import-count"), s.processed + " / " + s.total);
      text(document.getElementById("import-error"), s.error);
      if (s.status === "done") {
        var box = document.getElementById("import-summary");
        box.textContent = "";
        var p = document.createElement("p");
        p.innerHTML = "<strong></strong>";
        p.firstChild.textContent = s.summary.imported + " imported";
        p.appendChild(document.createTextNode(", " + s.summary.skipped + " skipped."));
        box.appendChild(p);
        var ul = document.createElement("ul");
        Object.keys(s.summary.by_label).forEach(function (k) {
          var li = document.createElement("li"); li.textContent = k + ": " + s.summary.by_label[k]; ul.appendChild(li);
        });
        (s.summary.skipped_files || []).forEach(function (f) {
          var li = document.createElement("li"); li.textContent = "skipped " + f.name + ": " + f.reason; ul.appendChild(li);
        });
        box.appendChild(ul);
      }
    }, function (s) { return s.status === "done" || s.status === "failed"; });
  }

  // --- site calibrations: the page is drawn on the server, reloaded once the job ends ---
  var cal = document.getElementById("calibration-root");
  if (cal && ["queued", "running"].indexOf(cal.getAttribute("data-status")) >= 0) {
    poll(cal.getAttribute("data-status-url"), function (s) {
      setStatus(document.getElementById("calibration-status"), s.status);
    }, function (s) {
      var finished = s.status === "done" || s.status === "failed";
      if (finished) window.location.reload();
      return finished;
    });
  }

  // --- training runs ---
  function chart(svg, series) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var W = 420, H = 220, L = 44, R = 10, T = 10, B = 28;
    var values = [];
    series.forEach(function (s) { s.values.forEach(function (v) { if (v !== undefined && v !== null) values.push(v); }); });
    var n = Math.max.apply(null, series.map(function (s) { return s.values.length; }).concat([1]));
    if (!values.length) return;
    var lo = Math.min.apply(null, values), hi = Math.max.apply(null, values);
    if (hi - lo < 1e-6) { hi += 0.05; lo -= 0.05; }
    function x(i) { return L + (n <= 1 ? (W - L - R) / 2 : i * (W - L - R) / (n - 1)); }
    function y(v) { return T + (hi - v) * (H - T - B) / (hi - lo); }
    function el(name, attrs) { var e = document.createElementNS(SVG, name); for (var k in attrs) e.setAttribute(k, attrs[k]); svg.appendChild(e); return e; }
    el("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#9fb3c8" });
    el("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#9fb3c8" });
    [lo, (lo + hi) / 2, hi].forEach(function (v) { el("text", { x: 4, y: y(v) + 4, "font-size": 11, fill: "#5d6b7a" }).textContent = v.toFixed(3); });
    el("text", { x: W / 2 - 20, y: H - 6, "font-size": 11, fill: "#5d6b7a" }).textContent = "epoch 1–" + n;
    series.forEach(function (s) {
      var pts = [];
      s.values.forEach(function (v, i) { if (v !== undefined && v !== null) pts.push(x(i).toFixed(1) + "," + y(v).toFixed(1)); });
      el("polyline", { points: pts.join(" "), fill: "none", stroke: s.color, "stroke-width": 2, "stroke-dasharray": s.dash || "" });
      pts.forEach(function (p) { var c = p.split(","); el("circle", { cx: c[0], cy: c[1], r: 3, fill: s.color, "class": "point " + s.name }); });
    });
  }
  var run = document.getElementById("run-root");
  if (run) {
    poll(run.getAttribute("data-status-url"), function (s) {
      setStatus(document.getElementById("run-status"), s.status);
      text(document.getElementById("run-epoch"), "Epoch " + s.history.length + " of " + s.epochs);
      text(document.getElementById("run-error"), s.error);
      var log = document.getElementById("run-log");
      if (log.textContent !== s.log) { log.textContent = s.log; log.scrollTop = log.scrollHeight; }
      function col(key) { return s.history.map(function (e) { return e[key]; }); }
      chart(document.getElementById("chart-loss"), [
        { name: "loss", values: col("loss"), color: "#1f6feb" },
        { name: "val_loss", values: col("val_loss"), color: "#b54708", dash: "6 4" }]);
      chart(document.getElementById("chart-auc"), [
        { name: "auc", values: col("auc"), color: "#1f6feb" },
        { name: "val_auc", values: col("val_auc"), color: "#b54708", dash: "6 4" }]);
      if (s.version) {
        var box = document.getElementById("run-version");
        if (!box.querySelector("a")) {
          box.textContent = "Model version ";
          var a = document.createElement("a"); a.href = s.version_url; a.textContent = s.version; box.appendChild(a);
        }
      }
      var finished = ["succeeded", "failed", "cancelled"].indexOf(s.status) >= 0;
      document.getElementById("cancel-form").hidden = finished;
    }, function (s) { return ["succeeded", "failed", "cancelled"].indexOf(s.status) >= 0; });
  }
})();
