// Site-wide behaviour. Loaded as a file so the Content-Security-Policy can forbid inline scripts.
(function () {
  "use strict";
  // A page's main action marked `data-enter-submits` (e.g. "Start labelling ⏎") runs on Enter when nothing else
  // has the focus: the key the button shows works without reaching for the mouse or tabbing to it first.
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.ctrlKey || event.altKey || event.metaKey || event.shiftKey) return;
    const focused = document.activeElement;
    if (focused && focused !== document.body) return;
    const form = document.querySelector("form[data-enter-submits]");
    if (form) { event.preventDefault(); form.requestSubmit(); }
  });
})();
