// The case page follows its analysis without reloads by polling the case JSON.
(function () {
  "use strict";
  var root = document.getElementById("case-root");
  if (!root) return;
  var url = root.getAttribute("data-api");
  var statusLabels = { queued: "Queued", processing: "Processing", awaiting_review: "Awaiting review",
                       reported: "Reported", failed: "Failed", done: "Done", refused: "Not analysed" };
  var delay = 1000;

  function setStatus(el, status) {
    el.textContent = statusLabels[status] || status;
    el.className = "status " + status;
  }
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function renderPrediction(card, result, pr) {
    var p = el("p", "prob");
    var spread = pr.uncertainty === null || pr.uncertainty === undefined ? "" : " ± " + pr.uncertainty.toFixed(2);
    p.appendChild(el("strong", "", "P(pneumonia) " + pr.probability.toFixed(2) + spread));
    p.appendChild(document.createTextNode((spread ? ", ensemble spread" : "") + " — AI label " + pr.label +
      " at threshold " + pr.threshold.toFixed(2) + " · model " + pr.model_version));
    result.appendChild(p);
    if (pr.warnings && pr.warnings.length) {
      var list = el("ul", "ai-warnings");
      pr.warnings.forEach(function (w) { list.appendChild(el("li", "", w)); });
      result.appendChild(list);
    }
    var heat = card.querySelector("[data-heatmap]");
    if (pr.heatmap_url && heat.hidden) {
      heat.src = pr.heatmap_url; heat.hidden = false;
      var viewer = card.querySelector("[data-viewer]");
      if (viewer.chestnetViewer) viewer.chestnetViewer.applyOverlay();
    }
  }
  // A refusal is a result: the plain-words reason and the specific message, no heatmap.
  function renderRefusal(card, result, refusal) {
    var box = el("div", "refusal");
    var p = el("p");
    p.appendChild(el("strong", "", "Not analysed by the AI."));
    p.appendChild(document.createTextNode(" " + refusal.explanation));
    box.appendChild(p);
    if (refusal.message) box.appendChild(el("p", "muted", refusal.message));
    result.appendChild(box);
    var tools = card.querySelector("[data-overlay-tools]");
    if (tools) tools.hidden = true;
    card.querySelector("[data-heatmap]").hidden = true;
  }
  function renderImage(image) {
    var card = root.querySelector('[data-image-id="' + image.id + '"]');
    if (!card) return;
    setStatus(card.querySelector("[data-image-status]"), image.status);
    // The worker makes the preview when it reads the file: show it as soon as it exists.
    var radiograph = card.querySelector("[data-radiograph]");
    if (image.preview_url && radiograph && radiograph.hidden) {
      radiograph.src = image.preview_url; radiograph.hidden = false;
      var pending = card.querySelector("[data-preview-pending]");
      if (pending) pending.hidden = true;
    }
    var result = card.querySelector("[data-result]");
    result.textContent = "";
    if (image.prediction) {
      renderPrediction(card, result, image.prediction);
    } else if (image.status === "refused" && image.refusal) {
      renderRefusal(card, result, image.refusal);
    } else if (image.status === "failed") {
      result.appendChild(el("p", "error", image.error));
    } else {
      result.appendChild(el("p", "muted", "Analysis " + (statusLabels[image.status] || image.status).toLowerCase() + "…"));
    }
    var retry = card.querySelector("[data-retry]");
    if (retry) retry.hidden = image.status !== "failed";
  }
  function renderReview(review) {
    var section = document.getElementById("report");
    if (!review || section.getAttribute("data-version") === String(review.version)) return;
    section.setAttribute("data-version", review.version);
    section.textContent = "";
    var h = document.createElement("h2"); h.textContent = "Radiologist report"; section.appendChild(h);
    var p = document.createElement("p");
    var opinion = review.agrees_with_ai === null ? "no AI result to agree with" :
      (review.agrees_with_ai ? "agrees" : "disagrees") + " with the AI";
    p.textContent = "Finding: " + (review.finding_display || review.finding) + " · " + opinion +
      " · signed by " + review.author + " on " + signedAt(review.signed_at) +
      " (version " + review.version + ")";
    section.appendChild(p);
    var pre = document.createElement("pre"); pre.className = "report-text"; pre.textContent = review.report;
    section.appendChild(pre);
    // Beside each image: whether the radiologist agreed with the AI on it.
    (review.ai_results || []).forEach(function (entry) {
      var line = document.querySelector('[data-image-id="' + entry.image + '"] [data-agreement]');
      if (!line) return;
      var known = entry.agrees === true || entry.agrees === false;
      line.hidden = !known;
      line.textContent = known ? "The radiologist " + (entry.agrees ? "agrees" : "disagrees") +
        " with the AI on this image." : "";
    });
  }
  // "2026-11-30 14:05": the site's wall-clock time, as the API gives it and the page's
  // first render writes it (not the browser's zone).
  function signedAt(iso) {
    return /^\d{4}-\d\d-\d\dT\d\d:\d\d/.test(iso || "") ? iso.slice(0, 10) + " " + iso.slice(11, 16) : (iso || "");
  }
  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        // Signed out (idle timeout): reload, so the login page replaces the patient data.
        if (r.status === 401 || r.status === 403) { window.location.reload(); throw new Error(r.status); }
        if (!r.ok) throw new Error(r.status);
        return r.json();
      })
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
