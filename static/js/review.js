// The review page: Alt+R (or the link at the top) brings the sign form into view and moves
// the keyboard there, however far down the page the reader has scrolled.
(function () {
  "use strict";
  var panel = document.getElementById("report-panel");
  if (!panel) return;
  function toReport(event) {
    if (event) event.preventDefault();
    panel.scrollIntoView({ block: "start" });
    panel.focus({ preventScroll: true });
    if (location.hash !== "#report-panel") history.replaceState(null, "", "#report-panel");
  }
  document.addEventListener("keydown", function (event) {
    if (event.altKey && !event.ctrlKey && !event.metaKey && event.code === "KeyR") toReport(event);
  });
  var link = document.querySelector("a[href='#report-panel']");
  if (link) link.addEventListener("click", toReport);
})();
