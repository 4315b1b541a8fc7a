// A small code editor: a plain <textarea> (which works on its own and is what the form submits) with a
// highlighted copy of its text drawn underneath. Tokens are built with textContent, never as HTML.
"use strict";

(function () {
  var KEYWORDS = ("False None True and as assert async await break class continue def del elif else except " +
    "finally for from global if import in is lambda nonlocal not or pass raise return try while with yield " +
    "match case").split(" ");
  var BUILTINS = ("print len range dict list set tuple str int float bool bytes object type isinstance " +
    "super open enumerate zip map filter sorted min max sum any all repr abs round iter next getattr " +
    "setattr hasattr Exception ValueError KeyError TypeError RuntimeError self cls").split(" ");
  var kw = new Set(KEYWORDS), builtin = new Set(BUILTINS);
  // One regex, alternatives in priority order: comments, strings (triple first), decorators, numbers, names.
  var TOKEN = new RegExp([
    "(#[^\\n]*)",
    "((?:[rRbBuUfF]{0,2})(?:\"\"\"[\\s\\S]*?(?:\"\"\"|$)|'''[\\s\\S]*?(?:'''|$)|\"(?:\\\\.|[^\"\\\\\\n])*\"?|'(?:\\\\.|[^'\\\\\\n])*'?))",
    "(@[A-Za-z_][\\w.]*)",
    "(\\b(?:0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|\\d[\\d_]*\\.?[\\d_]*(?:[eE][+-]?\\d+)?j?)\\b)",
    "([A-Za-z_][A-Za-z0-9_]*)"
  ].join("|"), "g");

  function highlight(text, into) {
    var frag = document.createDocumentFragment();
    var last = 0, m, prevWord = "";
    TOKEN.lastIndex = 0;
    while ((m = TOKEN.exec(text)) !== null) {
      if (m.index > last) { frag.appendChild(document.createTextNode(text.slice(last, m.index))); }
      var cls = null;
      if (m[1]) { cls = "tok-com"; }
      else if (m[2]) { cls = "tok-str"; }
      else if (m[3]) { cls = "tok-deco"; }
      else if (m[4]) { cls = "tok-num"; }
      else if (m[5]) {
        if (kw.has(m[5])) { cls = "tok-kw"; }
        else if (prevWord === "def" || prevWord === "class") { cls = "tok-def"; }
        else if (builtin.has(m[5])) { cls = "tok-builtin"; }
      }
      if (m[5]) { prevWord = m[5]; } else { prevWord = ""; }
      if (cls) {
        var span = document.createElement("span");
        span.className = cls; span.textContent = m[0]; frag.appendChild(span);
      } else { frag.appendChild(document.createTextNode(m[0])); }
      last = TOKEN.lastIndex;
      if (m[0].length === 0) { TOKEN.lastIndex++; }
    }
    if (last < text.length) { frag.appendChild(document.createTextNode(text.slice(last))); }
    // A trailing newline needs a character after it or the last empty line collapses.
    frag.appendChild(document.createTextNode("\n"));
    into.replaceChildren(frag);
  }

  document.querySelectorAll(".editor").forEach(function (box) {
    var area = box.querySelector("textarea");
    var pre = document.createElement("pre");
    pre.setAttribute("aria-hidden", "true");
    var code = document.createElement("code");
    pre.appendChild(code);
    box.insertBefore(pre, area);
    box.classList.add("enhanced");
    var redraw = function () { highlight(area.value, code); pre.scrollTop = area.scrollTop; pre.scrollLeft = area.scrollLeft; };
    area.addEventListener("input", redraw);
    area.addEventListener("scroll", function () { pre.scrollTop = area.scrollTop; pre.scrollLeft = area.scrollLeft; });
    // Tab indents; Escape then Tab leaves the editor, so the keyboard is never trapped.
    var escaped = false;
    area.addEventListener("keydown", function (ev) {
      if (ev.key === "Escape") { escaped = true; return; }
      if (ev.key === "Tab" && !escaped && !ev.shiftKey && !ev.ctrlKey && !ev.altKey && !ev.metaKey) {
        ev.preventDefault();
        var s = area.selectionStart, e = area.selectionEnd;
        area.setRangeText("    ", s, e, "end");
        redraw();
        return;
      }
      escaped = false;
    });
    redraw();
  });
})();
