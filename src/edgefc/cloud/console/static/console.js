// edgefc console: progressive enhancement only. Every page works without this file; with it, parts of pages
// update live over server-sent events (HTML fragments rendered and escaped by the server), forms validate as
// you type, and tokens copy with one click. No inline scripts (the CSP forbids them), nothing from a CDN.
"use strict";

(function () {
  var csrf = document.querySelector('meta[name="csrf-token"]');
  var csrfToken = csrf ? csrf.getAttribute("content") : "";

  function fieldId(name) { return name.replace(/[^A-Za-z0-9_-]/g, "-"); }

  // Live fragments: <div data-live="/console/.../stream"> gets its content replaced on each "html" event.
  function liveRegion(el) {
    var url = el.getAttribute("data-live");
    var mark = document.querySelector('[data-live-mark="' + el.id + '"]');
    var source = new EventSource(url);
    source.addEventListener("html", function (ev) {
      el.innerHTML = ev.data;
      el.dispatchEvent(new CustomEvent("live-updated", { bubbles: true }));
    });
    source.addEventListener("open", function () { if (mark) { mark.classList.add("on"); mark.textContent = "live"; } });
    source.addEventListener("error", function () { if (mark) { mark.classList.remove("on"); mark.textContent = "reconnecting…"; } });
    window.addEventListener("pagehide", function () { source.close(); });
  }
  document.querySelectorAll("[data-live]").forEach(liveRegion);

  // Validation as you type: the server runs the gateway's own models and answers {errors: {field: [...]}}.
  function validating(form) {
    var url = form.getAttribute("data-validate");
    var timer = null, seq = 0;
    function show(errors) {
      form.querySelectorAll(".field-error[data-for]").forEach(function (p) {
        var name = p.getAttribute("data-for");
        var messages = errors[name] || [];
        p.textContent = messages.join(" · ");
        var input = form.querySelector('[name="' + name + '"]');
        if (input) {
          if (messages.length) { input.setAttribute("aria-invalid", "true"); }
          else { input.removeAttribute("aria-invalid"); }
        }
      });
      var general = form.querySelector(".field-error[data-for='']");
      if (general) { general.textContent = (errors[""] || []).join(" · "); }
    }
    function run() {
      var mine = ++seq;
      fetch(url, { method: "POST", body: new FormData(form), credentials: "same-origin",
                   headers: { "X-CSRF-Token": csrfToken, "Accept": "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (body) { if (body && mine === seq) { show(body.errors || {}); } })
        .catch(function () { /* offline: the server checks again on submit */ });
    }
    form.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(run, 200); });
    form.addEventListener("change", function () { clearTimeout(timer); timer = setTimeout(run, 50); });
  }
  document.querySelectorAll("form[data-validate]").forEach(validating);

  // Copy buttons: <button data-copy="#token-id">.
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var source = document.querySelector(button.getAttribute("data-copy"));
      if (!source) { return; }
      var text = source.textContent.trim();
      var done = function () { button.textContent = "Copied"; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, function () { selectText(source); });
      } else { selectText(source); button.textContent = "Selected — press Ctrl+C"; }
    });
  });
  function selectText(node) {
    var range = document.createRange(); range.selectNodeContents(node);
    var sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(range);
  }

  // Forms that destroy something ask first.
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (ev) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { ev.preventDefault(); }
    });
  });

  // Log follow: new rows (server-rendered <tr>) are prepended as they arrive.
  var follow = document.getElementById("follow");
  if (follow) {
    var body = document.getElementById("log-rows");
    var status = document.getElementById("follow-status");
    var source = null;
    var stop = function () {
      if (source) { source.close(); source = null; }
      follow.textContent = "Follow"; follow.setAttribute("aria-pressed", "false");
      status.classList.remove("on"); status.textContent = "";
    };
    follow.hidden = false;
    follow.addEventListener("click", function () {
      if (source) { stop(); return; }
      var params = new URLSearchParams(new FormData(document.getElementById("log-filters")));
      params.delete("until");
      source = new EventSource(follow.getAttribute("data-url") + "?" + params.toString());
      follow.textContent = "Stop following"; follow.setAttribute("aria-pressed", "true");
      status.textContent = "connecting…";
      source.addEventListener("open", function () { status.classList.add("on"); status.textContent = "following"; });
      source.addEventListener("row", function (ev) {
        var empty = document.getElementById("log-empty");
        if (empty) { empty.remove(); }
        body.insertAdjacentHTML("afterbegin", ev.data);
      });
      source.addEventListener("problem", function (ev) { status.classList.remove("on"); status.textContent = ev.data; });
      source.addEventListener("error", function () { status.classList.remove("on"); status.textContent = "reconnecting…"; });
    });
    window.addEventListener("pagehide", stop);
  }
})();
