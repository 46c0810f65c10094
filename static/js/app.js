/* Mission Control dashboard: theme, sidebar, dialogs, bulk selection, toasts, bar
   widths and the live pages' conditional (ETag) polling. No dependencies. CSP-safe:
   no inline handlers, no eval, no style="" attributes. Tables are left alone:
   the templates write each cell's data-label for the phone layout. */
(function () {
  "use strict";
  var root = document.documentElement;

  function store(key, value) {
    try { localStorage.setItem(key, value); } catch (e) { /* private mode */ }
  }

  function updateBulk() {
    document.querySelectorAll("[data-bulk-count]").forEach(function (el) {
      var form = el.getAttribute("data-bulk-count");
      var n = document.querySelectorAll('input[name="ids"][form="' + form + '"]:checked').length;
      el.textContent = String(n);
      var bar = el.closest("[data-bulk-bar]");
      var noun = bar ? bar.querySelector("[data-bulk-noun]") : null;
      if (noun) noun.textContent = noun.getAttribute(n === 1 ? "data-one" : "data-many");
      if (bar) bar.toggleAttribute("data-active", n > 0);
      document.querySelectorAll('[data-bulk-action][form="' + form + '"]').forEach(function (b) { b.disabled = n === 0; });
      document.querySelectorAll('[data-bulk-hint="' + form + '"]').forEach(function (h) { h.hidden = n > 0; });
    });
  }

  document.addEventListener("click", function (event) {
    var target = event.target.closest("[data-action]");
    if (!target) return;
    var action = target.getAttribute("data-action");
    if (action === "theme") {
      var dark = !root.classList.contains("dark");
      root.classList.toggle("dark", dark);
      store("mc-theme", dark ? "dark" : "light");
    } else if (action === "sidebar-collapse") {
      var collapsed = root.classList.toggle("sidebar-collapsed");
      store("mc-sidebar", collapsed ? "collapsed" : "expanded");
      target.setAttribute("aria-expanded", String(!collapsed));
    } else if (action === "sidebar-open") {
      openDrawer(target);
    } else if (action === "sidebar-close") {
      closeDrawer();
    } else if (action === "dialog-open") {
      var dialog = document.getElementById(target.getAttribute("data-target"));
      if (dialog && dialog.showModal) dialog.showModal();
    } else if (action === "dialog-close") {
      var d = target.closest("dialog");
      if (d) d.close();
    } else if (action === "toast-close") {
      var t = target.closest("[data-toast]");
      if (t) t.remove();
    } else if (action === "test-connection") {
      testConnection(target);
    }
  });

  // "Testar conexão": POST, and the answer (a small server-rendered badge) goes into the
  // row's result slot.
  function csrfToken() {
    return document.body.getAttribute("data-csrf-token") || "";
  }
  function testConnection(button) {
    var out = document.getElementById(button.getAttribute("data-target"));
    if (!out || button.disabled) return;
    button.disabled = true;
    out.textContent = "Testando…";
    fetch(button.getAttribute("data-url"), {
      method: "POST", credentials: "same-origin", headers: { "X-CSRFToken": csrfToken() }
    }).then(function (r) {
      if (!r.ok) throw new Error(String(r.status));
      return r.text();
    }).then(function (html) {
      out.innerHTML = html;
    }).catch(function (e) {
      out.textContent = "Falha ao testar (" + (e.message || "sem resposta") + ")";
    }).then(function () { button.disabled = false; });
  }

  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && root.classList.contains("sidebar-open")) closeDrawer();
  });

  // Mobile drawer: closed means inert (out of the tab order and the accessibility
  // tree); opening moves focus in, closing (button, overlay, Esc) gives it back.
  var mobileQuery = window.matchMedia("(max-width: 1023.98px)");
  var drawerOpener = null;
  function syncDrawer() {
    var sidebar = document.getElementById("sidebar");
    if (!sidebar) return;
    var closed = mobileQuery.matches && !root.classList.contains("sidebar-open");
    sidebar.inert = closed;
    document.querySelectorAll('[data-action="sidebar-open"]').forEach(function (b) {
      b.setAttribute("aria-expanded", String(!closed && mobileQuery.matches));
    });
    var collapse = document.querySelector('[data-action="sidebar-collapse"]');
    if (collapse) collapse.setAttribute("aria-expanded", String(!root.classList.contains("sidebar-collapsed")));
  }
  function openDrawer(opener) {
    drawerOpener = opener;
    root.classList.add("sidebar-open");
    syncDrawer();
    var first = document.querySelector('#sidebar [data-action="sidebar-close"]') || document.querySelector("#sidebar a");
    if (first) first.focus();
  }
  function closeDrawer() {
    root.classList.remove("sidebar-open");
    syncDrawer();
    if (drawerOpener && mobileQuery.matches) drawerOpener.focus();
    drawerOpener = null;
  }
  syncDrawer();
  if (mobileQuery.addEventListener) mobileQuery.addEventListener("change", syncDrawer);

  document.addEventListener("change", function (event) {
    var t = event.target;
    if (t.matches && t.matches("[data-file-input]")) {
      var out = document.querySelector('[data-file-name="' + t.id + '"]');
      if (out) out.textContent = t.files && t.files.length ? t.files[0].name : "Nenhum arquivo selecionado";
    }
    if (t.matches && t.matches("[data-select-all]")) {
      var form = t.getAttribute("data-select-all");
      document.querySelectorAll('input[name="ids"][form="' + form + '"]').forEach(function (cb) { cb.checked = t.checked; });
    }
    updateBulk();
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var msg = event.submitter && event.submitter.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) event.preventDefault();
    if (form && form.id && form.matches("[data-bulk-form]")) {
      var n = document.querySelectorAll('input[name="ids"][form="' + form.id + '"]:checked').length;
      if (n === 0) event.preventDefault();
    }
  });

  // Live parts: an element with data-poll-url asks for its partial every 5 s, sending
  // the ETag it holds. 304: nothing changed. 200: the answer replaces its content. 286:
  // the last state (the mission ended), swapped in, then the element stops polling.
  // Polls skip while the tab is hidden, while a dialog is open (a confirmation must
  // not be swapped away under the pointer) and, with data-poll="unless-selected",
  // while rows are selected. aria-busy marks a request under way; "mc:swapped" is
  // dispatched on the element after each swap.
  var POLL_MS = 5000;
  function poll(elt) {
    if (!elt.hasAttribute("data-poll") || elt.hasAttribute("aria-busy")) return;
    var busy = document.querySelector("dialog[open]") ||
      (elt.getAttribute("data-poll") === "unless-selected" &&
        document.querySelector('input[name="ids"]:checked'));
    if (document.visibilityState !== "visible" || busy) return;
    var headers = {};
    var etag = elt.getAttribute("data-etag");
    if (etag) headers["If-None-Match"] = etag;
    elt.setAttribute("aria-busy", "true");
    fetch(elt.getAttribute("data-poll-url"), { credentials: "same-origin", headers: headers })
      .then(function (r) {
        if (r.status === 304) return r.status;
        if (!r.ok) throw r;
        return r.text().then(function (html) {
          var tag = r.headers.get("ETag");
          if (tag) elt.setAttribute("data-etag", tag);
          elt.innerHTML = html;
          paintBars();
          updateBulk();
          elt.dispatchEvent(new CustomEvent("mc:swapped", { bubbles: true }));
          return r.status;
        });
      })
      .then(function (status) { pollResult(elt, status); },
        function (r) { pollResult(elt, r && r.status ? r.status : 0); })
      .then(function () { elt.removeAttribute("aria-busy"); });
  }
  if (document.querySelector("[data-poll-url]")) {
    setInterval(function () { document.querySelectorAll("[data-poll-url]").forEach(poll); }, POLL_MS);
  }

  // The header's live indicator says what the polls do: live while they succeed,
  // stale (with the time of the last good answer) when one fails, ended on 286.
  var lastGood = new Date();
  function setLive(state, text) {
    var el = document.querySelector("[data-live-indicator]");
    if (!el) return;
    el.setAttribute("data-live-indicator", state);
    el.querySelector("[data-live-text]").textContent = text;
  }
  function pollResult(elt, status) {
    if (status === 286) {
      elt.removeAttribute("data-poll");
      if (!document.querySelector("[data-poll]")) setLive("ended", "Atualização encerrada");
    } else if (status === 200 || status === 304) {
      lastGood = new Date();
      setLive("live", "Ao vivo");
    } else {
      var hhmm = lastGood.toLocaleTimeString("pt-BR", { hour: "2-digit", minute: "2-digit" });
      setLive("stale", "Dados desatualizados desde " + hhmm);
    }
  }

  // The Content-Security-Policy refuses style="" attributes, so a bar arrives hidden
  // with its width as data-bar (a percentage) and gets it through the CSSOM, which
  // the policy allows: now (the script is deferred, the page is parsed) and after
  // every swap, in the same task, before the browser paints the new content.
  function paintBars() {
    document.querySelectorAll("[data-bar]").forEach(function (el) {
      el.style.width = el.getAttribute("data-bar") + "%";
      el.hidden = false;
    });
  }
  paintBars();

  function dismissToasts() {
    document.querySelectorAll("[data-toast]").forEach(function (t) {
      setTimeout(function () {
        t.style.transition = "opacity 300ms, transform 300ms";
        t.style.opacity = "0";
        t.style.transform = "translateY(8px)";
        setTimeout(function () { t.remove(); }, 320);
      }, 6000);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    updateBulk();
    dismissToasts();
  });
})();
