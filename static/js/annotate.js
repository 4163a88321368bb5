// Annotation workspace: keyboard shortcuts, category choice, the misaligned verdict, highlights by character
// offset, time spent.
// Kept light on purpose: the reasoning is plain text in a <pre>, so a 50 kB text is ready at once.
(function () {
  "use strict";
  const root = document.getElementById("annotate");
  if (!root) return;
  const submitted = root.dataset.submitted === "1";
  const multiple = root.dataset.multiple === "1";
  const asksPersona = root.dataset.asksPersona === "1";
  const asksVerdict = root.dataset.asksVerdict === "1";
  const maxHighlights = Number(root.dataset.maxHighlights); // the server refuses a label with more
  const pre = document.getElementById("reasoning");
  const form = document.getElementById("label-form");
  const text = JSON.parse(document.getElementById("reasoning-text").textContent);
  // The HTML parser drops a leading newline and folds \r\n; offsets must count the stored text exactly.
  if (pre.textContent !== text) pre.textContent = text;

  const buttons = Array.from(document.querySelectorAll(".cats .cat"));
  const nameOf = new Map(buttons.map((b) => [b.dataset.key, b.dataset.name || b.dataset.key]));
  const byShortcut = new Map(buttons.filter((b) => b.dataset.shortcut).map((b) => [b.dataset.shortcut, b]));
  const chosen = []; // category keys, in the order pressed: the first is the primary one
  const highlights = []; // {category, start, end} in code points of the stored text

  // Visible time on the item, sent with the label.
  let visibleMs = 0;
  let shownAt = document.visibilityState === "visible" ? performance.now() : null;
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") shownAt = performance.now();
    else if (shownAt !== null) { visibleMs += performance.now() - shownAt; shownAt = null; }
  });
  const seconds = () => (visibleMs + (shownAt === null ? 0 : performance.now() - shownAt)) / 1000;

  function renderChosen() {
    const box = document.getElementById("chosen");
    box.replaceChildren(...chosen.map((key) => {
      const input = document.createElement("input");
      input.type = "hidden"; input.name = "categories"; input.value = key;
      return input;
    }));
    for (const b of buttons) {
      const at = chosen.indexOf(b.dataset.key);
      b.setAttribute("aria-pressed", at >= 0 ? "true" : "false");
      b.classList.toggle("primary-choice", at === 0);
    }
  }

  function choose(key) {
    const at = chosen.indexOf(key);
    if (at >= 0) chosen.splice(at, 1);
    else if (multiple) chosen.push(key);
    else chosen.splice(0, chosen.length, key);
    renderChosen();
  }

  // Offset of a DOM position inside the <pre>, in code points (Python's len), whatever <mark>s split it.
  function offsetOf(node, offset) {
    const range = document.createRange();
    range.setStart(pre, 0);
    range.setEnd(node, offset);
    return Array.from(range.toString()).length;
  }

  function selectedSpan() {
    const sel = window.getSelection();
    if (!sel || sel.isCollapsed || !pre.contains(sel.anchorNode) || !pre.contains(sel.focusNode)) return null;
    const range = sel.getRangeAt(0);
    const start = offsetOf(range.startContainer, range.startOffset);
    const end = offsetOf(range.endContainer, range.endOffset);
    return end > start ? { start, end } : null;
  }

  function renderHighlights() {
    document.getElementById("id_highlights").value = JSON.stringify(highlights);
    const points = Array.from(text);
    const parts = [];
    let at = 0;
    // Overlapping spans stay in the list below but only the first is painted.
    for (const h of [...highlights].sort((a, b) => a.start - b.start)) {
      if (h.start < at) continue;
      parts.push(document.createTextNode(points.slice(at, h.start).join("")));
      const mark = document.createElement("mark");
      mark.dataset.category = h.category;
      mark.textContent = points.slice(h.start, h.end).join("");
      parts.push(mark);
      at = h.end;
    }
    parts.push(document.createTextNode(points.slice(at).join("")));
    pre.replaceChildren(...parts);
    const list = document.getElementById("highlights");
    list.replaceChildren(...highlights.map((h, i) => {
      const li = document.createElement("li");
      const snippet = points.slice(h.start, h.end).join("");
      li.textContent = `${nameOf.get(h.category) || h.category} [${h.start}–${h.end}] “${snippet.length > 60 ? snippet.slice(0, 60) + "…" : snippet}” `;
      const remove = document.createElement("button");
      remove.type = "button"; remove.className = "link-button"; remove.textContent = "remove";
      remove.addEventListener("click", () => { highlights.splice(i, 1); renderHighlights(); });
      li.append(remove);
      return li;
    }));
  }

  // ---- Selecting a span from the keyboard -------------------------------------------------------------------
  // Words and sentences of the stored text as [start, end) code-point spans; the arrow keys move (or, with
  // Shift, grow and shrink) a real DOM selection over them, so a category key highlights it like a mouse selection.
  const points = Array.from(text);
  function units(pattern) {
    const found = [];
    let codePoints = 0;
    let utf16 = 0; // matchAll gives UTF-16 indexes; highlights count code points (Python's len)
    for (const match of text.matchAll(pattern)) {
      codePoints += Array.from(text.slice(utf16, match.index)).length;
      const length = Array.from(match[0]).length;
      found.push([codePoints, codePoints + length]);
      codePoints += length;
      utf16 = match.index + match[0].length;
    }
    return found;
  }
  const words = units(/\S+/gu);
  // A sentence runs to its . ! or ? (before a space or the end), or to the end of its line.
  const sentences = units(/\S[^]*?(?:[.!?]+(?=\s|$)|(?=\n)|$)/gu);
  let keySpan = null; // {start, end}: what the arrow keys selected last

  function positionOf(offset) {
    // The text node and UTF-16 offset inside it for a code-point offset, whatever <mark>s split the text.
    const walker = document.createTreeWalker(pre, NodeFilter.SHOW_TEXT);
    let left = offset;
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const nodePoints = Array.from(node.data);
      if (left <= nodePoints.length) return [node, nodePoints.slice(0, left).join("").length];
      left -= nodePoints.length;
    }
    return [pre, pre.childNodes.length];
  }

  function selectSpan(span) {
    keySpan = span;
    const selection = window.getSelection();
    selection.removeAllRanges();
    const status = document.getElementById("selection-status");
    if (!span) { status.textContent = ""; return; }
    const range = document.createRange();
    range.setStart(...positionOf(span.start));
    range.setEnd(...positionOf(span.end));
    selection.addRange(range);
    const snippet = points.slice(span.start, span.end).join("");
    status.textContent = `Selected “${snippet.length > 80 ? snippet.slice(0, 80) + "…" : snippet}” — press a category key to highlight it.`;
  }

  function moveSelection(key, extend) {
    const list = key === "ArrowLeft" || key === "ArrowRight" ? words : sentences;
    if (!list.length) return;
    const forward = key === "ArrowRight" || key === "ArrowDown";
    const current = keySpan || selectedSpan();
    if (!current) { selectSpan({ start: list[0][0], end: list[0][1] }); return; }
    if (extend) {
      // Shift: move the end by one unit, never before the end of the selection's first unit.
      const ends = list.map(([, end]) => end);
      const next = forward ? ends.find((e) => e > current.end) : [...ends].reverse().find((e) => e < current.end);
      const firstEnd = ends.find((e) => e > current.start);
      if (next !== undefined && next >= firstEnd) selectSpan({ start: current.start, end: next });
      return;
    }
    const target = forward ? list.find(([start]) => start >= current.end)
      : [...list].reverse().find(([, end]) => end <= current.start);
    if (target) selectSpan({ start: target[0], end: target[1] });
  }

  if (pre.hasAttribute("tabindex")) {
    pre.addEventListener("keydown", (event) => {
      if (["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown"].includes(event.key) && !event.ctrlKey && !event.altKey) {
        event.preventDefault();
        event.stopPropagation();
        moveSelection(event.key, event.shiftKey);
      } else if (event.key === "Escape") {
        selectSpan(null);
        pre.blur();
      }
    });
    // A mouse selection starts over from where the mouse put it.
    pre.addEventListener("mouseup", () => { keySpan = null; });
  }

  function categoryKey(button) {
    const span = selectedSpan();
    if (span && highlights.length >= maxHighlights) {
      window.alert(`At most ${maxHighlights} highlights per label: remove one before adding another.`);
    } else if (span) {
      highlights.push({ category: button.dataset.key, ...span });
      selectSpan(null);
      renderHighlights();
      if (!chosen.includes(button.dataset.key)) choose(button.dataset.key);
    } else {
      choose(button.dataset.key);
    }
  }

  // The misaligned verdict: two toggle buttons that fill one hidden field ("true" / "false" / "" for none).
  const verdictButtons = Array.from(document.querySelectorAll(".verdict-choice"));
  const verdictField = document.getElementById("id_misaligned");
  function chooseVerdict(value) {
    verdictField.value = verdictField.value === value ? "" : value;
    for (const b of verdictButtons) b.setAttribute("aria-pressed", b.dataset.value === verdictField.value ? "true" : "false");
  }
  verdictButtons.forEach((b) => b.addEventListener("click", () => chooseVerdict(b.dataset.value)));

  buttons.forEach((b) => b.addEventListener("click", () => categoryKey(b)));
  if (form) {
    form.addEventListener("submit", (event) => {
      if ((asksPersona && !chosen.length) || (asksVerdict && !verdictField.value)) {
        event.preventDefault();
        document.getElementById("category-bar").classList.add("needs-choice");
        return;
      }
      document.getElementById("id_seconds_spent").value = seconds().toFixed(1);
    });
  }

  const submitForm = (id) => { const f = document.getElementById(id); if (f) f.requestSubmit(); };

  document.addEventListener("keydown", (event) => {
    if (event.altKey || event.metaKey) return;
    const field = event.target.closest("textarea, input, select");
    if (field) {
      if (event.key === "Escape") field.blur();
      else if (event.key === "Enter" && event.ctrlKey && form) submitForm("label-form");
      return;
    }
    if (event.ctrlKey) return;
    if (submitted) {
      // The next item is claimed by a POST (never a GET, which a link elsewhere could trigger).
      if (event.key === "Enter" || event.key === "n") { event.preventDefault(); submitForm("next-form"); }
      else if (event.key === "u") submitForm("undo-form");
      return;
    }
    const button = byShortcut.get(event.key);
    if (button) { event.preventDefault(); categoryKey(button); return; }
    if (asksVerdict && (event.key === "m" || event.key === "a")) {
      event.preventDefault();
      chooseVerdict(event.key === "m" ? "true" : "false");
      return;
    }
    const score = document.getElementById("id_alignment_score");
    if (score && event.key === "g") { event.preventDefault(); score.focus(); return; }
    switch (event.key) {
      case "r": if (pre.hasAttribute("tabindex")) { event.preventDefault(); pre.focus(); } break;
      case "Enter": event.preventDefault(); submitForm("label-form"); break;
      case "n": event.preventDefault(); document.getElementById("id_note").focus(); break;
      case "c": event.preventDefault(); document.getElementById("id_confidence").focus(); break;
      case "s": submitForm("skip-form"); break;
      case "u": submitForm("undo-form"); break;
    }
  });
  root.dataset.ready = "1";
})();
