// The worklist follows new and changed cases without reloads. Every few seconds it asks
// the rows endpoint whether the page it shows is still current (a version, no patient
// data); only when it is not does the answer carry the rows, rendered by the server as on
// the page. Filters and sort live in the URL and in localStorage (restored on return), the
// waiting times tick, and a case's first image can be looked at before claiming it.
(function () {
  "use strict";
  var table = document.getElementById("worklist");
  if (!table) return;
  var form = document.getElementById("worklist-filters");
  var body = document.getElementById("worklist-rows");
  var live = document.getElementById("worklist-live");
  var announcer = document.getElementById("worklist-announce");
  var claimNext = document.getElementById("claim-next");
  var nextLink = document.getElementById("worklist-next");
  var STORE = "chestnet.worklist.filters";
  var FIELDS = ["urgency", "flagged", "claim", "source", "sort"];
  var INTERVAL_MS = 2500;
  var TICK_MS = 15000;
  var rowsUrl = table.getAttribute("data-rows-url");
  var version = table.getAttribute("data-version") || "";
  var skew = Date.parse(table.getAttribute("data-server-now")) - Date.now() || 0;
  var timer = null;
  var busy = false;
  var stopped = false;
  var shown = caseIds();

  // --- filters: URL and localStorage ------------------------------------------------------

  function filterQuery() {
    var params = new URLSearchParams();
    FIELDS.forEach(function (name) {
      var field = form.elements[name];
      if (field && field.value !== (field.getAttribute("data-default") || "")) params.set(name, field.value);
    });
    return params.toString();
  }
  function saved() {
    try { return localStorage.getItem(STORE); } catch (e) { return null; }
  }
  function save(query) {
    try { localStorage.setItem(STORE, query); } catch (e) { /* private mode: the URL still carries them */ }
  }
  // Back on the worklist without filters in the URL: the ones last used.
  function restore() {
    var current = new URLSearchParams(location.search);
    var inUrl = FIELDS.some(function (name) { return current.has(name); });
    var last = saved();
    if (!inUrl && last) {
      location.replace(location.pathname + "?" + last);
      return true;
    }
    save(filterQuery());
    return false;
  }
  function apply() {
    var query = filterQuery();
    save(query);
    history.replaceState(null, "", location.pathname + (query ? "?" + query : ""));
    syncClaimNext();
    var sort = form.elements.sort;
    var label = table.querySelector("[data-sort-label]");
    if (sort && label) label.textContent = sort.options[sort.selectedIndex].text;
    sortHeaders(sort ? sort.value : "priority");
    var first = document.getElementById("worklist-first");
    if (first) first.hidden = true;
    version = "";
    shown = null;  // another list: its rows are not news
    poll();
  }
  function sortHeaders(sort) {
    var headers = table.querySelectorAll("thead th");
    var states = { "Study time": { study_newest: "descending", study_oldest: "ascending" },
                   "Waiting": { waiting: "descending" } };
    Array.prototype.forEach.call(headers, function (th) {
      var state = (states[th.textContent.trim()] || {})[sort];
      if (state) th.setAttribute("aria-sort", state); else th.removeAttribute("aria-sort");
    });
  }
  // "Claim next" takes the top of the list as it is filtered now.
  function syncClaimNext() {
    if (!claimNext) return;
    Array.prototype.forEach.call(claimNext.querySelectorAll("input[type=hidden]:not([name=csrfmiddlewaretoken])"),
      function (input) { input.remove(); });
    var params = new URLSearchParams(filterQuery());
    params.forEach(function (value, name) {
      if (name === "claim") return;
      var input = document.createElement("input");
      input.type = "hidden"; input.name = name; input.value = value;
      claimNext.appendChild(input);
    });
  }

  // --- the poll ---------------------------------------------------------------------------

  function schedule() {
    clearTimeout(timer);
    if (!stopped && !document.hidden) timer = setTimeout(poll, INTERVAL_MS);
  }
  function poll() {
    clearTimeout(timer);
    if (stopped) return;
    if (busy) { schedule(); return; }
    busy = true;
    var params = new URLSearchParams(location.search);
    params.set("since", version);
    params.set("poll", "1");
    fetch(rowsUrl + "?" + params.toString(), {
      credentials: "same-origin", cache: "no-store", headers: { "Accept": "application/json" }
    }).then(function (response) {
      if (response.redirected || response.status === 401 || response.status === 403) {
        stopped = true;
        throw new Error("Live updates stopped: you may have been signed out. Reload the page.");
      }
      if (!response.ok) throw new Error("Live updates paused: the server did not answer (" + response.status + ").");
      return response.json();
    }).then(render, function (error) {
      setLive(error.message || "Live updates paused: the server cannot be reached.", true);
    }).then(function () {
      busy = false;
      schedule();
    });
  }
  function render(answer) {
    skew = Date.parse(answer.now) - Date.now() || skew;
    if (answer.changed) {
      var focusKey = focusedKey();
      var open = openPreviews();
      body.innerHTML = answer.html;
      version = answer.version;
      var ids = caseIds();
      var before = shown;
      var added = before ? ids.filter(function (id) { return before.indexOf(id) < 0; }) : [];
      shown = ids;
      added.forEach(function (id) {
        var row = body.querySelector('tr[data-case-id="' + id + '"]');
        if (row) row.classList.add("wl-new");
      });
      if (added.length) announce(added.length === 1 ? "1 new case on the worklist." : added.length + " new cases on the worklist.");
      restoreFocus(focusKey);
      open.forEach(function (id) {
        var button = body.querySelector('tr[data-case-id="' + id + '"] [data-preview]');
        if (button) showPreview(button, true);
      });
      if (nextLink) {
        nextLink.hidden = !answer.next;
        nextLink.href = answer.next || "#";
      }
      tick();
    }
    setLive("Updates by itself · checked " + new Date().toLocaleTimeString(), false);
  }
  function setLive(text, problem) {
    if (!live) return;
    live.textContent = text;
    live.classList.toggle("error", problem);
  }
  function announce(text) {
    if (announcer) { announcer.textContent = ""; announcer.textContent = text; }
  }
  function caseIds() {
    return Array.prototype.map.call(body.querySelectorAll("tr[data-case-id]"),
      function (row) { return row.getAttribute("data-case-id"); });
  }
  // A control replaced under the keyboard keeps the focus (same case, same control).
  function focusedKey() {
    var active = document.activeElement;
    return active && body.contains(active) ? active.getAttribute("data-focus-key") : null;
  }
  function restoreFocus(key) {
    if (!key) return;
    var again = body.querySelector('[data-focus-key="' + key + '"]');
    (again || table.parentNode).focus();
  }

  // --- waiting times ----------------------------------------------------------------------

  function waited(ms) {
    var minutes = Math.floor(ms / 60000);
    if (minutes < 1) return "< 1 min";
    if (minutes < 60) return minutes + " min";
    var hours = Math.floor(minutes / 60);
    if (hours < 24) return hours + " h " + (minutes % 60) + " min";
    return Math.floor(hours / 24) + " d " + (hours % 24) + " h";
  }
  function tick() {
    var now = Date.now() + skew;
    Array.prototype.forEach.call(body.querySelectorAll("[data-waiting-since]"), function (cell) {
      var since = Date.parse(cell.getAttribute("data-waiting-since"));
      if (!isNaN(since)) cell.textContent = waited(Math.max(0, now - since));
    });
  }

  // --- preview before claiming ------------------------------------------------------------

  function previewOf(button) {
    return document.getElementById(button.getAttribute("aria-controls"));
  }
  function place(button, panel) {
    var box = button.getBoundingClientRect();
    var width = 260;
    var left = Math.min(Math.max(8, box.right - width), window.innerWidth - width - 8);
    var below = box.bottom + 6;
    var top = below + 270 > window.innerHeight ? Math.max(8, box.top - 276) : below;
    panel.style.left = left + "px";
    panel.style.top = top + "px";
  }
  function showPreview(button, pinned) {
    var panel = previewOf(button);
    if (!panel) return;
    var image = panel.querySelector("img");
    // Fetched when first asked for: a page of thumbnails would be a page of audited views.
    if (image && !image.getAttribute("src")) image.src = image.getAttribute("data-src");
    if (pinned) button.setAttribute("data-pinned", "");
    place(button, panel);
    panel.hidden = false;
    button.setAttribute("aria-expanded", "true");
  }
  function hidePreview(button, force) {
    if (!force && button.hasAttribute("data-pinned")) return;
    var panel = previewOf(button);
    if (panel) panel.hidden = true;
    button.removeAttribute("data-pinned");
    button.setAttribute("aria-expanded", "false");
  }
  function openPreviews() {
    return Array.prototype.map.call(body.querySelectorAll("[data-preview][data-pinned]"), function (button) {
      return button.closest("tr").getAttribute("data-case-id");
    });
  }
  function previewButton(event) {
    return event.target.closest ? event.target.closest("[data-preview]") : null;
  }
  body.addEventListener("click", function (event) {
    var button = previewButton(event);
    if (!button) return;
    if (button.hasAttribute("data-pinned")) hidePreview(button, true); else showPreview(button, true);
  });
  body.addEventListener("mouseover", function (event) {
    var button = previewButton(event);
    if (button && !(event.relatedTarget && button.contains(event.relatedTarget))) showPreview(button, false);
  });
  body.addEventListener("mouseout", function (event) {
    var button = previewButton(event);
    if (button && !(event.relatedTarget && button.contains(event.relatedTarget))) hidePreview(button, false);
  });
  body.addEventListener("focusin", function (event) {
    var button = previewButton(event);
    if (button) showPreview(button, false);
  });
  body.addEventListener("focusout", function (event) {
    var button = previewButton(event);
    if (button) hidePreview(button, false);
  });
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    Array.prototype.forEach.call(body.querySelectorAll("[data-preview][aria-expanded=true]"), function (button) {
      hidePreview(button, true);
    });
  });
  function replaceOpen() {
    Array.prototype.forEach.call(body.querySelectorAll("[data-preview][aria-expanded=true]"), function (button) {
      place(button, previewOf(button));
    });
  }
  window.addEventListener("scroll", replaceOpen, { passive: true });
  window.addEventListener("resize", replaceOpen);
  table.parentNode.addEventListener("scroll", replaceOpen, { passive: true });

  // --- start ------------------------------------------------------------------------------

  if (restore()) return;
  form.addEventListener("change", apply);
  form.addEventListener("submit", function (event) { event.preventDefault(); apply(); });
  var reset = document.getElementById("worklist-reset");
  if (reset) reset.addEventListener("click", function (event) {
    event.preventDefault();
    FIELDS.forEach(function (name) {
      var field = form.elements[name];
      if (field) field.value = field.getAttribute("data-default") || "";
    });
    apply();
  });
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) poll();
  });
  syncClaimNext();
  tick();
  setInterval(tick, TICK_MS);
  schedule();
})();
