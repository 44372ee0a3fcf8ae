// Drag and drop several radiographs onto the case form; the file input stays the source of truth.
(function () {
  "use strict";
  var zone = document.getElementById("dropzone");
  if (!zone) return;
  var input = zone.querySelector("input[type=file]");
  var list = document.getElementById("file-list");

  function show() {
    list.textContent = "";
    Array.prototype.forEach.call(input.files, function (file) {
      var item = document.createElement("li");
      item.textContent = file.name + " (" + Math.round(file.size / 1024) + " KB)";
      list.appendChild(item);
    });
  }
  function stop(event) { event.preventDefault(); event.stopPropagation(); }
  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (event) { stop(event); zone.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (name) {
    zone.addEventListener(name, function (event) { stop(event); zone.classList.remove("over"); });
  });
  zone.addEventListener("drop", function (event) {
    var merged = new DataTransfer();
    Array.prototype.forEach.call(input.files, function (f) { merged.items.add(f); });
    Array.prototype.forEach.call(event.dataTransfer.files, function (f) { merged.items.add(f); });
    input.files = merged.files;
    show();
  });
  input.addEventListener("change", show);
})();
