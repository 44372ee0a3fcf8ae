// The review page as a reading room (templates/diagnosis/review.html): which images the
// layout shows (1 x 1, 1 x 2, 2 x 2; the strip picks the first), a prior opened beside the
// current image (its window/level and zoom linked on request), the docked report panel
// (Alt+R goes to the report and, from it, back to the image) and the intended-use text on
// demand. The layout and whether the report is shown are remembered in this browser.
// Viewers start when their cell is shown (window.chestnetViewerStart, static/viewer/).
(function () {
  "use strict";
  var room = document.getElementById("review-live");
  var grid = document.getElementById("rr-grid");
  var panel = document.getElementById("report-panel");
  if (!room || !grid || !panel) return;
  var STORE = "chestnet.review.";
  var CELLS = { "1x1": 1, "1x2": 2, "2x2": 4 };
  var layout = savedLayout();
  var selected = null;   // the image the strip chose: the first cell
  var prior = null;      // { cell, id, unlink } while a prior is open beside it

  function remembered(key, fallback) {
    try { return window.localStorage.getItem(STORE + key) || fallback; } catch (e) { return fallback; }
  }
  function savedLayout() {
    var saved = remembered("layout", "1x1");
    return CELLS[saved] ? saved : "1x1";
  }
  function remember(key, value) {
    try { window.localStorage.setItem(STORE + key, value); } catch (e) { /* private mode */ }
  }
  function cards() {
    return Array.prototype.slice.call(grid.querySelectorAll(".image-card[data-image-id]"));
  }

  // --- the layout ---------------------------------------------------------------------

  function arrange() {
    var all = cards();
    if (!all.length) return;
    var ids = all.map(function (card) { return card.getAttribute("data-image-id"); });
    if (ids.indexOf(selected) < 0) selected = ids[0];
    var start = ids.indexOf(selected);
    var count = CELLS[layout] - (prior ? 1 : 0);
    var shown = [];
    for (var i = 0; i < Math.min(count, ids.length); i++) shown.push(ids[(start + i) % ids.length]);
    all.forEach(function (card) {
      var position = shown.indexOf(card.getAttribute("data-image-id"));
      card.hidden = position < 0;
      card.style.order = position < 0 ? "" : String(position);
      card.classList.toggle("rr-active", card.getAttribute("data-image-id") === selected && CELLS[layout] > 1);
      if (position >= 0) startViewerOf(card);
    });
    if (prior) prior.cell.style.order = String(shown.length);
    grid.setAttribute("data-layout", layout);
    Array.prototype.forEach.call(document.querySelectorAll("[data-layout-choice]"), function (button) {
      button.setAttribute("aria-pressed", String(button.getAttribute("data-layout-choice") === layout));
    });
    Array.prototype.forEach.call(document.querySelectorAll("[data-show-image]"), function (button) {
      var id = button.getAttribute("data-show-image");
      button.setAttribute("aria-pressed", String(shown.indexOf(id) >= 0));
      button.setAttribute("aria-current", id === selected ? "true" : "false");
    });
  }
  // The viewer of a shown cell: started now if the viewer bundle is there; if it is not yet,
  // it starts every shown viewer itself when it loads.
  function startViewerOf(card) {
    var root = card.querySelector("[data-viewer-full]");
    if (root && typeof window.chestnetViewerStart === "function") window.chestnetViewerStart(root);
  }
  function setLayout(choice) {
    if (!CELLS[choice]) return;
    if (prior && choice === "1x1") closePrior();
    layout = choice;
    remember("layout", layout);
    arrange();
  }
  function show(id) {
    selected = id;
    arrange();
    if (prior && prior.cell.querySelector("[data-link-views]").checked) link(true);
    toImage();
  }

  // --- priors -------------------------------------------------------------------------

  function openPrior(id) {
    if (prior) closePrior();
    var template = document.querySelector('template[data-prior-viewer="' + id + '"]');
    if (!template) return;
    var cell = document.importNode(template.content, true).firstElementChild;
    grid.appendChild(cell);
    prior = { cell: cell, unlink: null, id: id };
    pressPrior(id, true);
    if (layout === "1x1") layout = "1x2";   // not remembered: the reader's choice stays
    arrange();
    var root = cell.querySelector("[data-viewer-full]");
    if (root && typeof window.chestnetViewerStart === "function") window.chestnetViewerStart(root);
    cell.querySelector("[data-close-prior]").addEventListener("click", function () {
      closePrior();
      var button = document.querySelector('[data-open-prior="' + id + '"]');
      if (button) button.focus();
    });
    cell.querySelector("[data-link-views]").addEventListener("change", function (event) {
      link(event.target.checked);
    });
    var heading = cell.querySelector("h2");
    announce("Prior opened beside the current image: " + (heading ? heading.textContent : "") + ".");
    var viewport = cell.querySelector("[data-viewport]");
    if (viewport) viewport.focus({ preventScroll: true });
  }
  function pressPrior(id, open) {
    var button = document.querySelector('[data-open-prior="' + id + '"]');
    if (button) button.setAttribute("aria-pressed", String(open));
  }
  function link(on) {
    if (!prior) return;
    if (prior.unlink) { prior.unlink(); prior.unlink = null; }
    if (!on || typeof window.chestnetViewerLink !== "function") return;
    var current = document.getElementById("image-" + selected);
    var a = current && current.querySelector("[data-viewer-full]");
    var b = prior.cell.querySelector("[data-viewer-full]");
    var open = prior;
    window.chestnetViewerLink(a, b).then(function (unlink) {
      if (prior === open && open.cell.querySelector("[data-link-views]").checked) open.unlink = unlink;
      else unlink();
    });
  }
  function closePrior() {
    if (!prior) return;
    if (prior.unlink) prior.unlink();
    var root = prior.cell.querySelector("[data-viewer-full]");
    if (root && typeof window.chestnetViewerStop === "function") window.chestnetViewerStop(root);
    prior.cell.remove();
    pressPrior(prior.id, false);
    prior = null;
    layout = savedLayout();
    arrange();
  }

  // --- the report panel and the intended use ------------------------------------------

  var toggle = document.querySelector("[data-report-toggle]");
  function showReport(open) {
    panel.hidden = !open;
    room.classList.toggle("rr-report-hidden", !open);
    if (toggle) toggle.setAttribute("aria-expanded", String(open));
    remember("report", open ? "shown" : "hidden");
  }
  function toReport(event) {
    if (event) event.preventDefault();
    if (panel.hidden) showReport(true);
    panel.scrollIntoView({ block: "nearest" });
    panel.focus({ preventScroll: true });
    if (location.hash !== "#report-panel") history.replaceState(null, "", "#report-panel");
  }
  // The keyboard to the image of the first cell (unless it shows the server's rendering).
  function toImage() {
    var card = document.getElementById("image-" + selected);
    var viewport = card && card.querySelector("[data-viewport]");
    if (viewport && viewport.tabIndex >= 0) viewport.focus({ preventScroll: true });
  }
  var use = document.querySelector("[data-use-toggle]");
  var useText = document.getElementById("intended-use-text");
  function showUse(open) {
    if (!use || !useText) return;
    useText.hidden = !open;
    use.setAttribute("aria-expanded", String(open));
  }

  function announce(text) {
    var node = document.getElementById("review-announce");
    if (!node) return;
    node.textContent = "";
    node.textContent = text;
  }

  // --- events -------------------------------------------------------------------------

  document.addEventListener("click", function (event) {
    var target = event.target.closest("button, a");
    if (!target) return;
    if (target.hasAttribute("data-layout-choice")) setLayout(target.getAttribute("data-layout-choice"));
    else if (target.hasAttribute("data-show-image")) show(target.getAttribute("data-show-image"));
    else if (target.hasAttribute("data-open-prior")) openPrior(target.getAttribute("data-open-prior"));
    else if (target === toggle) showReport(panel.hidden);
    else if (target === use) showUse(useText.hidden);
    else if (target.matches("a[href='#report-panel']")) toReport(event);
  });
  document.addEventListener("keydown", function (event) {
    if (event.altKey && !event.ctrlKey && !event.metaKey && event.code === "KeyR") {
      event.preventDefault();
      if (!panel.hidden && panel.contains(document.activeElement)) toImage();
      else toReport();
    } else if (event.key === "Escape" && useText && !useText.hidden) {
      showUse(false);
      use.focus();
    }
  });
  // review_live.js added or replaced cards and thumbnails.
  room.addEventListener("chestnet:review-updated", arrange);

  // A sign form sent back with a question unanswered: its image comes first.
  var wrong = grid.querySelector(".image-card .errorlist");
  if (wrong) selected = wrong.closest(".image-card").getAttribute("data-image-id");
  showReport(remembered("report", "shown") !== "hidden" || Boolean(panel.querySelector(".errorlist")));
  arrange();
  if (location.hash === "#report-panel") toReport();
})();
