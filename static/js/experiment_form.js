// The experiment form: of the question checkboxes (grouped by question set), show only the chosen set's, and
// untick the others when the set changes (the server refuses questions of another set).
(function () {
  "use strict";
  const setSelect = document.getElementById("id_questions");
  const box = document.getElementById("field-question_keys");
  if (!setSelect || !box) return;
  function showChosenSet() {
    for (const group of box.querySelectorAll(":scope > div > div")) {
      const inputs = Array.from(group.querySelectorAll("input[type=checkbox]"));
      const mine = inputs.some((input) => input.value.startsWith(setSelect.value + "/"));
      group.hidden = !mine;
      if (!mine) inputs.forEach((input) => { input.checked = false; });
    }
  }
  setSelect.addEventListener("change", showChosenSet);
  showChosenSet();
})();
