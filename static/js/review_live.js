// The review page keeps up without reloads. Every few seconds it asks the live endpoint
// (views.case_review_live) whether the version it shows is still current; when it is not,
// the answer carries the side panel and every image card, rendered by the server with the
// templates of the first render. Results, refusals, claims and new images of the study then
// appear in place (the card, its thumbnail in the strip, the case bar's AI result), each
// announced in the page's polite live region. The report's part of the side panel is only
// replaced when its own state changes, and the sign form keeps what was typed in it.
// review_room.js hears "chestnet:review-updated" and lays the cells out again.
(function () {
  "use strict";
  var layout = document.getElementById("review-live");
  var panel = document.getElementById("report-live");
  if (!layout || !panel) return;
  var images = layout.querySelector(".review-images");
  var thumbs = document.getElementById("rr-thumbs");
  var announcer = document.getElementById("review-announce");
  var url = layout.getAttribute("data-live-url");
  var version = layout.getAttribute("data-live-version") || "";
  var claimedBy = panel.getAttribute("data-claimed-by") || "";
  var BUSY_MS = 2500;    // while images are being analysed
  var QUIET_MS = 5000;   // waiting for a claim, a sign-off or a new image
  var MAX_MS = 30000;    // the server did not answer: back off up to this
  var delay = BUSY_MS;
  var timer = null;
  var busy = false;
  var stopped = false;
  var typed = {};        // the sign form's values, kept while the form is away

  function poll() {
    clearTimeout(timer);
    if (stopped) return;
    if (busy) { schedule(); return; }
    busy = true;
    fetch(url + "?since=" + encodeURIComponent(version), {
      credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" }
    }).then(function (response) {
      // Signed out (idle timeout): reload, so the login page replaces the patient data.
      if (response.redirected || response.status === 401 || response.status === 403) {
        stopped = true;
        window.location.reload();
        throw new Error(String(response.status));
      }
      if (!response.ok) throw new Error(String(response.status));
      return response.json();
    }).then(function (answer) {
      if (answer.changed) render(answer);
      delay = busyStatus() ? BUSY_MS : QUIET_MS;
    }, function () {
      delay = Math.min(delay * 2, MAX_MS);
    }).then(function () {
      busy = false;
      schedule();
    });
  }
  function schedule() {
    clearTimeout(timer);
    if (!stopped && !document.hidden) timer = setTimeout(poll, delay);
  }
  function busyStatus() {
    var status = document.getElementById("case-status");
    return Boolean(status && /\b(queued|processing)\b/.test(status.className));
  }

  // --- what changed -------------------------------------------------------------------------

  function render(answer) {
    var news = [];
    var added = [];
    var panelChanged = answer.panel_version !== panel.getAttribute("data-live-panel");
    if (panelChanged) keepTyped();
    setCaseStatus(answer);
    answer.images.forEach(function (image) { renderImage(image, panelChanged, news, added); });
    setCount(answer.images.length);
    var ai = document.getElementById("case-ai");
    if (ai && typeof answer.case_ai === "string" && ai.innerHTML.trim() !== answer.case_ai) ai.innerHTML = answer.case_ai;
    if (panelChanged) renderPanel(answer, news);
    if (panelChanged) restoreTyped();
    version = answer.version;
    layout.setAttribute("data-live-version", version);
    // The room shows (and starts) what its layout holds; a new image it does not show waits.
    layout.dispatchEvent(new CustomEvent("chestnet:review-updated"));
    added.forEach(showViewer);
    if (news.length) announce(news.join(" "));
  }
  function setCaseStatus(answer) {
    var status = document.getElementById("case-status");
    if (!status) return;
    status.className = "status " + answer.status;
    status.textContent = answer.status_display;
  }
  function setCount(count) {
    var node = document.getElementById("image-count");
    if (node) node.textContent = count + (count === 1 ? " image" : " images");
  }
  function parse(html) {
    var holder = document.createElement("template");
    holder.innerHTML = html.trim();
    return holder.content.firstElementChild;
  }
  function renderImage(image, panelChanged, news, added) {
    renderThumb(image);
    var fresh = parse(image.html);
    var card = document.getElementById("image-" + image.id);
    if (!card) {
      fresh.classList.add("live-new");
      fresh.hidden = true;
      images.appendChild(fresh);
      added.push(fresh.querySelector("[data-viewer-full]"));
      news.push("New image: image " + image.number + ".");
      return;
    }
    var badge = card.querySelector("[data-live-status]");
    var before = badge ? badge.className : "";
    swap(card, fresh, "[data-live-status]");
    swap(card, fresh, "[data-live-result]");
    if (panelChanged) swap(card, fresh, "[data-live-agreement]");
    var after = fresh.querySelector("[data-live-status]");
    if (after && after.className !== before) {
      var said = resultNews(image.status);
      if (said) news.push("Image " + image.number + ": " + said + ".");
    }
    refreshViewer(card, fresh);
  }
  // The image's thumbnail in the strip, where it says something new.
  function renderThumb(image) {
    if (!thumbs || !image.thumb) return;
    var fresh = parse(image.thumb);
    var old = thumbs.querySelector('[data-thumb="' + image.id + '"]');
    if (!old) { thumbs.appendChild(fresh); return; }
    var button = old.querySelector("button");
    var now = fresh.querySelector("button");
    if (button && now) {
      // What the room set on it (shown, current) stays; the focus too.
      ["aria-pressed", "aria-current"].forEach(function (name) {
        if (button.hasAttribute(name)) now.setAttribute(name, button.getAttribute(name));
      });
    }
    if (old.outerHTML === fresh.outerHTML) return;
    var focused = old.contains(document.activeElement);
    old.parentNode.replaceChild(fresh, old);
    if (focused && now) now.focus({ preventScroll: true });
  }
  function resultNews(status) {
    return { done: "AI result ready", refused: "not analysed by the AI", failed: "analysis failed" }[status];
  }
  // Replaces the part of the card `selector` names with the server's new rendering of it,
  // unless that is what the page shows already.
  function swap(card, fresh, selector) {
    var old = card.querySelector(selector);
    var now = fresh.querySelector(selector);
    if (!old || !now) return;
    if (old.outerHTML !== now.outerHTML) old.parentNode.replaceChild(document.importNode(now, true), old);
  }

  // --- the viewer ---------------------------------------------------------------------------

  // A newly added image's viewer: started by the viewer bundle where it offers that (once
  // the layout shows it), otherwise the server's preview of the image.
  function showViewer(root) {
    if (!root) return;
    if (typeof window.chestnetViewerStart === "function") {
      root.removeAttribute("data-live-preview");
      if (root.getClientRects().length) window.chestnetViewerStart(root);
      return;
    }
    root.setAttribute("data-live-preview", "");
    root.classList.add("cn-preview-only");
    var fallback = root.querySelector("[data-fallback]");
    var status = root.querySelector("[data-viewer-status]");
    if (fallback && fallback.getAttribute("data-src")) {
      fallback.src = fallback.getAttribute("data-src");
      fallback.hidden = false;
      if (status) status.textContent = "";
    } else if (status) {
      status.textContent = "The image appears once the worker has read it…";
    }
  }
  // The heatmap arrived, or the preview a preview-only card waited for: a new viewer, since
  // one reads its heatmap when it starts. Otherwise the viewer (and how it is set) stays.
  function refreshViewer(card, fresh) {
    var old = card.querySelector("[data-viewer-full]");
    var now = fresh.querySelector("[data-viewer-full]");
    if (!old || !now) return;
    var waiting = old.hasAttribute("data-live-preview");
    var heatmap = now.getAttribute("data-heatmap-url") !== old.getAttribute("data-heatmap-url");
    var preview = fallbackSrc(now) !== fallbackSrc(old);
    if (waiting ? !(heatmap || preview || typeof window.chestnetViewerStart === "function")
                : !(heatmap && typeof window.chestnetViewerStart === "function")) return;
    var replacement = document.importNode(now, true);
    if (typeof window.chestnetViewerStop === "function") window.chestnetViewerStop(old);
    old.parentNode.replaceChild(replacement, old);
    showViewer(replacement);
  }
  function fallbackSrc(root) {
    var fallback = root.querySelector("[data-fallback]");
    return fallback ? fallback.getAttribute("data-src") || "" : "";
  }

  // --- the side panel -----------------------------------------------------------------------

  function renderPanel(answer, news) {
    var focused = panel.contains(document.activeElement) ? document.activeElement : null;
    var focusName = focused ? focused.name || focused.id || "" : "";
    var wasStatus = panelStatus();
    panel.innerHTML = answer.panel;
    panel.setAttribute("data-live-panel", answer.panel_version);
    panel.setAttribute("data-claimed-by", answer.claimed_by);
    if (focused) {
      var again = focusName ? panel.querySelector('[name="' + focusName + '"], [id="' + focusName + '"]') : null;
      (again || document.getElementById("report-panel") || panel).focus({ preventScroll: true });
    }
    if (answer.claimed_by !== claimedBy) {
      if (answer.claimed_by && answer.claimed_by_you) news.push("You hold the claim on this case.");
      else if (answer.claimed_by) news.push("Case claimed by " + answer.claimed_by + ".");
      else news.push("Claim released: the case can be claimed.");
      claimedBy = answer.claimed_by;
    } else if (answer.status !== wasStatus) {
      if (document.getElementById("claim-form")) news.push("Ready for review: the case can be claimed.");
      else news.push("Case " + answer.status_display.toLowerCase() + ".");
    }
    panel.setAttribute("data-status", answer.status);
  }
  function panelStatus() {
    return panel.getAttribute("data-status") || initialStatus;
  }
  var initialStatus = (function () {
    var status = document.getElementById("case-status");
    var match = status ? /status (\S+)/.exec(status.className) : null;
    return match ? match[1] : "";
  })();

  // The sign form and its agreement questions beside the images (form="review-form").
  function formFields() {
    var form = document.getElementById("review-form");
    return form ? Array.prototype.slice.call(form.elements) : [];
  }
  function keepTyped() {
    formFields().forEach(function (field) {
      if (!field.name || field.type === "hidden" || field.type === "submit") return;
      if (field.type === "radio" || field.type === "checkbox") {
        if (field.checked) typed[field.name] = field.value;
      } else {
        typed[field.name] = field.value;
      }
    });
  }
  function restoreTyped() {
    formFields().forEach(function (field) {
      if (!(field.name in typed) || field.type === "hidden" || field.type === "submit") return;
      if (field.type === "radio" || field.type === "checkbox") field.checked = field.value === typed[field.name];
      else field.value = typed[field.name];
    });
  }

  function announce(text) {
    if (!announcer) return;
    announcer.textContent = "";
    announcer.textContent = text;
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) poll();
  });
  schedule();
})();
