// "More like this passage": copies the text highlighted on the transcript page into the search box.
(function () {
  "use strict";
  var button = document.getElementById("like-use-selection");
  var box = document.getElementById("like-text");
  if (!button || !box) { return; }
  var last = "";
  document.addEventListener("selectionchange", function () {
    var text = String(window.getSelection() || "").trim();
    if (text && !box.contains(document.activeElement)) { last = text; }
  });
  button.addEventListener("click", function () {
    if (last) { box.value = last.slice(0, 4000); }
  });
}());
