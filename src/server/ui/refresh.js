// Keeps an open page current: every few seconds, while the tab is shown
// and no form has focus, the page is fetched again and its <main> swapped
// in. The server escaped every value in it. Without this script the pages
// read the same, only without refreshing.
(function () {
  "use strict";
  var every = 5000;
  function refresh() {
    var main = document.querySelector("main[data-refresh]");
    if (!main || document.hidden) return;
    var focused = document.activeElement;
    if (focused && focused.closest && focused.closest("form, details[open]")) return;
    fetch(location.href, { credentials: "same-origin", redirect: "error" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (text) {
        if (text === null) return;
        var fresh = new DOMParser().parseFromString(text, "text/html")
          .querySelector("main[data-refresh]");
        if (!fresh) return;
        // Open <details> stay open across the swap.
        var open = Array.prototype.map.call(
          main.querySelectorAll("details[open] > summary"),
          function (s) { return s.textContent; });
        main.innerHTML = fresh.innerHTML;
        main.querySelectorAll("details > summary").forEach(function (s) {
          if (open.indexOf(s.textContent) >= 0) s.parentElement.open = true;
        });
        document.body.dataset.refreshed = String(Date.now());
      })
      .catch(function () { /* offline or signed out: try again later */ });
  }
  setInterval(refresh, every);
})();
