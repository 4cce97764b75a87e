"""The report's page: one self-contained HTML template (inline CSS and JS, no network), filled by
:mod:`rscaffold.report`. The trace viewer is drawn by the script from a JSON block, with ``textContent``
only, so model outputs can never inject markup."""

from __future__ import annotations

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>__TITLE__</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; } td.t { text-align: left; }
.plots img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
#errors:not(:empty) { color: #b00; border: 2px solid #b00; padding: 0.5em; }
.filters { position: sticky; top: 0; background: #fff; padding: 0.5em 0;
  border-bottom: 1px solid #ccc; }
.q { border: 1px solid #ddd; border-left: 6px solid #aaa; margin: 0.6em 0; padding: 0.4em 0.8em; }
.q.right { border-left-color: #2a2; } .q.wrong { border-left-color: #c22; }
.q .head { font-weight: 600; } .q .question { color: #555; white-space: pre-wrap; margin: 0.3em 0; }
.step { white-space: pre-wrap; margin: 2px 0; padding: 2px 6px; border-left: 4px solid; }
.sig { font-size: 11px; color: #fff; border-radius: 3px; padding: 0 4px; margin-right: 6px; }
.mark { font-weight: 700; } .right .mark { color: #2a2; } .wrong .mark { color: #c22; }
</style>
</head>
<body>
<script>
// Errors of this page land in #errors, so a headless browser's DOM dump shows them (tests check it is empty).
function reportError(text) {
  var e = document.getElementById("errors");
  if (e) { e.textContent += text + "\\n"; }
}
window.onerror = function (msg, src, line) { reportError("error: " + msg + " (line " + line + ")"); };
var consoleError = console.error;
console.error = function () {
  reportError("console.error: " + Array.prototype.join.call(arguments, " "));
  consoleError.apply(console, arguments);
};
</script>
<h1>__TITLE__</h1>
<pre id="errors"></pre>
<p>__SUBTITLE__</p>
<h2>Comparison</h2>
__TABLE__
<h2>Plots</h2>
<div class="plots">__PLOTS__</div>
<h2>Trace viewer</h2>
<div class="filters">
  <select id="f-entry"><option value="">all methods</option></select>
  <select id="f-outcome">
    <option value="">right and wrong</option><option value="right">right only</option>
    <option value="wrong">wrong only</option>
  </select>
  <select id="f-signal"><option value="">any signal</option></select>
  <input id="f-text" type="search" placeholder="search question, steps, answer">
  <span id="f-count"></span>
</div>
<div id="viewer"></div>
<script type="application/json" id="data">__DATA__</script>
<script>
(function () {
  var data = JSON.parse(document.getElementById("data").textContent);
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function option(select, value, text) { var o = el("option", null, text); o.value = value; select.appendChild(o); }
  data.entries.forEach(function (name, i) { option(document.getElementById("f-entry"), String(i), name); });
  data.signals.forEach(function (s) { option(document.getElementById("f-signal"), s, s); });
  function card(q) {
    var box = el("div", "q " + (q.correct ? "right" : "wrong"));
    var head = el("div", "head");
    head.appendChild(el("span", "mark", q.correct ? "\\u2713 " : "\\u2717 "));
    var about = data.entries[q.entry] + " \\u2014 " + q.id + " \\u2014 gold " + q.gold;
    about += ", strict " + q.strict + ", flexible " + q.flexible + (q.tokens ? ", " + q.tokens + " tokens" : "");
    head.appendChild(document.createTextNode(about));
    box.appendChild(head);
    box.appendChild(el("div", "question", q.question));
    q.steps.forEach(function (s) {
      var step = el("div", "step");
      var colour = data.colours[s.signal] || "#999";
      step.style.borderLeftColor = colour;
      var conf = s.confidence != null ? " " + s.confidence.toFixed(2) : "";
      var badge = el("span", "sig", (s.signal || "unlabelled") + conf);
      badge.style.background = colour;
      step.appendChild(badge);
      step.appendChild(document.createTextNode(s.text));
      box.appendChild(step);
    });
    return box;
  }
  function render() {
    var entry = document.getElementById("f-entry").value;
    var outcome = document.getElementById("f-outcome").value;
    var signal = document.getElementById("f-signal").value;
    var text = document.getElementById("f-text").value.toLowerCase();
    var viewer = document.getElementById("viewer"), shown = 0;
    viewer.textContent = "";
    data.questions.forEach(function (q) {
      if (entry !== "" && String(q.entry) !== entry) return;
      if (outcome && (outcome === "right") !== q.correct) return;
      if (signal && !q.steps.some(function (s) { return s.signal === signal; })) return;
      if (text && q.search.indexOf(text) < 0) return;
      viewer.appendChild(card(q)); shown += 1;
    });
    document.getElementById("f-count").textContent = shown + " of " + data.questions.length + " shown";
  }
  ["f-entry", "f-outcome", "f-signal", "f-text"].forEach(function (id) {
    document.getElementById(id).addEventListener("input", render);
  });
  render();
})();
</script>
</body>
</html>
"""
