// The case page follows its analysis without reloads by polling the case JSON.
(function () {
  "use strict";
  var root = document.getElementById("case-root");
  if (!root) return;
  var url = root.getAttribute("data-api");
  var statusLabels = { queued: "Queued", processing: "Processing", awaiting_review: "Awaiting review",
                       reported: "Reported", failed: "Failed", done: "Done" };
  var delay = 1000;

  function setStatus(el, status) {
    el.textContent = statusLabels[status] || status;
    el.className = "status " + status;
  }
  function renderImage(image) {
    var card = root.querySelector('[data-image-id="' + image.id + '"]');
    if (!card) return;
    setStatus(card.querySelector("[data-image-status]"), image.status);
    var result = card.querySelector("[data-result]");
    result.textContent = "";
    var p = document.createElement("p");
    if (image.prediction) {
      var pr = image.prediction;
      p.className = "prob";
      var strong = document.createElement("strong");
      strong.textContent = "P(pneumonia): " + pr.probability.toFixed(2);
      p.appendChild(strong);
      p.appendChild(document.createTextNode(" — AI label " + pr.label + " at threshold " +
        pr.threshold.toFixed(2) + " · model " + pr.model_version));
      var heat = card.querySelector("[data-heatmap]");
      if (pr.heatmap_url && heat.hidden) {
        heat.src = pr.heatmap_url; heat.hidden = false;
        var viewer = card.querySelector("[data-viewer]");
        if (viewer.chestnetViewer) viewer.chestnetViewer.applyOverlay();
      }
    } else if (image.status === "failed") {
      p.className = "error"; p.textContent = image.error;
    } else {
      p.className = "muted"; p.textContent = "Analysis " + (statusLabels[image.status] || image.status).toLowerCase() + "…";
    }
    result.appendChild(p);
    card.querySelector("[data-retry]").hidden = image.status !== "failed";
  }
  function renderReview(review) {
    var section = document.getElementById("report");
    if (!review || section.getAttribute("data-version") === String(review.version)) return;
    section.setAttribute("data-version", review.version);
    section.textContent = "";
    var h = document.createElement("h2"); h.textContent = "Radiologist report"; section.appendChild(h);
    var p = document.createElement("p");
    p.textContent = "Finding: " + review.finding + " · " + (review.agrees_with_ai ? "agrees" : "disagrees") +
      " with the AI · signed by " + review.author + " (version " + review.version + ")";
    section.appendChild(p);
    var pre = document.createElement("pre"); pre.className = "report-text"; pre.textContent = review.report;
    section.appendChild(pre);
  }
  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (c) {
        setStatus(document.getElementById("case-status"), c.status);
        c.images.forEach(renderImage);
        renderReview(c.review);
        delay = (c.status === "queued" || c.status === "processing") ? 1000 : 10000;
      })
      .catch(function () { delay = Math.min(delay * 2, 30000); })
      .then(function () { window.setTimeout(poll, delay); });
  }
  window.setTimeout(poll, 500);
})();
